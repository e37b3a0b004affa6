"""The module a latency key measures, and the input it runs on.

Keys carry every shape the module needs, so a table entry can be (re)profiled from its key
alone: this is what the profiler and the fill-in of missing entries call.
"""

from __future__ import annotations

import torch
from torch import nn

from nas_core.errors import ProxylessError
from nas_core.latency.keys import parse_key, parse_shape
from nas_core.layers import IdentityLayer, LinearLayer, MBInvertedConvLayer
from nas_core.nets.mobilenet import MobileInvertedResidualBlock
from nas_core.ops import create_op
from nas_core.spaces.mobilenet import feature_mix, first_conv
from nas_core.spaces.pyramid_tree import tree_block, tree_head, tree_stem


class _Logits(nn.Module):
    """Global average pool + classifier (the official `Logits` entry), as the net runs them."""

    def __init__(self, channels: int, classes: int) -> None:
        super().__init__()
        self.classifier = LinearLayer(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def module_for_key(key: str) -> tuple[nn.Module, tuple[int, int, int]]:
    """(module in eval mode, input shape C×H×W) for one latency-table key."""
    f = parse_key(key)
    h, w, c = parse_shape(f["input"])
    out = parse_shape(f["output"])
    kind = f["kind"]
    if kind == "expanded_conv":
        k, e, s = int(f["kernel"]), int(f["expand"]), int(f["stride"])
        conv = MBInvertedConvLayer(c, out[2], k, s, e)
        skip = IdentityLayer(c, c) if f["idskip"] == "1" else None
        module: nn.Module = MobileInvertedResidualBlock(conv, skip)
    elif kind == "Conv":
        module = first_conv(c, out[2])
    elif kind == "Conv_1":
        module = feature_mix(c, out[2])
    elif kind == "Logits":
        module = _Logits(c, out[0])
    elif kind == "tree_stem":
        module = tree_stem()
    elif kind == "tree_block":
        module = tree_block(
            c,
            int(f["width"]),
            int(f["stride"]),
            lambda: create_op("identity", int(f["width"]), int(f["width"]), 1),
        )
    elif kind == "tree_edge":
        module = create_op(f["op"], c, out[2], int(f.get("stride", 1)))
    elif kind == "tree_head":
        head, classifier = tree_head(h, c, out[0])
        module = nn.Sequential(head, nn.Flatten(1), classifier)
    else:  # parse_key already refuses unknown kinds
        raise ProxylessError(f"cannot build a module for latency key {key!r}")
    return module.eval(), (c, h, w)
