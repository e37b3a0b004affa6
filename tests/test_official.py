"""The official ProxylessNAS artefacts: exact params/MACs, lossless import/export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nas_core.architecture import Architecture, build_net
from nas_core.nets import net_from_config
from nas_core.ops import op_name
from nas_core.spaces import create_space
from nas_core.stats import net_stats

REFERENCE = {  # DESIGN.md's table: (input, params, MACs)
    "proxyless_cpu": (224, 4_361_648, 439_243_864),
    "proxyless_gpu": (224, 7_119_848, 465_260_160),
    "proxyless_mobile": (224, 4_080_512, 320_427_584),
    "proxyless_mobile_14": (224, 6_857_568, 580_883_408),
    "proxyless_cifar": (32, 5_731_530, 1_213_155_872),
}


@pytest.mark.fixtures
@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_official_config_stats_and_round_trip(fixtures_dir: Path, name: str) -> None:
    config = json.loads((fixtures_dir / f"{name}.config").read_text())
    net = net_from_config(config)
    resolution, params, macs = REFERENCE[name]
    stats = net_stats(net, resolution)
    assert (stats.params, stats.macs) == (params, macs)
    assert net.to_config() == config
    net.eval()
    with torch.no_grad():
        out = net(torch.randn(1, 3, resolution, resolution))
    assert out.shape == (1, 1000 if resolution == 224 else 10)


def _cell_edge_ops(node: dict, depth: int, out: list[str]) -> None:
    """Pre-order walk of a tree cell; the searchable edges are those at depth >= 2."""
    for edge, child in zip(node["edges"], node["child_nodes"], strict=True):
        if depth >= 2:
            out.append(op_name(edge))
        if child is not None:
            _cell_edge_ops(child, depth + 1, out)


@pytest.mark.fixtures
def test_pyramid_tree_space_reproduces_the_official_cifar_net(fixtures_dir: Path) -> None:
    config = json.loads((fixtures_dir / "proxyless_cifar.config").read_text())
    ops: list[str] = []
    for block in config["blocks"]:
        if block["name"] == "ResidualTreeBlock":
            _cell_edge_ops(block["cell"], 0, ops)
    arch = Architecture(create_space("pyramid_tree", B=18, F=400), tuple(ops))
    assert build_net(arch).to_config() == config
