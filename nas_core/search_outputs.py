"""A single process's outputs after each epoch of a search: its checkpoint file and its
TensorBoard scalars and α images (a Ray Train rank reports through `cluster` instead)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from nas_core.arch_view import log_alpha
from nas_core.checkpoint import save_checkpoint

if TYPE_CHECKING:
    from nas_core.search import Searcher


class LocalOutputs:
    """A single process's outputs after each epoch: the checkpoint file and TensorBoard."""

    def __init__(self, out: Path, tensorboard: bool) -> None:
        self.out, self.tensorboard = out, tensorboard
        self._writer = None

    def on_epoch_end(self, searcher: Searcher, metrics: dict[str, float]) -> None:
        save_checkpoint(searcher.checkpoint_path, searcher.state_dict())
        if self.tensorboard:
            self.log(searcher, metrics)

    def log(self, searcher: Searcher, metrics: Mapping[str, float]) -> None:
        """One epoch's metrics, per-layer entropies and the α probability image."""
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.out / "tensorboard"))
        w, epoch = self._writer, int(metrics["epoch"])
        for k, v in metrics.items():
            if k not in ("epoch", "warmup"):
                w.add_scalar(k, v, epoch)
        log_alpha(w, searcher.net.arch_state, epoch)
        w.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
