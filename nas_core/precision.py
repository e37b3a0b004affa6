"""Numeric precision of training steps: mixed precision for weights, fp32 for α.

Weight steps may run under autocast (`amp: bf16 | fp16`; fp16 adds a GradScaler). The arch step
never does: the BinaryConnect gate gradient ⟨∂L/∂y, o_j(x)⟩ is a small difference of large
products, and under CPU bf16 autocast it came out 3.6× the fp32 value on the same weights,
batch and paths. So every arch step runs inside `full_precision`, which turns autocast off for
its device and TF32 off for its convolutions and matmuls (cuDNN uses TF32 by default on Ampere
and later), whatever the caller's region says. Global backend flags are only ever changed inside
a context that restores them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch

from nas_core.config import AMP_MODES

_AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class Amp:
    """Autocast (and for fp16 a GradScaler) around the forward and backward of weight steps."""

    def __init__(self, mode: str, device: torch.device) -> None:
        if mode not in AMP_MODES:  # configs validate it; this is a caller's bug
            raise ValueError(f"amp mode {mode!r} is not one of {AMP_MODES}")
        self.mode = mode
        self.device_type = device.type
        self.dtype = _AMP_DTYPES.get(mode)
        # fp16 needs loss scaling; its inf check costs one host sync per step (GradScaler.step)
        self.scaler = torch.amp.GradScaler(device.type) if mode == "fp16" else None

    def autocast(self) -> torch.autocast:
        return torch.autocast(self.device_type, dtype=self.dtype, enabled=self.dtype is not None)

    def backward_and_step(
        self,
        loss: torch.Tensor,
        optimizer: torch.optim.Optimizer,
        before_step: Callable[[], None] | None = None,
    ) -> None:
        """Backward, then `before_step` (e.g. averaging gradients over ranks), then the step."""
        if self.scaler is None:
            loss.backward()
            if before_step is not None:
                before_step()
            optimizer.step()
            return
        self.scaler.scale(loss).backward()
        if before_step is not None:  # scaled gradients average to the scaled average
            before_step()
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(dict(state))


@contextmanager
def _cuda_tf32(allowed: bool) -> Iterator[None]:
    """TF32 for cuDNN convolutions and cuBLAS matmuls inside the block, restored after."""
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    old = (cudnn.allow_tf32, matmul.allow_tf32)
    cudnn.allow_tf32, matmul.allow_tf32 = allowed, allowed
    try:
        yield
    finally:
        cudnn.allow_tf32, matmul.allow_tf32 = old


@contextmanager
def full_precision(device_type: str) -> Iterator[None]:
    """fp32 for everything inside, even within a caller's autocast region (no TF32 on CUDA)."""
    with torch.autocast(device_type, enabled=False):
        if device_type == "cuda":
            with _cuda_tf32(False):
                yield
        else:
            yield


@contextmanager
def training_speedups(device: torch.device) -> Iterator[None]:
    """cuDNN autotuning and TF32 weight steps for a CUDA training run; restored after.

    Inputs keep one shape for a whole run, so `cudnn.benchmark` picks the fastest kernels
    once per layer shape. A no-op on the CPU.
    """
    if device.type != "cuda":
        yield
        return
    old = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        with _cuda_tf32(True):
            yield
    finally:
        torch.backends.cudnn.benchmark = old


def to_memory_format(module: torch.nn.Module, channels_last: bool) -> torch.nn.Module:
    """NHWC weights for tensor-core convolutions when asked for (inputs follow suit)."""
    return module.to(memory_format=torch.channels_last) if channels_last else module
