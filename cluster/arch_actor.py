"""The architecture actor's state machine, without Ray.

One per search: it owns α (`ArchState`), the arch optimiser and the strategy's state (the
REINFORCE baseline), collects the K workers' signals of an arch step and applies them once,
when all K have arrived, then bumps the α version. Kept free of Ray so it is tested directly
and so the Ray actor (`ray.remote(ArchitectureActor)`) is a thin wrapper: workers call
`submit(step, rank, signal)` then poll `alphas_at(version)`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch

from nas_core.arch_state import ArchState
from nas_core.latency.predictor import LatencyModel
from nas_core.latency.table import LatencyTable
from nas_core.spaces import SearchSpace
from nas_core.strategy import StrategyConfig, create_strategy, make_arch_optimizer


class ArchitectureActor:
    """α, its optimiser and strategy state; applies one update per step from K signals."""

    def __init__(
        self,
        space_config: Mapping[str, Any],
        strategy_config: Mapping[str, Any],
        num_workers: int,
        arch_state: Mapping[str, Any],
        table_yaml: Mapping[str, Any] | None = None,
    ) -> None:
        space = SearchSpace.from_config(space_config)
        self.arch_state = ArchState.from_config(arch_state)
        table = LatencyTable.from_yaml_dict(table_yaml, "latency table") if table_yaml else None
        latency = LatencyModel(space, table) if table is not None else None
        config = StrategyConfig.from_config(strategy_config)
        self.strategy = create_strategy(config, latency)
        self.optimizer = make_arch_optimizer(self.arch_state, config)
        self.num_workers = num_workers
        self.version = 0
        self._pending: dict[int, dict[int, Any]] = {}
        self.applied: list[dict[str, float]] = []

    def submit(self, step: int, rank: int, signal: Any) -> int | None:
        """Record rank's signal of `step`; the K-th signal applies the update.

        Returns the new version when this call applied it, else None. A duplicate from the
        same rank (a retried call) replaces its earlier signal instead of counting twice.
        """
        if not 0 <= rank < self.num_workers:
            raise ValueError(f"rank {rank} outside 0..{self.num_workers - 1}")
        pending = self._pending.setdefault(step, {})
        pending[rank] = signal
        if len(pending) < self.num_workers:
            return None
        del self._pending[step]
        signals = [pending[r] for r in range(self.num_workers)]
        metrics = self.strategy.apply(signals, self.arch_state, self.optimizer)
        self.version += 1
        self.applied.append({"step": step, "version": self.version, **metrics})
        return self.version

    def last_metrics(self) -> dict[str, float]:
        """Metrics of the latest applied update (empty before the first)."""
        if not self.applied:
            return {}
        return {k: v for k, v in self.applied[-1].items() if k not in ("step", "version")}

    def alphas(self) -> tuple[int, list[torch.Tensor]]:
        """(version, α tensors) — what workers copy into their super-net."""
        return self.version, [a.detach().clone() for a in self.arch_state.alphas]

    def state_dict(self) -> dict[str, Any]:
        """Goes into every Train checkpoint; pending signals are not kept (a restart redoes
        the step that produced them)."""
        return {
            "version": self.version,
            "arch": self.arch_state.state_dict(),
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),  # no aliasing of moments
            "strategy": self.strategy.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.arch_state.load_state_dict(state["arch"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.strategy.load_state_dict(state["strategy"])
        self.version = int(state["version"])
        self._pending.clear()
