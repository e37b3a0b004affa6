"""MobileNetV2-backbone nets (`ProxylessNASNets`), standalone or with mixed ops inside.

Block semantics follow the official code: a block whose op is Zero reduces to its identity
shortcut; otherwise op(x) (+ shortcut(x) when there is one). In a super-net the op is a
`MixedOp` and is always called, even when Zero is the active path, so every involved path's
gate gets the paper's ⟨∂L/∂y, o_j⟩. That is deliberate: the official block returns x without
calling its mixed edge then, so that layer's gates get no CE gradient — on the PyTorch it was
written for, that layer's α did not move that step; on current PyTorch only the latency term
moves it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import torch
from pydantic import Field
from torch import nn
from typing_extensions import TypedDict

from nas_core.config import checked_kwargs, config_list, construct, typed
from nas_core.layers import ZeroLayer, layer_from_config


class BatchNormSettings(TypedDict):
    """Momentum and eps of every BN in the net (the official configs' `bn`)."""

    momentum: Annotated[float, Field(ge=0, le=1)]
    eps: Annotated[float, Field(gt=0, le=1)]


class MobileInvertedResidualBlock(nn.Module):
    """One MBConv position: op (fixed or mixed) plus an optional identity shortcut."""

    @typed
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
        where = "MobileInvertedResidualBlock"
        kw = checked_kwargs(cls, config, where)
        for key in ("mobile_inverted_conv", "shortcut"):
            kw[key] = layer_from_config(kw[key])
        return construct(cls, kw, where)


class ProxylessNASNets(nn.Module):
    """first conv → MBConv blocks → 1×1 feature mix → global pool → classifier."""

    @typed
    def __init__(
        self,
        first_conv: nn.Module,
        blocks: Sequence[MobileInvertedResidualBlock],
        feature_mix_layer: nn.Module | None,
        classifier: nn.Module,
        bn: BatchNormSettings | None = None,
    ) -> None:
        super().__init__()
        self.first_conv = first_conv
        self.blocks = nn.ModuleList(blocks)
        self.feature_mix_layer = feature_mix_layer
        self.classifier = classifier
        self.bn = dict(bn or {"momentum": 0.1, "eps": 1e-3})
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):  # as the official set_bn_param: not BatchNorm1d
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
        where = "ProxylessNASNets"
        kw = checked_kwargs(cls, config, where)
        blocks = config_list(kw["blocks"], f"{where}.blocks")
        kw["blocks"] = [MobileInvertedResidualBlock.from_config(b) for b in blocks]
        for key in ("first_conv", "feature_mix_layer", "classifier"):
            kw[key] = layer_from_config(kw[key])
        return construct(cls, kw, where)
