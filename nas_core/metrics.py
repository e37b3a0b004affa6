"""Per-epoch sums of step metrics, kept where each step produced them.

Tensor values (losses, accuracies of CUDA steps) are summed on their device and floats on the
host; `means()` reads all device sums with one wait (`nas_core.device.host_floats`). A
non-finite weight loss sets a device-side flag instead of stopping the step, and the loop reads
the flag every `NONFINITE_CHECK_EVERY` steps: a diverged search stops within that many steps
without the CPU waiting for the GPU after every step.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from nas_core.device import host_floats
from nas_core.errors import ProxylessError

NONFINITE_CHECK_EVERY = 50


class StepMetrics:
    """Running sums and counts per metric name, plus the non-finite loss flag."""

    def __init__(self, first_step: int = 0) -> None:
        self._sums: dict[str, torch.Tensor | float] = {}
        self._counts: dict[str, int] = {}
        self._nonfinite: torch.Tensor | None = None
        self._since = first_step  # first step the flag covers, for the message

    def add(self, values: Mapping[str, torch.Tensor | float]) -> None:
        for name, v in values.items():
            if isinstance(v, torch.Tensor):
                v = v.detach().double()
            self._sums[name] = self._sums[name] + v if name in self._sums else v
            self._counts[name] = self._counts.get(name, 0) + 1

    def watch_finite(self, loss: torch.Tensor) -> None:
        """Remember, on the loss's device, whether it was ever NaN or infinite."""
        bad = ~torch.isfinite(loss.detach())
        self._nonfinite = bad if self._nonfinite is None else self._nonfinite | bad

    def raise_if_nonfinite(self, step: int) -> None:
        """One host read of the flag; a ProxylessError when a watched loss was not finite."""
        if self._nonfinite is None:
            return
        (bad,) = host_floats([self._nonfinite])
        if bad:
            raise ProxylessError(
                f"weight loss became NaN or infinite between steps {self._since} and {step}; "
                "lower weights.lr"
            )
        self._nonfinite, self._since = None, step

    def means(self) -> dict[str, float]:
        """Every metric's mean over the steps that reported it (one wait for device sums)."""
        names = list(self._sums)
        tensors = [n for n in names if isinstance(self._sums[n], torch.Tensor)]
        values = dict(zip(tensors, host_floats([self._sums[n] for n in tensors]), strict=True))
        return {
            n: float(values[n] if n in values else self._sums[n]) / self._counts[n] for n in names
        }
