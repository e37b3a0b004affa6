"""Registry-driven space tests plus the paper's layout of each space."""

from __future__ import annotations

import pytest
import torch

from nas_core.architecture import Architecture, build_net, ops_of
from nas_core.errors import ProxylessError
from nas_core.sampling import sample_paths, step_generator
from nas_core.spaces import SPACES, SearchSpace, create_space
from nas_core.spaces.mobilenet import make_divisible
from nas_core.spaces.pyramid_tree import bottleneck_widths
from nas_core.stats import count_macs, count_params
from nas_core.supernet import SuperNet
from tests.conftest import SMALL_SPACES


def test_every_space_has_a_small_setting() -> None:
    assert set(SMALL_SPACES) == set(SPACES.names())


@pytest.mark.parametrize("name", sorted(SMALL_SPACES))
def test_space_forward_backward_round_trip_stats(name: str) -> None:
    space = create_space(name, **SMALL_SPACES[name])
    assert SearchSpace.from_config(space.to_config()).to_config() == space.to_config()
    net = SuperNet(space)
    assert SuperNet.from_config(net.to_config()).to_config() == net.to_config()
    paths = sample_paths(net.arch_state, step_generator(0, 1), uniform=True)
    net.set_paths(paths)
    x = torch.randn(2, 3, space.resolution, space.resolution)
    logits = net(x)
    assert logits.shape == (2, space.config.num_classes)
    logits.logsumexp(1).sum().backward()
    # only the active candidates get weight gradients
    for op, i in zip(net.mixed_ops, paths, strict=True):
        for j, cand in enumerate(op.candidates):
            got = [p.grad is not None for p in cand.parameters()]
            assert all(got) if j == i else not any(got)
    # α is not a module parameter
    ids = {id(p) for p in net.parameters()}
    assert not any(id(a) in ids for a in net.arch_state.alphas)
    # the super-net on a path costs what the standalone net of that path costs
    arch = Architecture(space, ops_of(space, paths))
    standalone = build_net(arch)
    assert count_macs(net, space.resolution) == count_macs(standalone, space.resolution)
    assert count_params(standalone) < count_params(net)
    assert standalone(x).shape == logits.shape


def test_mobilenet_layout_follows_the_paper() -> None:
    space = create_space("mobilenet")
    specs = space.layer_specs()
    assert len(specs) == 21
    for s in specs:
        has_zero = "zero" in s.candidates
        assert has_zero == (s.stride == 1 and s.in_channels == s.out_channels)
        assert len(s.candidates) == (7 if has_zero else 6)
    assert [s.out_channels for s in specs if "zero" not in s.candidates] == [
        24, 40, 80, 96, 192, 320]  # fmt: skip
    assert [s.stride for s in specs if "zero" not in s.candidates] == [2, 2, 2, 1, 2, 1]
    assert [s.input_size for s in specs if s.stride == 2] == [112, 56, 28, 14]
    assert len(create_space("mobilenet", B=2).layer_specs()) == 11
    wide = create_space("mobilenet", F=1.4).layer_specs()
    assert [s.out_channels for s in wide][-1] == make_divisible(320 * 1.4) == 448
    net = SuperNet(create_space("mobilenet", B=1, F=0.35, resolution=64, num_classes=3))
    net.set_paths([0] * len(net.specs))
    assert net(torch.randn(1, 3, 64, 64)).shape == (1, 3)


def test_pyramid_tree_layout_follows_the_paper() -> None:
    space = create_space("pyramid_tree", B=2, F=96)
    specs = space.layer_specs()
    assert len(specs) == 3 * 2 * 12
    assert all(len(s.candidates) == 7 for s in specs)
    widths = bottleneck_widths(2, 96)
    assert widths[-1] == 24 and widths == sorted(widths) and all(w % 2 == 0 for w in widths)
    assert {s.input_size for s in specs} == {32, 16, 8}
    assert len(create_space("pyramid_tree", B=1, F=64, resolution=48).layer_specs()) == 36


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("mobilenet", {"B": 0}),
        ("mobilenet", {"F": -1.0}),
        ("mobilenet", {"resolution": 4}),
        ("mobilenet", {"kernels": [4]}),
        ("mobilenet", {"depth": 3}),
        ("pyramid_tree", {"F": 100}),
        ("pyramid_tree", {"resolution": 30}),
        ("pyramid_tree", {"candidates": ["9x9_NoSuchOp"]}),
        ("nope", {}),
    ],
)
def test_bad_space_configs_are_user_errors(name: str, bad: dict) -> None:
    field = next(iter(bad), "unknown search space")  # the message names the field at fault
    with pytest.raises(ProxylessError, match=f"^{field}"):
        create_space(name, **bad)
