"""Network weights from any checkpoint layout we meet, into a net, strictly.

Accepted: a bare state_dict, the official `{'state_dict': …}` dict (the published
`proxyless_*.pth`), keys under a `module.` prefix (DataParallel / DDP checkpoints) and our own
checkpoints written before MBConv submodules were named as the official ones (`depth_conv.0.` →
`depth_conv.conv.`). Files are read with `weights_only=True` (`load_checkpoint`). The dict is
rebuilt without its `_metadata`, so BatchNorm takes it as an old-format checkpoint and a missing
`num_batches_tracked` (the published files were saved before PyTorch had it) counts as 0.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nas_core.errors import ProxylessError

# MBConv parts were index-named `Sequential`s: 0 = conv, 1 = bn (2 = the parameter-free ReLU6)
_LEGACY_MBCONV = re.compile(r"(^|\.)(inverted_bottleneck|depth_conv|point_linear)\.([01])\.")
_PARTS = {"0": "conv", "1": "bn"}


def state_dict_of(checkpoint: Mapping[str, Any], where: str) -> dict[str, torch.Tensor]:
    """The tensors of `checkpoint` keyed as our (= the official) modules name them."""
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, Mapping) else None
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ProxylessError(
            f"{where}: not a state_dict (a dict of tensors, bare or under 'state_dict')"
        )
    if state and all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    renamed = {
        _LEGACY_MBCONV.sub(lambda m: f"{m[1]}{m[2]}.{_PARTS[m[3]]}.", k): v
        for k, v in state.items()
    }
    if len(renamed) != len(state):
        raise ProxylessError(f"{where}: holds both the old and the new name of some tensors")
    return renamed


def load_weights(net: nn.Module, checkpoint: Mapping[str, Any], where: str) -> None:
    """Load `checkpoint` (any layout above) into `net`; every key must match (strict)."""
    state = state_dict_of(checkpoint, where)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        detail = " ".join(str(e).split())
        raise ProxylessError(f"{where}: weights do not fit this network ({detail[:300]})") from None


def load_weights_file(net: nn.Module, path: str | Path) -> None:
    """`load_weights` from a file (read with `weights_only=True`)."""
    from nas_core.checkpoint import load_checkpoint

    load_weights(net, load_checkpoint(path), str(path))
