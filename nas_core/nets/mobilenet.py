"""MobileNetV2-backbone nets (`ProxylessNASNets`), standalone or with mixed ops inside.

Block semantics follow the official code: a block whose op is Zero reduces to its identity
shortcut; otherwise op(x) (+ shortcut(x) when there is one). In a super-net the op is a
`MixedOp` and is always called, even when Zero is sampled: its binary gates need ⟨∂L/∂y, o_j⟩
for every involved path, which the official code silently skipped (stale α gradients).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from nas_core.config import checked_kwargs
from nas_core.errors import ProxylessError
from nas_core.ops import Layer, ZeroLayer, layer_from_config


class MobileInvertedResidualBlock(nn.Module):
    """One MBConv position: op (fixed or mixed) plus an optional identity shortcut."""

    def __init__(self, mobile_inverted_conv: nn.Module, shortcut: nn.Module | None) -> None:
        super().__init__()
        self.mobile_inverted_conv = mobile_inverted_conv
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.mobile_inverted_conv, ZeroLayer):
            return x
        y = self.mobile_inverted_conv(x)
        return y if self.shortcut is None else y + self.shortcut(x)

    def to_config(self) -> dict[str, Any]:
        return {
            "name": "MobileInvertedResidualBlock",
            "mobile_inverted_conv": self.mobile_inverted_conv.to_config(),
            "shortcut": None if self.shortcut is None else self.shortcut.to_config(),
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> MobileInvertedResidualBlock:
        kw = checked_kwargs(cls, config, "MobileInvertedResidualBlock")
        return cls(layer_from_config(kw["mobile_inverted_conv"]), layer_from_config(kw["shortcut"]))


class ProxylessNASNets(nn.Module):
    """first conv → MBConv blocks → 1×1 feature mix → global pool → classifier."""

    def __init__(
        self,
        first_conv: Layer,
        blocks: list[MobileInvertedResidualBlock],
        feature_mix_layer: Layer | None,
        classifier: Layer,
        bn: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__()
        self.first_conv = first_conv
        self.blocks = nn.ModuleList(blocks)
        self.feature_mix_layer = feature_mix_layer
        self.classifier = classifier
        self.bn = dict(bn or {"momentum": 0.1, "eps": 1e-3})
        for m in self.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.momentum, m.eps = self.bn["momentum"], self.bn["eps"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first_conv(x)
        for block in self.blocks:
            x = block(x)
        if self.feature_mix_layer is not None:
            x = self.feature_mix_layer(x)
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return self.classifier(x)

    def to_config(self) -> dict[str, Any]:
        return {
            "name": "ProxylessNASNets",
            "bn": dict(self.bn),
            "first_conv": self.first_conv.to_config(),
            "feature_mix_layer": (
                None if self.feature_mix_layer is None else self.feature_mix_layer.to_config()
            ),
            "classifier": self.classifier.to_config(),
            "blocks": [b.to_config() for b in self.blocks],
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ProxylessNASNets:
        kw = checked_kwargs(cls, config, "ProxylessNASNets")
        if not isinstance(kw["blocks"], list):
            raise ProxylessError("ProxylessNASNets: 'blocks' must be a list")
        return cls(
            layer_from_config(kw["first_conv"]),
            [MobileInvertedResidualBlock.from_config(b) for b in kw["blocks"]],
            layer_from_config(kw["feature_mix_layer"]),
            layer_from_config(kw["classifier"]),
            kw.get("bn"),
        )
