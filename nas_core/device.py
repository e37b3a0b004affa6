"""Where tensors live, and the one place the training loop waits for the GPU.

A CUDA step that reads a value on the host (`float(t)`, `.item()`, `.cpu()`, `if t:`) makes the
CPU wait until the GPU has finished everything queued so far, so the next step cannot be queued
behind it. The search and retrain loops therefore keep their metrics on the device and read them
through `to_host`, once per logging interval and once per arch step (whose signal the host needs
to update α and sample the next path). `to_host` copies into pinned memory and waits on an
event, a deliberate wait that `torch.cuda.set_sync_debug_mode("error")` lets through, so the GPU
check can run every step under that mode and fail on any other, accidental sync.
"""

from __future__ import annotations

import torch

from nas_core.errors import ProxylessError


def resolve_device(name: str, where: str = "device") -> torch.device:
    """`cpu`, `cuda` or `cuda:N` as a torch device; one line when this machine lacks it."""
    text = str(name)
    if text != "cpu" and text != "cuda" and not text.startswith("cuda:"):
        raise ProxylessError(f"{where} must be cpu, cuda or cuda:N, got {name!r}")
    try:
        device = torch.device(text)
    except RuntimeError:
        raise ProxylessError(f"{where} must be cpu, cuda or cuda:N, got {name!r}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ProxylessError(
                f"{where} {text} asked for, but torch sees no CUDA device on this machine"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ProxylessError(
                f"{where} {text} asked for, but this machine has {count} CUDA device(s)"
            )
    return device


def to_host(tensor: torch.Tensor) -> torch.Tensor:
    """A CPU copy of `tensor`: pinned memory and an event wait on CUDA (see the module doc)."""
    tensor = tensor.detach()
    if tensor.device.type != "cuda":
        return tensor.clone()
    out = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
    out.copy_(tensor, non_blocking=True)
    done = torch.cuda.Event()
    done.record()
    done.synchronize()
    return out


def to_device_async(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`tensor` (on the host) copied to `device` through pinned memory, without a wait."""
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def host_floats(values: list[torch.Tensor]) -> list[float]:
    """Several scalars (any devices) as Python floats, with one wait per device."""
    if not values:
        return []
    by_device: dict[torch.device, list[int]] = {}
    for i, v in enumerate(values):
        by_device.setdefault(v.device, []).append(i)
    out = [0.0] * len(values)
    for idx in by_device.values():
        packed = to_host(torch.stack([values[i].detach().double().reshape(()) for i in idx]))
        for i, v in zip(idx, packed.tolist(), strict=True):
            out[i] = v
    return out
