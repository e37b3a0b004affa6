"""The training primitives the search and the retrain share: the cosine schedule, one weight
step on the active path, and a batch's copy to the device."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from nas_core.precision import Amp


def cosine_lr(base: float, step: int, total: int) -> float:
    """Cosine annealing from `base` to 0 over `total` steps (per batch, as the official code)."""
    return 0.5 * base * (1 + math.cos(math.pi * min(step, total) / max(total, 1)))


def weight_step(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    lr: float,
    label_smoothing: float,
    amp: Amp | None = None,
    before_step: Callable[[], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One SGD step on the active path; (loss, accuracy) stay on the device (no host sync).

    A non-finite loss is not checked here: `StepMetrics.watch_finite` flags it on the device
    and the loop reads the flag every few steps.
    """
    amp = amp if amp is not None else Amp("off", x.device)
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    with amp.autocast():
        logits = net(x)
        loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
    amp.backward_and_step(loss, optimizer, before_step)
    return loss.detach(), (logits.detach().argmax(1) == y).float().mean()


def to_device(x: torch.Tensor, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    """A batch of images on `device` without waiting for the copy (pinned loaders)."""
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x
