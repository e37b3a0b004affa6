"""Mixed precision on the CPU (the same code path CUDA takes): bf16 weight steps, fp32 α."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nas_core.latency.predictor import LatencyModel
from nas_core.latency.synthetic import synthetic_table
from nas_core.precision import Amp, full_precision, training_speedups
from nas_core.sampling import sample_gates, step_generator
from nas_core.spaces import create_space
from nas_core.strategy import STRATEGIES, StrategyConfig, create_strategy
from nas_core.supernet import SuperNet
from nas_core.training import weight_step

SPACE = {"B": 1, "F": 0.5, "resolution": 16, "num_classes": 4}


def _net_and_batch() -> tuple[SuperNet, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    net = SuperNet(create_space("mobilenet", **SPACE))
    net.arch_state.init_normal_(step_generator(0, 0), std=0.5)
    g = torch.Generator().manual_seed(1)
    return net, torch.randn(8, 3, 16, 16, generator=g), torch.randint(0, 4, (8,), generator=g)


@pytest.mark.parametrize("mode", ["two", "full"])
@pytest.mark.parametrize("name", STRATEGIES.names())
def test_arch_step_inside_bf16_autocast_equals_fp32(name: str, mode: str) -> None:
    net, x, y = _net_and_batch()
    latency = LatencyModel(net.space, synthetic_table(net.space))
    strategy = create_strategy(StrategyConfig(name=name, grad_mode=mode, samples=3), latency)
    fp32 = strategy.signal(net, x, y, step_generator(0, 5))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        amp = strategy.signal(net, x, y, step_generator(0, 5))
    if name == "gradient":
        for a, b in zip(fp32.grads, amp.grads, strict=True):
            assert a.dtype == b.dtype == np.float32
            np.testing.assert_allclose(b, a, rtol=1e-6, atol=0.0)
        assert amp.ce == pytest.approx(fp32.ce, rel=1e-6)
    else:
        assert amp.rewards == fp32.rewards and amp.paths == fp32.paths


def test_bf16_autocast_would_change_the_gate_gradient() -> None:
    """Why the arch step leaves autocast: the same gated step in bf16 gives other gradients."""
    net, x, y = _net_and_batch()
    samples = sample_gates(net.arch_state, step_generator(0, 5), "two")

    def alpha_grads(autocast: bool) -> list[torch.Tensor]:
        net.arch_state.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            net.set_gates(samples)
            ce = F.cross_entropy(net(x), y)
        return list(torch.autograd.grad(ce, net.arch_state.alphas))

    fp32, bf16 = alpha_grads(False), alpha_grads(True)  # bf16 runs: the gate Function is safe
    assert all(torch.isfinite(g).all() for g in bf16)
    worst = max(
        float(((b - a).abs() / a.abs().clamp_min(1e-12)).max())
        for a, b in zip(fp32, bf16, strict=True)
    )
    assert worst > 1e-3  # far outside the 1e-6 the fp32 arch step keeps


def test_gate_function_recomputes_in_the_forwards_autocast_state() -> None:
    """The other paths' recompute in backward sees bf16 weights-by-autocast, not a dtype clash."""
    net, x, y = _net_and_batch()
    samples = sample_gates(net.arch_state, step_generator(0, 6), "full")
    seen: set[torch.dtype] = set()
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: seen.add(out.dtype))
        for m in net.modules()
        if isinstance(m, torch.nn.Conv2d)
    ]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        net.set_gates(samples)
        ce = F.cross_entropy(net(x), y)
    ce.backward()  # outside the region, as a training loop does
    for h in hooks:
        h.remove()
    assert seen == {torch.bfloat16}
    assert all(a.grad is not None and torch.isfinite(a.grad).all() for a in net.arch_state.alphas)


def test_full_precision_overrides_the_callers_region() -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.is_autocast_enabled("cpu")
        with full_precision("cpu"):
            assert not torch.is_autocast_enabled("cpu")
            out = torch.nn.functional.linear(torch.randn(2, 3), torch.randn(4, 3))
            assert out.dtype == torch.float32
        assert torch.is_autocast_enabled("cpu")


def test_weight_step_runs_in_bf16_and_training_speedups_restore_flags() -> None:
    net, x, y = _net_and_batch()
    net.set_paths([0] * len(net.specs))
    dtypes: set[torch.dtype] = set()
    head = [m for m in net.modules() if isinstance(m, torch.nn.Linear)][-1]
    handle = head.register_forward_hook(lambda _m, _i, out: dtypes.add(out.dtype))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    loss, acc = weight_step(net, opt, x, y, 0.1, 0.1, Amp("bf16", torch.device("cpu")))
    handle.remove()
    assert dtypes == {torch.bfloat16}
    assert loss.dtype == torch.float32 and torch.isfinite(loss) and 0 <= float(acc) <= 1
    before = (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32)
    with training_speedups(torch.device("cpu")):  # CPU: nothing global changes
        assert (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32) == before
    assert (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32) == before


def test_fp16_amp_scales_the_loss_and_keeps_its_state() -> None:
    net, x, y = _net_and_batch()
    net.set_paths([0] * len(net.specs))
    amp = Amp("fp16", torch.device("cpu"))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    weight_step(net, opt, x, y, 0.1, 0.1, amp)
    state = amp.state_dict()
    assert state["scale"] > 1
    other = Amp("fp16", torch.device("cpu"))
    other.load_state_dict(state)
    assert other.state_dict() == state
