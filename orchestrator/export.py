"""Export a network for deployment: ONNX, TorchScript or the official net.config.

The net comes from an architecture JSON or an official net.config (`load_network`), with fresh
weights (with a warning) or a checkpoint in any layout `nas_core.weights` reads (a retrain's
`weights.pt`, a published `proxyless_*.pth`), and is exported in eval mode at its input
resolution: TorchScript traced at batch 1, ONNX with a dynamic batch axis.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from nas_core.errors import ProxylessError
from nas_core.evaluation import num_outputs
from nas_core.io import atomic_output, atomic_write_text
from nas_core.logs import get_logger
from nas_core.weights import load_weights_file

if TYPE_CHECKING:
    from nas_core.architecture import Architecture
    from nas_core.latency.table import LatencyTable
    from nas_core.weights_meta import WeightsMeta

log = get_logger(__name__)

FORMATS = ("onnx", "torchscript", "net-config")


def export(
    net: torch.nn.Module,
    resolution: int,
    fmt: str,
    out: str | Path,
    weights: str | Path | None = None,
    facts: Mapping[str, str] | None = None,
) -> Path:
    """Write `net` (with `weights` loaded, if given) as `fmt` to `out`, atomically.

    The files carry what a deployment needs to know: a ProxylessNASNets net.config records its
    `resolution` (a key the official loader ignores; the official CIFAR loader would refuse it,
    so PyramidTreeNet configs stay as they are, at 32 px); ONNX has a dynamic batch axis and
    metadata (resolution, classes, input layout, whether trained weights were loaded, and the
    caller's `facts`: the input's mean / std, the latency on a table).
    """
    if fmt not in FORMATS:
        raise ProxylessError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    out = Path(out)
    net = net.eval()
    if weights is not None:
        load_weights_file(net, weights)
    elif fmt != "net-config":  # a net.config holds no weights
        log.warning("no --weights: %s holds freshly initialised (random) weights", out)
    if fmt == "net-config":
        config = net.to_config()
        if config["name"] == "ProxylessNASNets":
            config["resolution"] = resolution
        atomic_write_text(out, json.dumps(config, indent=2) + "\n")
        return out
    with atomic_output(out) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporters warn about their own deprecations
        if fmt == "torchscript":
            with torch.no_grad():
                traced = torch.jit.trace(net, torch.randn(1, 3, resolution, resolution))
            traced.save(str(tmp))
        else:
            _onnx(net, resolution, weights, tmp, facts or {})
    return out


def _onnx(
    net: torch.nn.Module,
    resolution: int,
    weights: str | Path | None,
    path: Path,
    facts: Mapping[str, str],
) -> None:
    """ONNX with a dynamic batch axis and the facts a deployment needs as metadata."""
    # batch 2 as the example: torch.export specialises a dimension of size 1
    example = torch.randn(2, 3, resolution, resolution)
    try:
        program = torch.onnx.export(
            net,
            (example,),
            dynamo=True,
            verbose=False,
            input_names=["images"],
            output_names=["logits"],
            dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=65536)},),
        )
    except ImportError as e:
        raise ProxylessError(f"ONNX export needs onnx and onnxscript ({e})") from None
    program.model.metadata_props.update(
        {
            "producer": "proxyless-tune",
            "resolution": str(resolution),
            "classes": str(num_outputs(net)),
            "input": f"float32 NCHW [batch, 3, {resolution}, {resolution}], normalised",
            "weights": "trained" if weights is not None else "random (none given)",
            **facts,
        }
    )
    program.save(str(path))


def deployment_facts(
    net: torch.nn.Module,
    arch: Architecture | None,
    resolution: int,
    dataset: str | None,
    table: LatencyTable | None,
    meta: WeightsMeta | None = None,
) -> dict[str, str]:
    """ONNX metadata from what the caller knows: the weights' record (`meta`: dataset, input
    mean / std, class names, recipe, metrics, the latency its table priced) or else the
    dataset's normalisation (`dataset`, `mean`, `std`), and the latency on `table`
    (`latency_ms`, `latency_device`; an architecture JSON's or a net.config's), which replaces
    the record's."""
    from nas_core.data import normalisation
    from nas_core.latency.predictor import architecture_latency, net_config_latency

    facts = meta.metadata() if meta is not None else {}
    if meta is None and dataset is not None:
        mean, std = normalisation(dataset)
        facts.update(dataset=dataset, mean=json.dumps(mean), std=json.dumps(std))
    if table is not None:
        if arch is not None:
            ms = architecture_latency(arch, table)
        else:
            ms = net_config_latency(net.to_config(), table, resolution)
        facts.update(latency_ms=f"{ms:.4f}", latency_device=table.meta.device)
    return facts
