"""Strategies: signal/apply split, aggregation, latency terms, REINFORCE baseline."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nas_core.arch_state import ArchState
from nas_core.errors import ProxylessError
from nas_core.latency.predictor import LatencyModel
from nas_core.latency.table import DeviceMeta, LatencyEntry, LatencyTable
from nas_core.sampling import step_generator
from nas_core.spaces import create_space
from nas_core.strategy import (
    GradientSignal,
    ReinforceSignal,
    StrategyConfig,
    create_strategy,
    make_arch_optimizer,
)
from nas_core.supernet import SuperNet

SPACE = {"B": 2, "F": 0.25, "resolution": 16, "num_classes": 4}


def _space_and_latency():
    space = create_space("mobilenet", **SPACE)
    layout = space.latency_layout()

    # cost grows with kernel and expand, so "cheaper" has one meaning
    def cost(key: str) -> float:
        if key.startswith("expanded_conv"):
            f = dict(p.split(":") for p in key.split("-")[1:])
            return int(f["kernel"]) * int(f["expand"]) / 10
        return 1.0

    table = LatencyTable(
        {k: LatencyEntry(3, cost(k), 0.0) for k in layout.all_keys()}, DeviceMeta(name="toy")
    )
    return space, LatencyModel(space, table)


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(8, 3, 16, 16, generator=g), torch.randint(0, 4, (8,), generator=g)


def test_gradient_apply_is_adam_on_the_signal_and_keeps_unsampled_probs() -> None:
    space, latency = _space_and_latency()
    net = SuperNet(space)
    net.arch_state.init_normal_(step_generator(0, 0), std=0.5)
    config = StrategyConfig(lambda2=0.0, arch_lr=0.05)
    strategy = create_strategy(config, latency)
    signal = strategy.signal(net, *_batch(0), step_generator(1, 2))
    assert all(g.shape == a.shape for g, a in zip(signal.grads, net.arch_state.alphas, strict=True))
    before = [p.detach().clone() for p in net.arch_state.all_probs()]
    reference = ArchState(
        net.arch_state.layer_names,
        net.arch_state.candidates,
        [a.detach() for a in net.arch_state.alphas],
    )
    ref_opt = make_arch_optimizer(reference, config)
    for a, g in zip(reference.alphas, signal.grads, strict=True):
        a.grad = torch.from_numpy(g)
    ref_opt.step()
    for layer, inv in enumerate(signal.involved):  # Σ exp over the pair as it was before
        old = torch.logsumexp(net.arch_state.alphas[layer].detach()[list(inv)], 0)
        with torch.no_grad():
            a = reference.alphas[layer]
            a[list(inv)] -= torch.logsumexp(a[list(inv)], 0) - old
    metrics = strategy.apply(signal, net.arch_state, make_arch_optimizer(net.arch_state, config))
    assert metrics["arch/ce"] == signal.ce and metrics["arch/accuracy"] == signal.accuracy
    for a, r in zip(net.arch_state.alphas, reference.alphas, strict=True):
        torch.testing.assert_close(a.detach(), r.detach())
    changed = 0
    for layer, (inv, p0) in enumerate(zip(signal.involved, before, strict=True)):
        p1 = net.arch_state.probs(layer).detach()
        others = [i for i in range(len(p0)) if i not in inv]
        torch.testing.assert_close(p1[others], p0[others])
        changed += int(not torch.allclose(p1[list(inv)], p0[list(inv)]))
    assert changed > 0


@pytest.mark.parametrize("loss", ["add", "mul"])
def test_latency_term_pushes_towards_cheaper_ops(loss: str) -> None:
    space, latency = _space_and_latency()
    net = SuperNet(space)
    config = StrategyConfig(lambda2=2.0, latency_loss=loss, grad_mode="full", arch_lr=0.05)
    strategy = create_strategy(config, latency)
    opt = make_arch_optimizer(net.arch_state, config)
    zero_ce = GradientSignal(
        tuple(np.zeros(len(a), dtype=np.float32) for a in net.arch_state.alphas),
        1.3,
        0.5,
        tuple(tuple(range(len(a))) for a in net.arch_state.alphas),
    )
    start = float(latency.expected(net.arch_state).detach())
    for _ in range(20):
        strategy.apply(zero_ce, net.arch_state, opt)
    assert float(latency.expected(net.arch_state).detach()) < start * 0.9


@pytest.mark.parametrize("loss", ["add", "mul"])
def test_two_path_latency_term_moves_only_the_pair_as_the_official_code(loss: str) -> None:
    """λ₂ > 0: E[latency] over each layer's sampled pair (the official current_prob_over_ops in
    two-path mode), so every unsampled probability stays put; the pair moves by the official
    update, computed here independently in float64."""
    space, latency = _space_and_latency()
    net = SuperNet(space)
    net.arch_state.init_normal_(step_generator(0, 0), std=0.5)
    config = StrategyConfig(lambda2=0.5, latency_loss=loss, grad_mode="two", arch_lr=0.05)
    strategy = create_strategy(config, latency)
    signal = strategy.signal(net, *_batch(), step_generator(1, 2))
    alphas = [a.detach().double().numpy().copy() for a in net.arch_state.alphas]
    before = [p.detach().clone() for p in net.arch_state.all_probs()]
    strategy.apply(signal, net.arch_state, make_arch_optimizer(net.arch_state, config))

    # the official update: E over the pairs, its gradient, one Adam step (betas (0, 0.999)),
    # then the offset that keeps each pair's Σ exp α
    costs = [c.numpy() for c in latency.costs]
    pairs = [list(inv) for inv in signal.involved]
    q = [np.exp(a[i] - np.logaddexp.reduce(a[i])) for a, i in zip(alphas, pairs, strict=True)]
    layer_e = [(qi * c[i]).sum() for qi, c, i in zip(q, costs, pairs, strict=True)]
    e = latency.fixed_ms + sum(layer_e)
    de = [qi * (c[i] - le) for qi, c, i, le in zip(q, costs, pairs, layer_e, strict=True)]
    t, lam = strategy.target_ms, config.lambda2
    if loss == "add":
        scale, lat = 1.0, [lam / t * d for d in de]
    else:
        ratio = math.log(e) / math.log(t)
        scale = ratio**lam
        lat = [signal.ce * lam * ratio ** (lam - 1) / (e * math.log(t)) * d for d in de]
    for a, g_ce, i, g_lat, after, p0 in zip(
        alphas, signal.grads, pairs, lat, net.arch_state.alphas, before, strict=True
    ):
        g = scale * g_ce.astype(np.float64)[i] + g_lat
        moved = a[i] - config.arch_lr * g / (np.abs(g) + config.arch_eps)
        moved -= np.logaddexp.reduce(moved) - np.logaddexp.reduce(a[i])
        np.testing.assert_allclose(after.detach().double().numpy()[i], moved, atol=1e-6)
        others = [k for k in range(len(a)) if k not in i]
        p1 = torch.softmax(after.detach(), 0)
        torch.testing.assert_close(p1[others], p0[others], rtol=0, atol=1e-7)


def test_mul_loss_stops_clearly_when_the_expected_latency_is_1ms_or_less() -> None:
    space = create_space("mobilenet", **SPACE)
    keys = space.latency_layout().all_keys()
    fast = LatencyTable({k: LatencyEntry(3, 0.01, 0.0) for k in keys}, DeviceMeta(name="fast"))
    latency = LatencyModel(space, fast)
    net = SuperNet(space)
    config = StrategyConfig(lambda2=0.3, latency_loss="mul", target_ms=5.0)
    strategy = create_strategy(config, latency)
    signal = strategy.signal(net, *_batch(), step_generator(0, 1))
    with pytest.raises(ProxylessError, match=r"E\[latency\] fell to 0\.\d+ ms: latency_loss mul"):
        strategy.apply(signal, net.arch_state, make_arch_optimizer(net.arch_state, config))
    with pytest.raises(ProxylessError, match=r"strategy\.target_ms: latency_loss mul needs"):
        create_strategy(StrategyConfig(latency_loss="mul"), latency)  # T = E at uniform α


def test_mul_loss_factor_and_gradient() -> None:
    space, latency = _space_and_latency()
    net = SuperNet(space)
    net.arch_state.init_normal_(step_generator(0, 0), std=0.3)
    config = StrategyConfig(lambda2=0.3, latency_loss="mul", target_ms=5.0)
    strategy = create_strategy(config, latency)
    factor, term = strategy._latency_factor(net.arch_state, ce=1.7)
    e = float(latency.expected(net.arch_state).detach())
    assert float(factor.detach()) == pytest.approx((math.log(e) / math.log(5.0)) ** 0.3)
    assert float(term.detach()) == pytest.approx(1.7 * float(factor.detach()))


def test_reinforce_gradient_and_baseline() -> None:
    space, latency = _space_and_latency()
    net = SuperNet(space)
    config = StrategyConfig(
        name="reinforce", lambda2=0.5, samples=4, baseline="moving_average", baseline_decay=0.9
    )
    strategy = create_strategy(config, latency)
    sig = strategy.signal(net, *_batch(), step_generator(0, 3))
    assert len(sig.paths) == 4 and all(len(p) == len(net.specs) for p in sig.paths)
    for path, r in zip(sig.paths, sig.rewards, strict=True):
        assert r >= 0
        acc_part = r / (latency.of_indices(path) / strategy.target_ms) ** -0.5
        assert 0 <= acc_part <= 1 + 1e-9
    layers = len(net.specs)
    fixed = ReinforceSignal(((0,) * layers, (1,) * layers), (1.0, 0.0), (1.0, 0.0), (1.0, 3.0))
    opt = torch.optim.SGD(net.arch_state.parameters(), lr=0.0)  # inspect the gradient, keep α
    strategy.baseline = 0.25
    metrics = strategy.apply(fixed, net.arch_state, opt)
    assert metrics["arch/baseline"] == pytest.approx(0.9 * 0.25 + 0.1 * 0.5)
    assert metrics["arch/accuracy"] == 0.5 and metrics["arch/sampled_latency_ms"] == 2.0
    for a in net.arch_state.alphas:  # ∂/∂α of −Σ (R − b) log p / 2
        p = torch.softmax(a.detach(), 0)
        onehot0, onehot1 = torch.zeros_like(p), torch.zeros_like(p)
        onehot0[0], onehot1[1] = 1, 1
        want = -((1.0 - 0.25) * (onehot0 - p) + (0.0 - 0.25) * (onehot1 - p)) / 2
        torch.testing.assert_close(a.grad, want)
    assert create_strategy(config, latency).state_dict() == {"baseline": None}


def test_reinforce_official_baseline_moves_before_the_advantages() -> None:
    """The official update on a hand-made reward sequence: b ← b + 0.99·(mean R − b) first
    (b = the first mean at the start), then −Σ (R − b)·∇log p / M against that new b."""
    space, latency = _space_and_latency()
    net = SuperNet(space)
    config = StrategyConfig(name="reinforce", lambda2=0.0, samples=2)
    assert config.baseline == "official" and config.baseline_decay == 0.99
    strategy = create_strategy(config, latency)
    opt = torch.optim.SGD(net.arch_state.parameters(), lr=0.0)  # inspect the gradient, keep α
    layers = len(net.specs)
    paths = ((0,) * layers, (1,) * layers)
    b = None
    for rewards in [(0.2, 0.4), (0.9, 0.5), (0.1, 0.1)]:
        signal = ReinforceSignal(paths, rewards, rewards, (1.0, 1.0))
        metrics = strategy.apply(signal, net.arch_state, opt)
        mean = sum(rewards) / 2
        b = mean if b is None else b + 0.99 * (mean - b)
        assert metrics["arch/baseline"] == pytest.approx(b, abs=1e-12)
        for a in net.arch_state.alphas:
            p = torch.softmax(a.detach(), 0)
            onehot0, onehot1 = torch.zeros_like(p), torch.zeros_like(p)
            onehot0[0], onehot1[1] = 1, 1
            want = -((rewards[0] - b) * (onehot0 - p) + (rewards[1] - b) * (onehot1 - p)) / 2
            torch.testing.assert_close(a.grad, want)


def test_reinforce_scores_with_batch_statistics_and_leaves_running_ones_alone() -> None:
    space, latency = _space_and_latency()
    torch.manual_seed(0)
    net = SuperNet(space)
    net.train()
    x, y = _batch(3)
    for _ in range(3):  # running statistics that differ from this batch's own
        net.set_paths([0] * len(net.specs))
        net(torch.randn(8, 3, 16, 16) * 3 + 1)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    strategy = create_strategy(StrategyConfig(name="reinforce", samples=3), latency)
    signal = strategy.signal(net, x, y, step_generator(0, 4))
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # nothing moved
    assert net.training  # the caller's mode is back
    for path, accuracy in zip(signal.paths, signal.accuracies, strict=True):
        reference = SuperNet(space)  # the same path scored on this batch's own statistics
        reference.load_state_dict(before)
        reference.set_paths(path)
        reference.train()
        with torch.no_grad():
            want = (reference(x).argmax(1) == y).float().mean().item()
        assert accuracy == pytest.approx(want)


@pytest.mark.parametrize(
    "bad",
    [
        {"lambda2": -0.1},
        {"name": "evolution"},
        {"grad_mode": "three"},
        {"latency_loss": "pow"},
        {"samples": 0},
        {"baseline_decay": 1.5},
        {"arch_lr": 0},
        {"target_ms": -5},
        {"lambda2": float("nan")},
        {"arch_betas": [0.9]},
    ],
)
def test_bad_strategy_configs(bad: dict) -> None:
    (field,) = bad
    with pytest.raises(ProxylessError, match=f"^{field}"):
        StrategyConfig.from_config(bad)


def test_latency_weight_needs_a_table() -> None:
    with pytest.raises(ProxylessError, match="latency table"):
        create_strategy(StrategyConfig(lambda2=0.1), None)
    assert StrategyConfig.from_config(StrategyConfig().to_config()) == StrategyConfig()
