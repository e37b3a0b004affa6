"""The paper's ImageNet space on a MobileNetV2 backbone (ProxylessNAS §4.2).

Table-driven: stage widths, block counts and strides below, plus one builder. B sets the blocks
of each of the first five stages (the last keeps 1), F multiplies every width (rounded to
multiples of 8 as in the official `make_divisible`). Each stage block chooses among MBConv
{3,5,7}×{3,6}, plus Zero where stride is 1 and in = out (so depth is searched too).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator
from torch import nn

from nas_core.config import ConfigModel, FiniteFloat
from nas_core.layers import ConvLayer, IdentityLayer, LinearLayer, MBInvertedConvLayer
from nas_core.nets.mobilenet import MobileInvertedResidualBlock, ProxylessNASNets
from nas_core.ops import OPS, ZERO, OpName
from nas_core.spaces.base import (
    SPACES,
    LayerSpec,
    MakeLayer,
    SearchSpace,
)

# (width, blocks (None = B), stride) of the searchable stages.
STAGES: tuple[tuple[int, int | None, int], ...] = (
    (24, None, 2),
    (40, None, 2),
    (80, None, 2),
    (96, None, 1),
    (192, None, 2),
    (320, 1, 1),
)
FIRST_CONV, FIRST_BLOCK, LAST_CHANNEL = 32, 16, 1280


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round to the nearest multiple of `divisor`, never more than 10 % below `v`."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def first_conv(cin: int, cout: int) -> ConvLayer:
    """3×3 stride-2 conv, BN, ReLU6."""
    return ConvLayer(cin, cout, 3, 2, use_bn=True, act_func="relu6")


def feature_mix(cin: int, cout: int) -> ConvLayer:
    """1×1 conv, BN, ReLU6 before the global pool."""
    return ConvLayer(cin, cout, 1, use_bn=True, act_func="relu6")


class MobileNetSpaceConfig(ConfigModel):
    """Hyperparameters of the mobilenet space (paper defaults).

    Upper bounds keep a typo (F: 100) from building a net no machine can hold.
    """

    B: int = Field(4, ge=1, le=32)  # blocks in each of the first five stages
    F: FiniteFloat = Field(1.0, gt=0, le=8.0)  # width multiplier
    resolution: int = Field(224, ge=8, le=2048)  # input H = W
    num_classes: int = Field(1000, ge=2, le=100_000)
    # MBConv kernel sizes and expand ratios searched
    kernels: tuple[Literal[3, 5, 7], ...] = Field((3, 5, 7), strict=False, min_length=1)
    expands: tuple[Literal[1, 3, 6], ...] = Field((3, 6), strict=False, min_length=1)
    zero: bool = True  # offer Zero where stride 1 and in = out
    # None: search every block (the paper). An op name fixes the first block of each stage (no
    # shortcut) to that op: switching those among independently initialised candidates
    # replaces the whole representation each step, which a one-shot super-net only survives
    # with a long warm-up (the paper's 40 ImageNet epochs); small budgets need them fixed.
    transition_op: str | None = None

    @field_validator("transition_op")
    @classmethod
    def _mbconv(cls, op: str | None) -> str | None:
        if op is not None and (op not in OPS or OpName.parse(op).family != "MBConv"):
            raise ValueError("must be an MBConv op name")
        return op


@SPACES.register("mobilenet")
class MobileNetSpace(SearchSpace):
    """MobileNetV2 backbone with one mixed op per stage block: 21 searchable layers at B=4."""

    name = "mobilenet"
    Config = MobileNetSpaceConfig

    def _widths(self) -> tuple[int, int, int]:
        f = self.config.F
        last = make_divisible(LAST_CHANNEL * f) if f > 1.0 else LAST_CHANNEL
        return make_divisible(FIRST_CONV * f), make_divisible(FIRST_BLOCK * f), last

    def layer_specs(self) -> list[LayerSpec]:
        c = self.config
        mbconvs = tuple(str(OpName("MBConv", k, e)) for k in c.kernels for e in c.expands)
        _, cin, _ = self._widths()
        size = -(-c.resolution // 2)  # after the stride-2 first conv: ceil(R/2)
        specs: list[LayerSpec] = []
        for width, blocks, stride in STAGES:
            cout = make_divisible(width * c.F)
            for i in range(c.B if blocks is None else blocks):
                s = stride if i == 0 else 1
                skip = s == 1 and cin == cout
                cands = (*mbconvs, ZERO) if skip and c.zero else mbconvs
                if not skip and c.transition_op is not None:
                    cands = (c.transition_op,)
                specs.append(
                    LayerSpec(
                        index=len(specs),
                        name=f"blocks.{len(specs) + 1}",
                        candidates=cands,
                        in_channels=cin,
                        out_channels=cout,
                        stride=s,
                        input_size=size,
                        shortcut=skip,
                    )
                )
                size, cin = -(-size // s), cout
        return specs

    def build(self, make_layer: MakeLayer) -> nn.Module:
        first, block0, last = self._widths()
        specs = self.layer_specs()
        blocks = [MobileInvertedResidualBlock(MBInvertedConvLayer(first, block0, 3, 1, 1), None)]
        for spec in specs:
            shortcut = IdentityLayer(spec.in_channels, spec.out_channels) if spec.shortcut else None
            blocks.append(MobileInvertedResidualBlock(make_layer(spec), shortcut))
        return ProxylessNASNets(
            first_conv(3, first),
            blocks,
            feature_mix(specs[-1].out_channels, last),
            LinearLayer(last, self.config.num_classes),
            {"momentum": 0.1, "eps": 1e-3},
        )
