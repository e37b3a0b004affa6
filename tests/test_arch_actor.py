"""The architecture actor's core: one reduced signal in, one update out, versioned, restorable."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cluster.arch_actor import ArchitectureActor, StaleAttemptError, split_alphas
from nas_core.sampling import step_generator
from nas_core.spaces import create_space
from nas_core.strategy import StrategyConfig, create_strategy, make_arch_optimizer
from nas_core.supernet import SuperNet

SPACE = {"name": "mobilenet", "B": 2, "F": 0.25, "resolution": 16, "num_classes": 4}


def _signal(net: SuperNet, strategy, step: int):
    g = torch.Generator().manual_seed(100 * step)
    x, y = torch.randn(6, 3, 16, 16, generator=g), torch.randint(0, 4, (6,), generator=g)
    return strategy.signal(net, x, y, step_generator(0, step, stream=1))


def _actor_and_reference(**strategy) -> tuple:
    space = create_space(**SPACE)
    net = SuperNet(space)
    net.arch_state.init_normal_(step_generator(0, 0), std=0.3)
    config = StrategyConfig(**{"lambda2": 0.0, "arch_lr": 0.05, **strategy})
    actor = ArchitectureActor(space.to_config(), config.to_config(), net.arch_state.to_config())
    return net, config, actor


def _alphas_equal(flat, b: list) -> None:
    """The actor's flat α equals the per-layer tensors `b`, exactly."""
    a = list(torch.from_numpy(flat).split([len(t) for t in b]))
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y.detach(), rtol=0, atol=0)


def test_one_call_applies_the_signal_once() -> None:
    net, config, actor = _actor_and_reference()
    local_arch = SuperNet.from_config(net.to_config()).arch_state  # the single-process reference
    local = create_strategy(config, None)
    local_opt = make_arch_optimizer(local_arch, config)
    generation, version, alphas = actor.begin(None)
    assert (generation, version) == (1, 0)
    _alphas_equal(alphas, net.arch_state.alphas)
    for step in range(3):
        signal = _signal(net, local, step)
        version, alphas, metrics = actor.step(generation, step, signal)
        local.apply(signal, local_arch, local_opt)
        assert version == step + 1 and "arch/ce" in metrics
        _alphas_equal(alphas, local_arch.alphas)
        # a retried call of the same step changes nothing and returns the current α
        again = actor.step(generation, step, signal)
        assert again[0] == version and again[2] == {}
        _alphas_equal(again[1], local_arch.alphas)
        with torch.no_grad():  # the workers copy the new α
            for a, b in zip(
                net.arch_state.alphas, split_alphas(alphas, net.arch_state), strict=True
            ):
                a.copy_(b)
    assert (actor.version, actor.last_step) == (3, 2)  # three steps, each applied once


def test_a_new_attempt_without_checkpoint_starts_from_the_initial_state() -> None:
    net, config, actor = _actor_and_reference(name="reinforce", samples=2, arch_lr=0.1)
    strategy = create_strategy(config, None)
    initial = [a.detach().clone() for a in net.arch_state.alphas]
    first, _, _ = actor.begin(None)
    signals = [_signal(net, strategy, step) for step in range(2)]
    ran = [actor.step(first, step, signals[step])[1] for step in range(2)]
    # the attempt dies before its first checkpoint; the next one must not inherit its updates
    second, version, alphas = actor.begin(None)
    assert second == first + 1 and version == 0 and actor.strategy.baseline is None
    _alphas_equal(alphas, initial)
    with pytest.raises(StaleAttemptError, match="attempt 1, but attempt 2 is running"):
        actor.step(first, 2, signals[0])  # a straggler of the dead attempt
    rerun = [actor.step(second, step, signals[step])[1] for step in range(2)]
    for a, b in zip(ran, rerun, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_new_attempt_from_a_checkpoint_continues_exactly() -> None:
    net, config, actor = _actor_and_reference(name="reinforce", samples=2, arch_lr=0.1)
    strategy = create_strategy(config, None)
    generation, _, _ = actor.begin(None)
    for step in range(2):
        actor.step(generation, step, _signal(net, strategy, step))
    state = actor.state_dict()
    nxt = _signal(net, strategy, 2)
    straight = actor.step(generation, 2, nxt)[1]
    generation, version, _ = actor.begin(state)  # restart from the checkpoint after step 1
    assert version == 2 and actor.last_step == 1
    assert actor.step(generation, 1, nxt)[2] == {}  # at or below the checkpoint: already applied
    # α, Adam moments and baseline all continue exactly
    np.testing.assert_array_equal(actor.step(generation, 2, nxt)[1], straight)


class _Silent:
    """An actor that takes longer to answer than a rank will wait."""

    def step(self, *args: object) -> None:
        import time

        time.sleep(30)


def test_a_rank_waits_for_the_actor_at_most_its_timeout(local_ray, tmp_path) -> None:
    import time

    import ray

    from cluster.worker import ActorArchSync
    from nas_core.data import build_datasets
    from nas_core.search import Searcher
    from nas_core.search_config import SearchConfig

    config = SearchConfig.from_config(
        {"space": {**SPACE, "num_classes": 10}, "data": {"resolution": 16},
         "strategy": {"lambda2": 0.0}, "out_dir": str(tmp_path), "tensorboard": False}
    )  # fmt: skip
    searcher = Searcher(config, build_datasets(config.data), None)  # no latency table
    searcher.step = 7
    silent = ray.remote(num_cpus=0)(_Silent).remote()
    sync = ActorArchSync(silent, timeout_s=1.0)
    started = time.perf_counter()
    with pytest.raises(TimeoutError, match=r"^rank 0, step 7: the architecture actor did not"):
        sync.ask(searcher, silent.step.remote(), "an arch step")
    assert time.perf_counter() - started < 10  # it gave up; it did not wait for the reply
    ray.kill(silent)
