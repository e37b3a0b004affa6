"""Export a derived architecture for deployment: ONNX, TorchScript or the official net.config.

The net is built from the architecture (fresh weights, or a retrain's `weights.pt` loaded with
`weights_only=True`), put in eval mode and exported at its space's input resolution, batch 1.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from nas_core.architecture import Architecture, build_net
from nas_core.errors import ProxylessError
from nas_core.io import atomic_output, atomic_write_text

FORMATS = ("onnx", "torchscript", "net-config")


def _load_weights(net: torch.nn.Module, path: str | Path) -> None:
    from nas_core.checkpoint import load_checkpoint

    state = load_checkpoint(path)
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise ProxylessError(f"{path}: weights do not fit this architecture ({first})") from None


def export(
    arch: Architecture, fmt: str, out: str | Path, weights: str | Path | None = None
) -> Path:
    """Write `arch` as `fmt` to `out` (atomically) and return the path."""
    if fmt not in FORMATS:
        raise ProxylessError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    out = Path(out)
    net = build_net(arch).eval()
    if weights is not None:
        _load_weights(net, weights)
    if fmt == "net-config":
        atomic_write_text(out, json.dumps(net.to_config(), indent=2) + "\n")
        return out
    r = arch.space.resolution
    example = torch.randn(1, 3, r, r)
    with atomic_output(out) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporters warn about their own deprecations
        if fmt == "torchscript":
            with torch.no_grad():
                traced = torch.jit.trace(net, example)
            traced.save(str(tmp))
        else:
            try:
                program = torch.onnx.export(net, (example,), dynamo=True, verbose=False)
            except ImportError as e:
                raise ProxylessError(f"ONNX export needs onnx and onnxscript ({e})") from None
            program.save(str(tmp))
    return out
