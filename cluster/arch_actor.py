"""The architecture actor's state machine, without Ray.

One per search: it owns α (`ArchState`), the arch optimiser and the strategy's state (the
REINFORCE baseline). Only rank 0 talks to it, once per arch step: the ranks reduce their K
signals over their own process group (`Signal.reduce`), rank 0 sends the result in one `step`
call, the actor applies it and replies with the new α and the update's metrics, and rank 0
broadcasts that reply to the other ranks. So the actor serves one call per arch step whatever
K is, and the call carries one signal.

Exactly once: every worker-group attempt starts with `begin`, which resets the actor to the
attempt's checkpoint (or to the initial state when there is none) and opens a new generation.
A `step` from another generation is refused (`StaleAttemptError`: a worker group that should be
gone, or an actor restarted under a running attempt; the attempt fails and Ray Train starts the
next one), and a step at or below the last applied one (a retried call) changes nothing and gets
the current α back. Kept free of Ray so it is
tested directly; the Ray actor is `ray.remote(ArchitectureActor)`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from nas_core.arch_state import ArchState
from nas_core.latency.predictor import LatencyModel
from nas_core.latency.table import LatencyTable
from nas_core.spaces import SearchSpace
from nas_core.strategy import StrategyConfig, create_strategy, make_arch_optimizer


class StaleAttemptError(RuntimeError):
    """An arch step from a worker-group attempt other than the one the actor is serving.

    Not a `ProxylessError`: nothing the user did; Ray Train retries the worker group.
    """


class ArchitectureActor:
    """α, its optimiser and strategy state; one update per arch step from the reduced signal."""

    def __init__(
        self,
        space_config: Mapping[str, Any],
        strategy_config: Mapping[str, Any],
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
        self.version = 0
        self.last_step = -1  # the step of the latest applied update
        self.generation = 0  # bumped by every `begin`
        self._initial = self.state_dict()

    def begin(self, state: Mapping[str, Any] | None) -> tuple[int, int, np.ndarray]:
        """A worker group (re)starts from `state` (its checkpoint's actor state; None: from the
        start). Returns (generation, version, flat α) for rank 0 to hand to every rank."""
        self.load_state_dict(state if state is not None else self._initial)
        self.generation += 1
        return self.generation, self.version, self.flat_alphas()

    def step(
        self, generation: int, step: int, signal: Any
    ) -> tuple[int, np.ndarray, dict[str, float]]:
        """Apply the ranks' reduced signal of `step` once: (version, flat α, metrics)."""
        if generation != self.generation:
            raise StaleAttemptError(
                f"arch step {step} came from worker attempt {generation}, but attempt "
                f"{self.generation} is running"
            )
        if step <= self.last_step:  # a retried call: already applied
            return self.version, self.flat_alphas(), {}
        metrics = self.strategy.apply(signal, self.arch_state, self.optimizer)
        self.version += 1
        self.last_step = step
        return self.version, self.flat_alphas(), metrics

    def attempt(self) -> int:
        """The worker-group attempt being served (1 for the first; 0 before any `begin`)."""
        return self.generation

    def alphas(self) -> tuple[int, list[torch.Tensor]]:
        """(version, α tensors)."""
        return self.version, [a.detach().clone() for a in self.arch_state.alphas]

    def flat_alphas(self) -> np.ndarray:
        """Every layer's α in one array: one buffer for Ray to move instead of a tensor per
        layer (`split_alphas` undoes it)."""
        return torch.cat([a.detach() for a in self.arch_state.alphas]).numpy()

    def state_dict(self) -> dict[str, Any]:
        """Goes into every Train checkpoint."""
        return {
            "version": self.version,
            "last_step": self.last_step,
            "arch": self.arch_state.state_dict(),
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),  # no aliasing of moments
            "strategy": self.strategy.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.arch_state.load_state_dict(state["arch"])
        self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
        self.strategy.load_state_dict(state["strategy"])
        self.version = int(state["version"])
        self.last_step = int(state["last_step"])


def split_alphas(flat: np.ndarray, arch_state: ArchState) -> list[torch.Tensor]:
    """`ArchitectureActor.flat_alphas` back into one tensor per layer of `arch_state`."""
    sizes = [len(a) for a in arch_state.alphas]
    return list(torch.from_numpy(np.array(flat)).split(sizes))
