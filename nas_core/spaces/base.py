"""What every search space provides: a table of searchable layers and one builder.

A space is a frozen config (its hyperparameters, B and F among them) plus `layer_specs()` — one
`LayerSpec` per searchable layer, computable without building anything (latency tables need
them) — and `build(make_layer)`, which lays out the network and asks `make_layer` for the module
at each searchable position: a `MixedOp` for the super-net, the chosen op for a derived net.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn

from nas_core.config import ConfigModel
from nas_core.errors import ProxylessError
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


@dataclass(frozen=True)
class LatencyLayout:
    """Latency-table keys of a space: the fixed parts, and per layer one key per candidate
    (None where the candidate is free, i.e. Zero)."""

    fixed: tuple[str, ...]
    layers: tuple[tuple[str | None, ...], ...]

    def all_keys(self) -> list[str]:
        keys = list(self.fixed)
        for layer in self.layers:
            keys.extend(k for k in layer if k is not None)
        return list(dict.fromkeys(keys))


class SearchSpace(ABC):
    """Base of the registered spaces; subclasses define `name`, `Config` and the two methods."""

    name: ClassVar[str]
    Config: ClassVar[type[ConfigModel]]

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else self.Config()

    @abstractmethod
    def layer_specs(self) -> list[LayerSpec]:
        """The searchable layers in a fixed order (the order of α and of `Architecture.ops`)."""

    @abstractmethod
    def build(self, make_layer: MakeLayer) -> nn.Module:
        """The whole network, with `make_layer(spec)` at each searchable position."""

    @abstractmethod
    def latency_layout(self) -> LatencyLayout:
        """Which latency-table entries price this space (see `nas_core.latency.keys`)."""

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
