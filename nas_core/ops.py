"""Candidate ops (`3x3_MBConv6`, `5x5_SepConv`, `zero`, …): builders in `OPS` that return
layers of `nas_core.layers`.

Registering a builder is all an op needs, since its layer config (`op_config`) and the way back
from a config to the op's name (`op_name`) are read off the builder itself. `OpName` is the one
parser of the names.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from nas_core.errors import ProxylessError
from nas_core.layers import (
    DepthConvLayer,
    IdentityLayer,
    MBInvertedConvLayer,
    PoolingLayer,
    ZeroLayer,
)
from nas_core.registry import Registry

OPS: Registry[Callable[[int, int, int], nn.Module]] = Registry("op")


@dataclass(frozen=True)
class OpName:
    """The parts of a candidate-op name: `5x5_MBConv6` is kernel 5, family MBConv, param 6;
    `3x3_DilSepConv` has no param; `identity` and `zero` are a family alone."""

    family: str
    kernel: int | None = None
    param: int | None = None  # MBConv: the expand ratio

    _PATTERN: ClassVar[re.Pattern] = re.compile(r"(?:(\d+)x\1_)?([A-Za-z]+?)(\d*)")

    @classmethod
    def parse(cls, name: str) -> OpName:
        match = cls._PATTERN.fullmatch(name) if isinstance(name, str) else None
        if match is None:
            raise ProxylessError(f"{name!r} is not an op name like 5x5_MBConv6 or identity")
        kernel, family, param = match.groups()
        return cls(family, int(kernel) if kernel else None, int(param) if param else None)

    def __str__(self) -> str:
        prefix = f"{self.kernel}x{self.kernel}_" if self.kernel is not None else ""
        return f"{prefix}{self.family}{'' if self.param is None else self.param}"


# ---- candidate ops: name -> builder(in_channels, out_channels, stride) ----


def _register_mbconv(k: int, e: int) -> None:
    @OPS.register(str(OpName("MBConv", k, e)))
    def build(cin: int, cout: int, stride: int) -> nn.Module:
        return MBInvertedConvLayer(cin, cout, k, stride, e)


def _register_sepconv(name: str, k: int, dilation: int) -> None:
    @OPS.register(name)
    def build(cin: int, cout: int, stride: int) -> nn.Module:
        return DepthConvLayer(cin, cout, k, stride, dilation, ops_order="bn_act_weight")


def _register_pool(name: str, pool_type: str) -> None:
    @OPS.register(name)
    def build(cin: int, cout: int, stride: int) -> nn.Module:
        _same_channels(name, cin, cout)
        _stride_one(name, stride)  # strided pools drop padding (official), changing the shape
        return PoolingLayer(cin, cout, pool_type, 3, stride, ops_order="bn_act_weight")


def _same_channels(name: str, cin: int, cout: int) -> None:
    if cin != cout:
        raise ProxylessError(f"op {name} needs in_channels == out_channels, got {cin}→{cout}")


def _stride_one(name: str, stride: int) -> None:
    if stride != 1:
        raise ProxylessError(f"op {name} needs stride 1, got {stride}")


for _k in (3, 5, 7):
    for _e in (1, 3, 6):
        _register_mbconv(_k, _e)
    _register_sepconv(str(OpName("SepConv", _k)), _k, 1)
_register_sepconv(str(OpName("DilSepConv", 3)), 3, 2)
_register_pool(str(OpName("AvgPool", 3)), "avg")
_register_pool(str(OpName("MaxPool", 3)), "max")


ZERO = "zero"  # the op that leaves a block its shortcut alone (a skipped layer)


@OPS.register("identity")
def _identity(cin: int, cout: int, stride: int) -> nn.Module:
    _same_channels("identity", cin, cout)
    _stride_one("identity", stride)
    return IdentityLayer(cin, cout, ops_order="bn_act_weight")


@OPS.register(ZERO)
def _zero(cin: int, cout: int, stride: int) -> nn.Module:
    _same_channels(ZERO, cin, cout)
    return ZeroLayer(stride)


def create_op(name: str, in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """Build the candidate op `name` for one position of a space."""
    return OPS.get(name)(in_channels, out_channels, stride)


def op_config(name: str, in_channels: int, out_channels: int, stride: int) -> dict[str, Any]:
    """The layer config op `name` has at this position, read off its builder (nothing allocated)."""
    return json.loads(_config_text(name, OPS.get(name), in_channels, out_channels, stride))


@functools.cache
def _config_text(name: str, build: Callable, cin: int, cout: int, stride: int) -> str:
    # keyed by the builder too, so a name registered again later is never confused with it
    with torch.device("meta"):
        text = _frozen(build(cin, cout, stride).to_config())
    _NAMED[text] = (name, build)
    return text


# config → (op name, builder) of every config `op_config` has returned: super-net layouts ask
# `op_name` of their own candidates, which then needs no search
_NAMED: dict[str, tuple[str, Callable]] = {}


def _frozen(config: Mapping[str, Any]) -> str:
    return json.dumps(config, sort_keys=True)


def op_name(config: Mapping[str, Any]) -> str | None:
    """The registered op whose layer has exactly this config, or None when none has.

    The position's shape is the config's own (a ZeroLayer has no channels: any will do).
    """
    name, build = _NAMED.get(_frozen(config), (None, None))
    if name in OPS and OPS.get(name) is build:
        return name
    cin = config.get("in_channels", 8)
    cout, stride = config.get("out_channels", cin), config.get("stride", 1)
    if not all(type(v) is int and v > 0 for v in (cin, cout, stride)):
        return None
    for name in OPS:
        try:
            if op_config(name, cin, cout, stride) == config:
                return name
        except ProxylessError:  # the op does not fit this position (e.g. a pool with stride 2)
            continue
    return None
