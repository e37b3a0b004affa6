"""Parameter and MAC counts, counted the way the reference numbers are.

MACs are conv + linear multiply-accumulates for one image (pooling, BN and adds are free);
parameters include BN affine weights. Counting runs one forward pass with hooks, so it is right
for any module tree, mixed ops in single mode included (only the active path counts).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from nas_core.errors import ProxylessError


@dataclass(frozen=True)
class NetStats:
    """Size of one network at one input resolution."""

    params: int
    macs: int
    resolution: int

    def to_config(self) -> dict[str, int]:
        return asdict(self)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, resolution: int, in_channels: int = 3) -> int:
    """Conv + linear MACs of one forward pass of a 1×C×R×R input (on the model's device)."""
    total = 0

    def conv_hook(m: nn.Conv2d, _inp: object, out: torch.Tensor) -> None:
        nonlocal total
        k = m.kernel_size[0] * m.kernel_size[1]
        total += out.shape[1] * out.shape[2] * out.shape[3] * k * m.in_channels // m.groups

    def linear_hook(m: nn.Linear, _inp: object, _out: torch.Tensor) -> None:
        nonlocal total
        total += m.in_features * m.out_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            device = next(model.parameters(), torch.zeros(())).device
            model(torch.zeros(1, in_channels, resolution, resolution, device=device))
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise ProxylessError(
            f"input resolution {resolution} does not fit this net: {first}"
        ) from None
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total


def net_stats(model: nn.Module, resolution: int) -> NetStats:
    return NetStats(count_params(model), count_macs(model, resolution), resolution)
