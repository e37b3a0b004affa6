"""What a search produced (its argmax architecture, priced and counted) and the files that
record it in the search's folder."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas_core.arch_state import ArchState
from nas_core.architecture import Architecture, build_net
from nas_core.io import atomic_write_text
from nas_core.latency.predictor import architecture_latency
from nas_core.latency.table import LatencyTable
from nas_core.spaces import SearchSpace
from nas_core.stats import net_stats


@dataclass(frozen=True)
class SearchResult:
    """What a search produced."""

    architecture: Architecture
    latency_table_ms: float | None  # priced by the search's table; None without one
    params: int
    macs: int
    valid_accuracy: float
    epochs: int
    history: tuple[dict[str, float], ...]

    def summary(self) -> dict[str, Any]:
        last = self.history[-1] if self.history else {}
        return {
            "architecture": self.architecture.to_config(),
            "latency_table_ms": self.latency_table_ms,
            "params": self.params,
            "macs": self.macs,
            "valid_accuracy": self.valid_accuracy,
            "epochs": self.epochs,
            "images_per_s": last.get("throughput/images_per_s"),  # last epoch, all ranks
            "peak_memory_gib": last.get("memory/peak_gib"),  # last epoch, one rank (CUDA only)
        }


def search_result(
    arch_state: ArchState,
    space: SearchSpace,
    table: LatencyTable | None,
    history: Sequence[Mapping[str, float]],
) -> SearchResult:
    """What a search produced: its argmax architecture, priced and counted."""
    arch = Architecture(space, tuple(arch_state.argmax()))
    stats = net_stats(build_net(arch), space.resolution)
    latency = architecture_latency(arch, table) if table is not None else None
    valid_acc = history[-1]["valid/accuracy"] if history else float("nan")
    return SearchResult(
        arch, latency, stats.params, stats.macs, valid_acc, len(history), tuple(history)
    )


def save_result(result: SearchResult, arch_state: ArchState, out: Path) -> None:
    """architecture.json, arch_state.json (α) and summary.json in `out`."""
    result.architecture.save(out / "architecture.json")
    atomic_write_text(out / "arch_state.json", json.dumps(arch_state.to_config()) + "\n")
    atomic_write_text(out / "summary.json", json.dumps(result.summary(), indent=2) + "\n")
