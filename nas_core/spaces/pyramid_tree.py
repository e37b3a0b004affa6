"""The paper's CIFAR space: PyramidNet backbone whose cells are depth-3 binary trees (§4.1).

Three stages of B bottleneck residual blocks; bottleneck width grows additively from 16 to
F/4 (the block output is 4× that, ending at F). Each cell: a 3×3 group conv (×2 width, the
stage's stride) splits into two halves; each half runs an identity edge into a two-level tree
of copy/add nodes whose 6 edges are searched (12 per cell) among identity, 3/5/7 separable
conv, dilated 3×3 separable conv, 3×3 avg and max pool. B = 18, F = 400 with the official
choices reproduces `proxyless_cifar.config` exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

from pydantic import Field, field_validator
from torch import nn

from nas_core.config import ConfigModel
from nas_core.layers import ConvLayer, IdentityLayer, LinearLayer, PoolingLayer
from nas_core.nets.pyramid_tree import PyramidTreeNet, ResidualTreeBlock, TransitionBlock, TreeNode
from nas_core.ops import OPS
from nas_core.spaces.base import (
    SPACES,
    LayerSpec,
    MakeLayer,
    SearchSpace,
)

CANDIDATES = (
    "identity",
    "3x3_SepConv",
    "5x5_SepConv",
    "7x7_SepConv",
    "3x3_DilSepConv",
    "3x3_AvgPool",
    "3x3_MaxPool",
)
STEM_WIDTH = 16
ORDER = "bn_act_weight"


class PyramidTreeSpaceConfig(ConfigModel):
    """Hyperparameters of the pyramid_tree space (official CIFAR net: B=18, F=400)."""

    B: int = Field(18, ge=1, le=64)  # residual blocks per stage
    # output width of the last block (4 × its bottleneck width); even group-conv halves
    F: int = Field(400, ge=4 * STEM_WIDTH, le=4096, multiple_of=8)
    resolution: int = Field(32, ge=4, le=2048, multiple_of=4)
    num_classes: int = Field(10, ge=2, le=100_000)
    # any registered op that keeps channels and stride 1 (the paper's seven by default)
    candidates: tuple[str, ...] = Field(CANDIDATES, strict=False, min_length=1)

    @field_validator("candidates")
    @classmethod
    def _registered(cls, ops: tuple[str, ...]) -> tuple[str, ...]:
        for op in ops:
            if op not in OPS:
                raise ValueError(f"unknown op {op!r} (registered: {', '.join(OPS.names())})")
        return ops


def tree_stem() -> TransitionBlock:
    """3×3 conv to 16 channels, then BN (the official stem)."""
    return TransitionBlock(
        [
            ConvLayer(3, STEM_WIDTH, 3, use_bn=False, act_func=None, ops_order=ORDER),
            IdentityLayer(STEM_WIDTH, STEM_WIDTH, use_bn=True, ops_order=ORDER),
        ]
    )


def tree_head(pool: int, channels: int, classes: int) -> tuple[TransitionBlock, LinearLayer]:
    """BN-ReLU-avg-pool over the last `pool`×`pool` map, and the classifier."""
    layer = PoolingLayer(channels, channels, "avg", pool, pool, True, "relu", ops_order=ORDER)
    return TransitionBlock([layer]), LinearLayer(channels, classes, ops_order=ORDER)


def tree_block(
    cin: int, w: int, stride: int, make_edge: Callable[[], nn.Module]
) -> ResidualTreeBlock:
    """One residual tree block; `make_edge()` gives its 12 searchable edges in pre-order."""

    def copy_node(depth: int) -> TreeNode:
        edges, children = [], []
        for _ in range(2):
            edges.append(make_edge())
            children.append(copy_node(depth - 1) if depth > 1 else None)
        return TreeNode(edges, children, w, w, "copy", "add", False)

    halves = [copy_node(2) for _ in range(2)]
    identities = [IdentityLayer(w, w, ops_order=ORDER) for _ in range(2)]
    split = TreeNode(identities, halves, 2 * w, w, "split", "add", True)
    root_conv = ConvLayer(
        w, 2 * w, 3, stride, groups=2, has_shuffle=True, act_func="relu", ops_order=ORDER
    )
    cell = TreeNode([root_conv], [split], w, w, None, None, False)
    shortcut = (
        IdentityLayer(cin, cin, ops_order=ORDER)
        if stride == 1
        else PoolingLayer(cin, cin, "avg", 2, 2, ops_order=ORDER)
    )
    return ResidualTreeBlock(
        cell,
        ConvLayer(cin, w, 1, act_func=None, ops_order=ORDER),
        ConvLayer(w, 4 * w, 1, act_func="relu", ops_order=ORDER),
        shortcut,
    )


def bottleneck_widths(B: int, F: int) -> list[int]:  # noqa: N803
    """Bottleneck width of each of the 3B blocks: additive from 16 to F/4, even numbers.

    w_k = 16 + 2·⌊(k + 1/3)·(F/4 − 16) / (6B)⌋ reproduces the official net's widths exactly.
    """
    top, n = F // 4, 3 * B
    widths = [
        min(top, STEM_WIDTH + 2 * math.floor((k + 1 / 3) * (top - STEM_WIDTH) / (2 * n)))
        for k in range(1, n + 1)
    ]
    widths[-1] = top
    return widths


@SPACES.register("pyramid_tree")
class PyramidTreeSpace(SearchSpace):
    """PyramidNet with tree cells: 12 searchable edges per block, 36·B in all."""

    name = "pyramid_tree"
    Config = PyramidTreeSpaceConfig

    def _blocks(self) -> Iterator[tuple[int, int, int, int]]:
        """(block index, in channels, bottleneck width, stride, input size) per block."""
        c = self.config
        cin, size = STEM_WIDTH, c.resolution
        for k, w in enumerate(bottleneck_widths(c.B, c.F)):
            stride = 2 if k in (c.B, 2 * c.B) else 1
            yield k, cin, w, stride, size
            cin, size = 4 * w, size // stride

    def layer_specs(self) -> list[LayerSpec]:
        specs: list[LayerSpec] = []
        for k, _cin, w, stride, size in self._blocks():
            for e in range(12):
                specs.append(
                    LayerSpec(
                        index=len(specs),
                        name=f"blocks.{k + 1}.edge{e}",
                        candidates=tuple(self.config.candidates),
                        in_channels=w,
                        out_channels=w,
                        stride=1,
                        input_size=size // stride,
                        shortcut=False,
                    )
                )
        return specs

    def build(self, make_layer: MakeLayer) -> nn.Module:
        c = self.config
        specs = iter(self.layer_specs())
        blocks: list[nn.Module] = [tree_stem()]
        for _k, cin, w, stride, _size in self._blocks():
            blocks.append(tree_block(cin, w, stride, lambda: make_layer(next(specs))))
        head, classifier = tree_head(c.resolution // 4, c.F, c.num_classes)
        return PyramidTreeNet([*blocks, head], classifier)
