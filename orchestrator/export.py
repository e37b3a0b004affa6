"""Export a network for deployment: ONNX, TorchScript or the official net.config.

The net comes from an architecture JSON or an official net.config (`load_network`), with fresh
weights or a checkpoint in any layout `nas_core.weights` reads (a retrain's `weights.pt`, a
published `proxyless_*.pth`), and is exported in eval mode at its input resolution, batch 1.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from nas_core.errors import ProxylessError
from nas_core.io import atomic_output, atomic_write_text
from nas_core.weights import load_weights_file

FORMATS = ("onnx", "torchscript", "net-config")


def export(
    net: torch.nn.Module,
    resolution: int,
    fmt: str,
    out: str | Path,
    weights: str | Path | None = None,
) -> Path:
    """Write `net` (with `weights` loaded, if given) as `fmt` to `out`, atomically."""
    if fmt not in FORMATS:
        raise ProxylessError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    out = Path(out)
    net = net.eval()
    if weights is not None:
        load_weights_file(net, weights)
    if fmt == "net-config":
        atomic_write_text(out, json.dumps(net.to_config(), indent=2) + "\n")
        return out
    example = torch.randn(1, 3, resolution, resolution)
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
