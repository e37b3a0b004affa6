"""Architecture JSON, derivation by argmax, standalone nets and their net.config export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nas_core.architecture import Architecture, build_net, load_network
from nas_core.errors import ProxylessError
from nas_core.layers import ZeroLayer
from nas_core.nets import net_from_config
from nas_core.spaces import create_space
from nas_core.stats import count_macs, net_stats
from nas_core.supernet import SuperNet
from tests.conftest import SMALL_SPACES


@pytest.mark.parametrize("name", sorted(SMALL_SPACES))
def test_json_round_trip_and_export(name: str, tmp_path: Path) -> None:
    space = create_space(name, **SMALL_SPACES[name])
    ops = tuple(
        s.candidates[(i * 3) % len(s.candidates)] for i, s in enumerate(space.layer_specs())
    )
    arch = Architecture(space, ops)
    path = tmp_path / "arch.json"
    arch.save(path)
    assert Architecture.load(path) == arch
    assert Architecture.from_config(json.loads(path.read_text())).to_config() == arch.to_config()
    # export to the official net.config format and import it back
    config = arch.net_config()
    rebuilt = net_from_config(json.loads(json.dumps(config)))
    assert rebuilt.to_config() == config
    loaded = load_network(path)
    assert loaded.arch == arch and loaded.resolution == space.resolution
    assert net_stats(loaded.net, loaded.resolution) == net_stats(rebuilt, loaded.resolution)


def test_derive_is_argmax_and_zero_leaves_the_shortcut() -> None:
    space = create_space("mobilenet", **{**SMALL_SPACES["mobilenet"], "B": 2})
    net = SuperNet(space)
    want = []
    with torch.no_grad():
        for spec, a in zip(net.specs, net.arch_state.alphas, strict=True):
            choice = "zero" if "zero" in spec.candidates else "7x7_MBConv3"
            a[spec.candidates.index(choice)] = 2.0
            want.append(choice)
    arch = net.derive()
    assert arch.ops == tuple(want)
    standalone = build_net(arch).eval()
    zero_blocks = [b for b in standalone.blocks if isinstance(b.mobile_inverted_conv, ZeroLayer)]
    assert len(zero_blocks) == want.count("zero") > 0
    x = torch.randn(2, zero_blocks[0].shortcut.in_channels, 8, 8)
    assert torch.equal(zero_blocks[0](x), x)
    # a Zero-heavy net is cheaper than one without Zero
    full = Architecture(space, tuple("7x7_MBConv3" for _ in want))
    assert count_macs(standalone, 32) < count_macs(build_net(full), 32)


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"space": {"name": "mobilenet"}, "ops": ["zero"]}, "21 searchable layers"),
        ({"space": {"name": "mobilenet", "B": 1}, "ops": ["zero"] * 6}, "not a candidate"),
        ({"space": {"name": "warp"}, "ops": []}, "unknown search space"),
        ({"space": {"name": "mobilenet"}, "ops": "3x3"}, "list of op names"),
        ({"space": {"name": "mobilenet"}, "ops": [], "extra": 1}, "exactly the keys"),
        ({"space": {"B": 1}, "ops": []}, "needs a 'name'"),
    ],
)
def test_bad_architectures_are_user_errors(config: dict, match: str) -> None:
    with pytest.raises(ProxylessError, match=match):
        Architecture.from_config(config)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "empty"),
        ('{"space": {"name": "mobilenet"', "invalid JSON"),
        ("[1, 2]", "neither an architecture"),
        ('{"name": "ProxylessNASNets", "blocks": 3}', "not a valid"),
        ('{"name": "PyramidTreeNet", "blocks": [{"name": "Nope"}], "classifier": null}', "Nope"),
    ],
)
def test_bad_network_files_are_user_errors(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "net.json"
    path.write_text(text)
    with pytest.raises(ProxylessError, match=match) as info:
        load_network(path)
    assert "\n" not in str(info.value)
    with pytest.raises(ProxylessError, match="no such file"):
        load_network(tmp_path / "missing.json")
