"""Proxyless-R: REINFORCE on sampled architectures (paper §3.2.2).

signal: sample M single-path architectures from softmax(α), score each on the held-out batch
with batch-normalisation statistics of that batch (`batchnorm.batch_statistics`, as the official
code scores them), reward R = ACC·(LAT/T)^w with w = −λ₂. apply: policy gradient
−Σ (R − b)·log p(arch) / M with a baseline b (`StrategyConfig.baseline`):
- `official` (default): first b ← b + baseline_decay·(mean R − b), the new mean weighted by
  baseline_decay (the official code's baseline_decay_weight, 0.99), then the advantages against
  that updated b;
- `moving_average`: the advantages against the old b, then b ← baseline_decay·b +
  (1 − baseline_decay)·mean R, a slow average that lags while the rewards rise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from nas_core.arch_state import ArchState
from nas_core.batchnorm import batch_statistics
from nas_core.device import to_host
from nas_core.precision import full_precision
from nas_core.ranks import RankGroup
from nas_core.sampling import sample_paths
from nas_core.strategy.base import STRATEGIES, Strategy
from nas_core.supernet import SuperNet


@dataclass(frozen=True)
class ReinforceSignal:
    """Sampled architectures (candidate index per layer), each with its reward, accuracy and
    predicted latency."""

    paths: tuple[tuple[int, ...], ...]
    rewards: tuple[float, ...]
    accuracies: tuple[float, ...]
    latencies_ms: tuple[float, ...]

    def reduce(self, ranks: RankGroup) -> ReinforceSignal:
        """Every rank's samples, in rank order, in one all-gather; every rank gets them all."""
        if ranks.world_size == 1:
            return self
        rows = np.column_stack(
            [
                np.array(self.paths, dtype=np.float64),
                self.rewards,
                self.accuracies,
                self.latencies_ms,
            ]
        )
        rows = ranks.gather(torch.from_numpy(rows)).cpu().numpy()
        paths = tuple(tuple(int(i) for i in row) for row in rows[:, :-3])
        reward, accuracy, latency = (tuple(rows[:, k].tolist()) for k in (-3, -2, -1))
        return ReinforceSignal(paths, reward, accuracy, latency)


@STRATEGIES.register("reinforce")
class ReinforceStrategy(Strategy):
    def __init__(self, config, latency) -> None:
        super().__init__(config, latency)
        self.baseline: float | None = None

    def reward(self, accuracy: float, latency_ms: float) -> float:
        if self.latency is None or self.config.lambda2 == 0:
            return accuracy
        return accuracy * (latency_ms / self.target_ms) ** (-self.config.lambda2)

    @torch.no_grad()
    def signal(
        self, net: SuperNet, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> ReinforceSignal:
        paths, correct = [], []
        with full_precision(x.device.type), batch_statistics(net):
            for _ in range(self.config.samples):
                path = sample_paths(net.arch_state, generator)
                net.set_paths(path)
                correct.append((net(x).argmax(1) == y).sum())
                paths.append(tuple(path))
        accs = [c / len(y) for c in to_host(torch.stack(correct)).tolist()]  # one host read
        lats = [self.latency.of_indices(p) if self.latency is not None else 0.0 for p in paths]
        rewards = [self.reward(a, t) for a, t in zip(accs, lats, strict=True)]
        return ReinforceSignal(tuple(paths), tuple(rewards), tuple(accs), tuple(lats))

    def apply(
        self, signal: ReinforceSignal, arch_state: ArchState, optimizer: torch.optim.Optimizer
    ) -> dict[str, float]:
        pairs = list(zip(signal.paths, signal.rewards, strict=True))
        mean_reward = sum(r for _, r in pairs) / len(pairs)
        official = self.config.baseline == "official"
        if self.baseline is None:
            self.baseline = mean_reward
        elif official:  # updated before the advantages
            self.baseline += self.config.baseline_decay * (mean_reward - self.baseline)
        optimizer.zero_grad(set_to_none=True)
        log_probs = [torch.log_softmax(a, 0) for a in arch_state.alphas]
        loss = torch.zeros(())
        for path, r in pairs:
            logp = sum(lp[i] for lp, i in zip(log_probs, path, strict=True))
            loss = loss - (r - self.baseline) * logp
        (loss / len(pairs)).backward()
        optimizer.step()
        if not official:  # updated after the advantages
            decay = self.config.baseline_decay
            self.baseline = decay * self.baseline + (1 - decay) * mean_reward
        n = len(pairs)
        return {
            "arch/reward": mean_reward,
            "arch/baseline": self.baseline,
            "arch/accuracy": sum(signal.accuracies) / n,
            "arch/sampled_latency_ms": sum(signal.latencies_ms) / n,
        }

    def state_dict(self) -> dict[str, Any]:
        return {"baseline": self.baseline}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.baseline = state.get("baseline")
