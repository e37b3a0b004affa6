"""Path-level binarisation: memory, the BinaryConnect α gradient, offset rescale, Zero paths."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest
import torch
from torch import nn

from nas_core.arch_state import ArchState
from nas_core.mixed_op import MixedOp
from nas_core.ops import create_op
from nas_core.sampling import GateSample, sample_gates, sample_paths, step_generator
from nas_core.spaces import create_space
from nas_core.supernet import SuperNet
from tests.conftest import SMALL_SPACES

MBCONVS = [f"{k}x{k}_MBConv{e}" for k in (3, 5, 7) for e in (3, 6)]


@contextlib.contextmanager
def saved_bytes() -> Iterator[list[int]]:
    """Bytes of distinct tensor storages autograd keeps for backward (activation memory)."""
    seen: dict[int, int] = {}
    total = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in seen and not isinstance(t, nn.Parameter):
            seen[ptr] = t.untyped_storage().nbytes()
            total[0] = sum(seen.values())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield total


def _step_bytes(model: nn.Module, x: torch.Tensor) -> int:
    with saved_bytes() as total:
        loss = model(x).square().mean()
    loss.backward()
    return total[0]


def test_single_path_memory_is_flat_in_the_number_of_candidates() -> None:
    x = torch.randn(4, 16, 16, 16)
    single, darts = [], []
    for n in range(1, len(MBCONVS) + 1):
        op = MixedOp([create_op(name, 16, 16, 1) for name in MBCONVS[:n]])
        op.set_single(0)
        single.append(_step_bytes(op, x))
        op.set_weighted(torch.full((n,), 1.0 / n))
        darts.append(_step_bytes(op, x))
    assert len(set(single)) == 1, single
    assert darts == sorted(darts) and darts[-1] > 4 * single[0], darts


def test_supernet_path_memory_equals_standalone() -> None:
    from nas_core.architecture import Architecture, build_net

    space = create_space("mobilenet", **SMALL_SPACES["mobilenet"])
    net = SuperNet(space)
    paths = [s.candidates.index("5x5_MBConv6") for s in net.specs]
    net.set_paths(paths)
    standalone = build_net(Architecture(space, tuple(["5x5_MBConv6"] * len(paths))))
    x = torch.randn(2, 3, 32, 32)
    assert _step_bytes(net, x) == _step_bytes(standalone, x)


def _gate_grads(op: MixedOp, x: torch.Tensor, active: int, loss_fn: Callable) -> torch.Tensor:
    """∂L/∂g for every candidate, as leaf gates in full mode (no α involved)."""
    n = len(op.candidates)
    gates = torch.zeros(n)
    gates[active] = 1.0
    gates.requires_grad_(True)
    op.set_gated(range(n), active, gates)
    loss_fn(op(x)).backward()
    return gates.grad.clone()


def _independent_gate_grads(op: MixedOp, x: torch.Tensor, active: int, loss_fn) -> torch.Tensor:
    """⟨∂L/∂y, o_j(x)⟩ computed by plain autograd, no custom Function."""
    op.set_single(active)
    y = op(x).detach().requires_grad_(True)
    (grad_y,) = torch.autograd.grad(loss_fn(y), y)
    with torch.no_grad():
        return torch.stack([(grad_y * c(x)).sum() for c in op.candidates])


def _loss_fn(target: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda y: (y - target).square().mean()


@pytest.fixture
def mixed() -> tuple[MixedOp, torch.Tensor, Callable]:
    op = MixedOp([create_op(n, 8, 8, 1) for n in [*MBCONVS, "zero"]]).eval()
    x = torch.randn(3, 8, 10, 10)
    return op, x, _loss_fn(torch.randn(3, 8, 10, 10))


def test_gate_gradient_is_inner_product_with_each_path_output(mixed) -> None:
    op, x, loss_fn = mixed
    for active in (0, 4, 6):
        got = _gate_grads(op, x, active, loss_fn)
        want = _independent_gate_grads(op, x, active, loss_fn)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
        assert got[6] == 0  # Zero's output is 0, so its gate gradient is 0


def _supernet_one_layer(op: MixedOp) -> tuple[ArchState, list[MixedOp]]:
    arch = ArchState(["layer"], [[str(i) for i in range(len(op.candidates))]])
    arch.init_normal_(step_generator(3, 0), std=0.5)
    return arch, [op]


def _apply_gates(op: MixedOp, arch: ArchState, sample: GateSample) -> None:
    """What SuperNet.set_gates does for one layer."""
    a = arch.alphas[0]
    p = torch.softmax(a[list(sample.involved)], 0)
    onehot = torch.zeros_like(p)
    onehot[sample.active_slot] = 1.0
    op.set_gated(sample.involved, sample.active_slot, onehot - p.detach() + p)


@pytest.mark.parametrize(("pair", "slot"), [((1, 4), 0), ((6, 2), 0), ((2, 6), 1), ((0, 5), 1)])
def test_two_path_alpha_gradient_is_the_full_formula_restricted_to_the_pair(
    mixed, pair: tuple[int, int], slot: int
) -> None:
    op, x, loss_fn = mixed
    arch, _ = _supernet_one_layer(op)
    active = pair[slot]
    full = _gate_grads(op, x, active, loss_fn)  # ∂L/∂g_j of every path
    _apply_gates(op, arch, GateSample(pair, slot))
    loss_fn(op(x)).backward()
    grad = arch.alphas[0].grad
    p = torch.softmax(arch.alphas[0].detach()[list(pair)], 0)
    want = torch.zeros_like(grad)
    for m, i in enumerate(pair):
        want[i] = sum(full[j] * p[n] * (float(m == n) - p[m]) for n, j in enumerate(pair))
    torch.testing.assert_close(grad, want, rtol=1e-5, atol=1e-8)
    unsampled = [i for i in range(len(grad)) if i not in pair]
    assert (grad[unsampled] == 0).all()
    assert grad[list(pair)].abs().sum() > 0  # also when the active path is Zero (index 6)


def test_full_mode_alpha_gradient_matches_the_formula(mixed) -> None:
    op, x, loss_fn = mixed
    arch, _ = _supernet_one_layer(op)
    n = len(op.candidates)
    full = _gate_grads(op, x, 3, loss_fn)
    _apply_gates(op, arch, GateSample(tuple(range(n)), 3))
    loss_fn(op(x)).backward()
    p = torch.softmax(arch.alphas[0].detach(), 0)
    want = torch.stack(
        [sum(full[j] * p[j] * (float(i == j) - p[i]) for j in range(n)) for i in range(n)]
    )
    torch.testing.assert_close(arch.alphas[0].grad, want, rtol=1e-5, atol=1e-8)


def test_offset_rescale_keeps_unsampled_probabilities() -> None:
    arch = ArchState(["l"], [list("abcdefg")])
    arch.init_normal_(step_generator(1, 0), std=1.0)
    before = arch.probs(0).detach().clone()
    pair = (2, 5)
    old = arch.log_mass([pair])
    with torch.no_grad():  # an optimiser step that moves the pair apart and upward
        arch.alphas[0][2] += 0.7
        arch.alphas[0][5] -= 0.2
    arch.rescale_([pair], old)
    after = arch.probs(0).detach()
    others = [i for i in range(7) if i not in pair]
    torch.testing.assert_close(after[others], before[others])
    torch.testing.assert_close(after[list(pair)].sum(), before[list(pair)].sum())
    assert after[2] / after[5] == pytest.approx(
        float(before[2] / before[5]) * float(torch.exp(torch.tensor(0.9))), rel=1e-5
    )


def test_sampled_zero_gives_a_fresh_alpha_gradient_in_a_supernet() -> None:
    """A block whose sampled path is Zero must still update α of both sampled paths."""
    space = create_space("mobilenet", **{**SMALL_SPACES["mobilenet"], "B": 2})
    net = SuperNet(space)  # train mode: BN normalises, so gradients have real magnitudes
    net.arch_state.init_normal_(step_generator(0, 0))
    layer = next(i for i, s in enumerate(net.specs) if "zero" in s.candidates)
    zero = net.specs[layer].candidates.index("zero")
    samples = sample_gates(net.arch_state, step_generator(0, 1))
    samples[layer] = GateSample((zero, 0), 0)  # Zero is the path that runs
    grads = []
    for seed in (1, 2):
        g = torch.Generator().manual_seed(seed)
        x, y = torch.randn(4, 3, 32, 32, generator=g), torch.randint(0, 10, (4,), generator=g)
        net.arch_state.zero_grad()
        net.set_gates(samples)
        nn.functional.cross_entropy(net(x), y).backward()
        grad = net.arch_state.alphas[layer].grad
        assert grad is not None and grad[zero] != 0 and grad[0] != 0
        assert grad[zero] == pytest.approx(-float(grad[0]))  # two-path grads sum to zero
        grads.append(grad.clone())
    assert not torch.allclose(
        grads[0], grads[1], rtol=1e-3, atol=0
    )  # recomputed from this batch, never stale


def test_sampling_is_a_pure_function_of_seed_and_step() -> None:
    arch = ArchState(["a", "b"], [list("xyz"), list("uvwt")])
    arch.init_normal_(step_generator(5, 0), std=1.0)
    assert sample_paths(arch, step_generator(7, 3)) == sample_paths(arch, step_generator(7, 3))
    draws = {tuple(sample_paths(arch, step_generator(7, s))) for s in range(30)}
    assert len(draws) > 3
    for s in sample_gates(arch, step_generator(7, 4)):
        assert len(set(s.involved)) == 2 and s.active in s.involved
    assert [s.involved for s in sample_gates(arch, step_generator(7, 4), "full")] == [
        (0, 1, 2), (0, 1, 2, 3)]  # fmt: skip


def test_zero_share_counts_only_the_layers_that_may_skip() -> None:
    """Zero's share of the derived net is over the layers offering Zero: a fixed layer and a
    layer without Zero neither dilute nor add to it; a space with no Zero has none."""
    arch = ArchState(
        ["a", "fixed", "b", "c"],
        [["3x3", "zero"], ["3x3"], ["3x3", "5x5"], ["3x3", "zero"]],
        [[0.0, 1.0], [0.0], [0.0, 1.0], [1.0, 0.0]],
    )
    assert arch.zero_share() == 0.5
    assert ArchState(["b"], [["3x3", "5x5"]]).zero_share() is None
