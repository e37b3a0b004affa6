"""Arch signals reduced over a real gloo process group of two ranks (no Ray needed).

Proxyless-G averages the ranks' gate gradients in one all-reduce, REINFORCE gathers their
samples in one all-gather; every rank gets the same result, and ranks that sampled different
gates stop with an error instead of averaging gradients of different paths. The distributed
search's other two collectives go through the same group: rank 0's actor reply to every rank
(`from_rank0`) and how far the ranks' weights and α are apart (`spread`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist

from nas_core.errors import ProxylessError
from nas_core.latency.predictor import LatencyModel
from nas_core.latency.synthetic import synthetic_table
from nas_core.ranks import ProcessGroupRanks, SingleProcess, spread
from nas_core.sampling import step_generator
from nas_core.spaces import create_space
from nas_core.strategy import GradientSignal, StrategyConfig, create_strategy
from nas_core.supernet import SuperNet
from tests.outside import two_gloo_ranks

SPACE = {"name": "mobilenet", "B": 2, "F": 0.25, "resolution": 16, "num_classes": 4}


def _signal(name: str, rank: int):
    """This rank's signal on its own batch; the sampling generator is the same on both ranks."""
    torch.manual_seed(0)
    net = SuperNet(create_space(**SPACE))
    net.arch_state.init_normal_(step_generator(0, 0), std=0.5)
    latency = LatencyModel(net.space, synthetic_table(net.space))
    strategy = create_strategy(StrategyConfig(name=name, lambda2=0.5, samples=3), latency)
    g = torch.Generator().manual_seed(10 + rank)
    x, y = torch.randn(8, 3, 16, 16, generator=g), torch.randint(0, 4, (8,), generator=g)
    return strategy.signal(net, x, y, step_generator(1, 2))


def _both(value):
    both = [None, None]
    dist.all_gather_object(both, value)
    return both


def _rank(rank: int) -> None:
    ranks = ProcessGroupRanks(rank, 2, torch.device("cpu"))
    own = _signal("gradient", rank)
    mine, theirs = _both(own)
    assert mine.involved == theirs.involved  # same gates, different data
    assert not np.allclose(mine.grads[0], theirs.grads[0])
    reduced = own.reduce(ranks)
    for g, a, b in zip(reduced.grads, mine.grads, theirs.grads, strict=True):
        np.testing.assert_allclose(g, (a.astype(np.float64) + b) / 2, rtol=1e-12)
    assert reduced.ce == pytest.approx((mine.ce + theirs.ce) / 2, rel=1e-12)
    assert reduced.accuracy == pytest.approx((mine.accuracy + theirs.accuracy) / 2)
    assert reduced.involved == own.involved
    a, b = _both(reduced)  # every rank holds the same mean
    assert all(np.array_equal(x, y) for x, y in zip(a.grads, b.grads, strict=True))

    own = _signal("reinforce", rank)
    first, second = _both(own)
    reduced = own.reduce(ranks)
    assert reduced.paths == first.paths + second.paths  # rank 0's samples, then rank 1's
    assert reduced.rewards == first.rewards + second.rewards
    assert reduced.accuracies == first.accuracies + second.accuracies
    assert reduced.latencies_ms == first.latencies_ms + second.latencies_ms

    # gates that differ between the ranks: both stop
    layers = len(mine.grads)
    involved = tuple((rank, 2) if i == 0 else (0, 1) for i in range(layers))
    apart = GradientSignal(mine.grads, 1.0, 0.5, involved)
    with pytest.raises(ProxylessError, match="ranks sampled different gates"):
        apart.reduce(ranks)


def test_two_ranks_reduce_their_arch_signals_in_one_collective(tmp_path: Path) -> None:
    two_gloo_ranks(_rank, tmp_path)


def _rank_collectives(rank: int) -> None:
    ranks = ProcessGroupRanks(rank, 2, torch.device("cpu"))
    reply = ranks.from_rank0((3, [0.5, 1.5], {"arch/loss": 0.25}) if rank == 0 else None)
    assert reply == (3, [0.5, 1.5], {"arch/loss": 0.25})
    mine = torch.tensor([10.0, 2.0], dtype=torch.float64) + torch.tensor([rank * 0.5, -rank])
    apart = spread(ranks, mine)
    assert apart.dtype == torch.float64 and apart.tolist() == [0.5, 1.0]


def test_rank0_reaches_every_rank_and_spread_is_max_minus_min(tmp_path: Path) -> None:
    two_gloo_ranks(_rank_collectives, tmp_path)
    one = SingleProcess()
    assert one.from_rank0({"a": 1}) == {"a": 1}
    assert spread(one, torch.tensor([4.0, -2.0])).tolist() == [0.0, 0.0]
