"""Registry-driven op tests: every candidate op and every layer gets forward, backward,
config round trip and stats checks for free."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from nas_core.errors import ProxylessError
from nas_core.layers import LAYERS, layer_from_config
from nas_core.mixed_op import MixedOp
from nas_core.ops import OPS, OpName, create_op, op_name
from nas_core.registry import Registry
from nas_core.stats import count_macs, count_params

CIN, SIZE = 8, 9
SAME_CHANNELS = {"identity", "zero", "3x3_AvgPool", "3x3_MaxPool"}


def _cout(name: str) -> int:
    return CIN if name in SAME_CHANNELS else 16


def _expected(name: str, cin: int, cout: int, stride: int, size: int) -> tuple[int, int]:
    """Analytic (params, MACs) of one op, written independently of the implementation."""
    out = math.ceil(size / stride)
    parts = OpName.parse(name)
    if parts.family == "MBConv":
        k, e = parts.kernel, parts.param
        mid = cin * e
        params = (cin * mid + 2 * mid if e > 1 else 0) + mid * k * k + 2 * mid + mid * cout
        params += 2 * cout
        macs = (size * size * cin * mid if e > 1 else 0) + out * out * mid * (k * k + cout)
        return params, macs
    if parts.family in ("SepConv", "DilSepConv"):
        k = parts.kernel
        return 2 * cin + cin * k * k + cin * cout, out * out * cin * (k * k + cout)
    return 0, 0


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("name", OPS.names())
def test_candidate_op(name: str, stride: int) -> None:
    cout = _cout(name)
    if name in ("identity", "3x3_AvgPool", "3x3_MaxPool") and stride == 2:
        with pytest.raises(ProxylessError, match="needs stride 1, got 2"):
            create_op(name, CIN, cout, stride)
        return
    op = create_op(name, CIN, cout, stride)
    x = torch.randn(2, CIN, SIZE, SIZE, requires_grad=True)
    y = op(x)
    assert y.shape == (2, cout, math.ceil(SIZE / stride), math.ceil(SIZE / stride))
    if name != "zero":
        (y * torch.randn_like(y)).sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for p in op.parameters():
        assert p.grad is not None, f"{name}: a parameter got no gradient"
    # config round trip, without mutating the config
    cfg = op.to_config()
    frozen = copy.deepcopy(cfg)
    rebuilt = layer_from_config(cfg)
    assert cfg == frozen
    assert rebuilt.to_config() == cfg
    assert op_name(cfg) == name
    # stats against an analytic count
    assert (count_params(op), count_macs(op, SIZE, in_channels=CIN)) == _expected(
        name, CIN, cout, stride, SIZE
    )


@pytest.mark.parametrize("name", OPS.names())
def test_op_names_parse_and_print_back(name: str) -> None:
    assert str(OpName.parse(name)) == name


def test_op_name_parts() -> None:
    assert OpName.parse("5x5_MBConv6") == OpName("MBConv", 5, 6)
    assert OpName.parse("3x3_DilSepConv") == OpName("DilSepConv", 3)
    assert OpName.parse("zero") == OpName("zero")
    for bad in ("3x5_MBConv6", "5x5_", "MBConv 6", "", 3):
        with pytest.raises(ProxylessError, match="not an op name"):
            OpName.parse(bad)


def test_op_name_is_none_for_a_layer_no_op_builds() -> None:
    assert op_name({"name": "ConvLayer", "in_channels": 8, "out_channels": 8}) is None
    assert op_name({"name": "MBInvertedConvLayer", "in_channels": True}) is None


EXAMPLE_LAYERS = {
    "ConvLayer": {"name": "ConvLayer", "in_channels": 4, "out_channels": 8, "groups": 2,
                  "has_shuffle": True, "ops_order": "bn_act_weight"},
    "DepthConvLayer": {"name": "DepthConvLayer", "in_channels": 4, "out_channels": 8,
                       "dilation": 2},
    "PoolingLayer": {"name": "PoolingLayer", "in_channels": 4, "out_channels": 4,
                     "pool_type": "max", "kernel_size": 3, "stride": 1},
    "IdentityLayer": {"name": "IdentityLayer", "in_channels": 4, "out_channels": 4,
                      "use_bn": True, "act_func": "relu"},
    "LinearLayer": {"name": "LinearLayer", "in_features": 4, "out_features": 3,
                    "dropout_rate": 0.1},
    "MBInvertedConvLayer": {"name": "MBInvertedConvLayer", "in_channels": 4,
                            "out_channels": 8, "kernel_size": 5, "expand_ratio": 3},
    "ZeroLayer": {"name": "ZeroLayer", "stride": 2},
    "MixedOp": {"name": "MixedOp", "candidates": [
        {"name": "ZeroLayer", "stride": 1},
        {"name": "MBInvertedConvLayer", "in_channels": 4, "out_channels": 4}]},
}  # fmt: skip


def test_every_layer_has_an_example() -> None:
    assert set(EXAMPLE_LAYERS) == set(LAYERS.names())


@pytest.mark.parametrize("name", LAYERS.names())
def test_layer_round_trip_forward_backward(name: str) -> None:
    cfg = EXAMPLE_LAYERS[name]
    layer = layer_from_config(cfg)
    assert layer_from_config(layer.to_config()).to_config() == layer.to_config()
    x = torch.randn(2, 4) if name == "LinearLayer" else torch.randn(2, 4, 6, 6)
    x.requires_grad_(True)
    if isinstance(layer, MixedOp):
        assert len(layer.candidates) == 2
        layer.set_single(1)  # the MBConv; candidate 0 is Zero, which has no graph
    y = layer(x)
    assert torch.isfinite(y).all()
    if name != "ZeroLayer":
        y.sum().backward()
        assert x.grad is not None
    else:
        assert not y.any() and y.shape == (2, 4, 3, 3)


def test_layer_config_errors_are_one_line() -> None:
    with pytest.raises(ProxylessError, match="unknown key"):
        layer_from_config({"name": "ZeroLayer", "stride": 1, "colour": "red"})
    with pytest.raises(ProxylessError, match="unknown layer"):
        layer_from_config({"name": "Teleporter"})
    with pytest.raises(ProxylessError, match="missing key"):
        layer_from_config({"name": "LinearLayer", "in_features": 3})
    with pytest.raises(ProxylessError, match="unknown op"):
        create_op("9x9_MBConv9", 4, 4, 1)


def test_registry_refuses_duplicates() -> None:
    reg: Registry[int] = Registry("thing")
    reg.register("a")(1)
    with pytest.raises(KeyError, match="duplicate"):
        reg.register("a")(2)
    assert reg.get("a") == 1 and "a" in reg and reg.names() == ["a"]


def test_registry_names_builders_after_themselves_and_lists_by_wildcard() -> None:
    reg: Registry[type] = Registry("thing")

    @reg.register()
    class Widget:
        pass

    assert reg.get("Widget") is Widget
    assert OPS.names("*MBConv6") == ["3x3_MBConv6", "5x5_MBConv6", "7x7_MBConv6"]
    assert LAYERS.names("Conv*") == ["ConvLayer"] and set(LAYERS.names()) >= {"MixedOp"}
