"""The architecture actor's core: K signals in, one mean update out, versioned, restorable."""

from __future__ import annotations

import torch

from cluster.arch_actor import ArchitectureActor
from nas_core.sampling import step_generator
from nas_core.spaces import create_space
from nas_core.strategy import StrategyConfig, create_strategy, make_arch_optimizer
from nas_core.supernet import SuperNet

SPACE = {"name": "mobilenet", "B": 2, "F": 0.25, "resolution": 16, "num_classes": 4}


def _signals(net: SuperNet, strategy, step: int, ranks: int) -> list:
    out = []
    for rank in range(ranks):
        g = torch.Generator().manual_seed(100 * step + rank)
        x, y = torch.randn(6, 3, 16, 16, generator=g), torch.randint(0, 4, (6,), generator=g)
        out.append(strategy.signal(net, x, y, step_generator(0, step, stream=1)))
    return out


def test_applies_once_all_ranks_arrived_with_the_mean_signal() -> None:
    space = create_space(**SPACE)
    net = SuperNet(space)
    net.arch_state.init_normal_(step_generator(0, 0), std=0.3)
    config = StrategyConfig(lambda2=0.0, arch_lr=0.05)
    actor = ArchitectureActor(space.to_config(), config.to_config(), 2, net.arch_state.to_config())
    local_arch = SuperNet.from_config(net.to_config()).arch_state  # the single-process reference
    local = create_strategy(config, None)
    local_opt = make_arch_optimizer(local_arch, config)
    for step in range(3):
        signals = _signals(net, local, step, 2)
        assert actor.submit(step, 1, signals[1]) is None  # waits for rank 0
        assert actor.submit(step, 1, signals[1]) is None  # a retried call does not count twice
        assert actor.submit(step, 0, signals[0]) == step + 1
        local.apply(signals, local_arch, local_opt)
        version, alphas = actor.alphas()
        assert version == step + 1
        for a, b in zip(alphas, local_arch.alphas, strict=True):
            torch.testing.assert_close(a, b.detach())
        with torch.no_grad():  # the workers copy the new α
            for a, b in zip(net.arch_state.alphas, alphas, strict=True):
                a.copy_(b)
    assert [m["step"] for m in actor.applied] == [0, 1, 2]


def test_state_round_trip_restores_alpha_optimiser_and_baseline() -> None:
    space = create_space(**SPACE)
    net = SuperNet(space)
    config = StrategyConfig(name="reinforce", lambda2=0.0, samples=2, arch_lr=0.1)
    actor = ArchitectureActor(space.to_config(), config.to_config(), 1, net.arch_state.to_config())
    strategy = create_strategy(config, None)
    for step in range(2):
        actor.submit(step, 0, _signals(net, strategy, step, 1)[0])
    state = actor.state_dict()
    restored = ArchitectureActor(
        space.to_config(), config.to_config(), 1, net.arch_state.to_config()
    )
    restored.load_state_dict(state)
    assert restored.version == 2 and restored.strategy.baseline == actor.strategy.baseline
    nxt = _signals(net, strategy, 2, 1)[0]
    actor.submit(2, 0, nxt)
    restored.submit(2, 0, nxt)
    for a, b in zip(actor.alphas()[1], restored.alphas()[1], strict=True):
        torch.testing.assert_close(a, b)
