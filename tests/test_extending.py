"""Adding an op is one registry entry: a toy op, registered here and nowhere else, is searched,
priced, profiled, exported and re-imported (the README's "Extending" recipe)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from nas_core.architecture import build_net
from nas_core.errors import ProxylessError
from nas_core.latency.modules import module_for_key
from nas_core.latency.predictor import architecture_latency, net_config_latency
from nas_core.latency.synthetic import synthetic_table
from nas_core.layers import ConvLayer
from nas_core.nets import net_from_config
from nas_core.ops import OPS, OpName, op_name
from nas_core.search import Searcher
from nas_core.search_config import SearchConfig
from nas_core.spaces import SearchSpace

TOY = "3x3_ToyConv"


@pytest.fixture
def toy_op() -> Iterator[str]:
    """Registers a plain 3×3 conv-BN-ReLU as an op, and removes it afterwards."""

    @OPS.register(TOY)
    def toy(cin: int, cout: int, stride: int) -> nn.Module:
        return ConvLayer(cin, cout, 3, stride, act_func="relu", ops_order="bn_act_weight")

    yield TOY
    OPS.unregister(TOY)


def test_a_registered_op_is_searched_priced_and_exported(tmp_path: Path, toy_op: str) -> None:
    assert OpName.parse(toy_op) == OpName("ToyConv", 3)
    space_config = {"name": "pyramid_tree", "B": 1, "F": 64, "resolution": 8,
                    "num_classes": 10, "candidates": ["identity", toy_op]}  # fmt: skip
    space = SearchSpace.from_config(space_config)
    lut = tmp_path / "toy.parquet"
    table = synthetic_table(space)
    table.save(lut)
    toy_keys = [k for k in table.entries if f"-op:{toy_op}-" in k]
    assert toy_keys, "the toy op has no latency-table entries"

    config = SearchConfig.from_config(
        {
            "space": space_config,
            "data": {"resolution": 8},
            "strategy": {"lambda2": 0.1, "arch_lr": 0.05},
            "weights": {"lr": 0.1, "batch_size": 64},
            "lut": str(lut),
            "epochs": 1,
            "warmup_epochs": 0,
            "arch_every": 2,
            "out_dir": str(tmp_path / "search"),
        }
    )
    searcher = Searcher.from_config(config)
    before = [a.detach().clone() for a in searcher.net.arch_state.alphas]
    result = searcher.run()
    assert all(m.names == ["identity", toy_op] for m in searcher.net.mixed_ops)
    moved = [
        not torch.equal(b, a) for b, a in zip(before, searcher.net.arch_state.alphas, strict=True)
    ]
    assert all(moved), "arch steps left some α untouched"

    # price, export and re-import the derived net, with the toy op forced in
    arch = result.architecture
    forced = type(arch)(arch.space, (toy_op,) * len(arch.ops))
    config_out = build_net(forced).to_config()
    rebuilt = net_from_config(config_out)
    assert rebuilt.to_config() == config_out
    edges = [m for m in rebuilt.modules() if isinstance(m, ConvLayer) and m.kernel_size == 3]
    assert sum(op_name(e.to_config()) == toy_op for e in edges) == len(arch.ops)
    assert net_config_latency(config_out, table, 8) == pytest.approx(
        architecture_latency(forced, table)
    )
    # its key profiles from the key alone, as every other entry does
    module, shape = module_for_key(toy_keys[0])
    assert module(torch.randn(1, *shape)).shape == (1, *shape)


def test_an_unregistered_op_is_refused_by_name() -> None:
    with pytest.raises(ProxylessError, match=r"candidates: unknown op '3x3_ToyConv'"):
        SearchSpace.from_config({"name": "pyramid_tree", "candidates": ["identity", TOY]})
