"""What every search space provides: a table of searchable layers and one builder.

A space is a frozen config (its hyperparameters, B and F among them) plus `layer_specs()` — one
`LayerSpec` per searchable layer, computable without building anything — and
`build(make_layer)`, which lays out the network and asks `make_layer` for the module at each
searchable position: a `MixedOp` for the super-net, the chosen op for a derived net. Everything
else (latency keys, the super-net, derived nets) is read off those two.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from nas_core.config import ConfigModel
from nas_core.errors import ProxylessError
from nas_core.latency.layout import LatencyLayout, net_layout
from nas_core.ops import op_config
from nas_core.registry import Registry


@dataclass(frozen=True, kw_only=True)
class LayerSpec:
    """One searchable position: where it is, its shape and the candidates it chooses from."""

    index: int
    name: str
    candidates: tuple[str, ...]
    in_channels: int
    out_channels: int
    stride: int
    input_size: int  # H = W of this layer's input feature map
    shortcut: bool  # an identity shortcut adds around this layer (MBConv "idskip")


MakeLayer = Callable[[LayerSpec], nn.Module]


class _Searchable(nn.Module):
    """Stands at a searchable layer while a skeleton is serialised: its config is the MixedOp
    the super-net has there, without building (or allocating) any candidate."""

    def __init__(self, spec: LayerSpec) -> None:
        super().__init__()
        self.spec = spec

    def to_config(self) -> dict[str, Any]:
        s = self.spec
        return {
            "name": "MixedOp",
            "candidates": [
                op_config(n, s.in_channels, s.out_channels, s.stride) for n in s.candidates
            ],
        }


class SearchSpace(ABC):
    """Base of the registered spaces; subclasses define `name`, `Config` and the two methods."""

    name: ClassVar[str]
    Config: ClassVar[type[ConfigModel]]

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else self.Config()
        self._layout: LatencyLayout | None = None  # the config is frozen, so is the layout

    @abstractmethod
    def layer_specs(self) -> list[LayerSpec]:
        """The searchable layers in a fixed order (the order of α and of `Architecture.ops`)."""

    @abstractmethod
    def build(self, make_layer: MakeLayer) -> nn.Module:
        """The whole network, with `make_layer(spec)` at each searchable position."""

    def latency_layout(self) -> LatencyLayout:
        """Which latency-table entries price this space, read off its skeleton by the walker
        every net.config is priced with (`nas_core.latency.layout`)."""
        if self._layout is None:
            with torch.device("meta"):  # nothing is allocated
                skeleton = self.build(_Searchable)
            layout = net_layout(skeleton.to_config(), self.resolution)
            widths = [len(s.candidates) for s in self.layer_specs()]
            if [len(layer) for layer in layout.layers] != widths:
                raise AssertionError(f"{self.name}: build order differs from layer_specs order")
            self._layout = layout
        return self._layout

    @property
    def resolution(self) -> int:
        return self.config.resolution

    def to_config(self) -> dict[str, Any]:
        return {"name": self.name, **self.config.to_config()}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SearchSpace:
        """Any registered space from `{"name": ..., **hyperparameters}`."""
        if not isinstance(config, Mapping) or "name" not in config:
            raise ProxylessError("a space config needs a 'name'")
        space_cls = SPACES.get(config["name"])
        return space_cls(
            space_cls.Config.from_config({k: v for k, v in config.items() if k != "name"})
        )


SPACES: Registry[type[SearchSpace]] = Registry("search space")


def create_space(name: str, **overrides: Any) -> SearchSpace:
    """A registered space with its defaults, `None` overrides ignored (timm's create_model)."""
    return SearchSpace.from_config(
        {"name": name, **{k: v for k, v in overrides.items() if v is not None}}
    )
