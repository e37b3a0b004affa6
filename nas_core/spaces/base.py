"""What every search space provides: a table of searchable layers and one builder.

A space is a frozen config (its hyperparameters, B and F among them) plus `layer_specs()` — one
`LayerSpec` per searchable layer, computable without building anything (latency tables need
them) — and `build(make_layer)`, which lays out the network and asks `make_layer` for the module
at each searchable position: a `MixedOp` for the super-net, the chosen op for a derived net.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn

from nas_core.config import require_int
from nas_core.errors import ProxylessError
from nas_core.registry import Registry


@dataclass(frozen=True)
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


def config_from_mapping(cls: type, config: Mapping[str, Any], where: str) -> Any:
    """Build the frozen dataclass `cls` from a mapping, refusing unknown keys by name."""
    if not isinstance(config, Mapping):
        raise ProxylessError(f"{where}: expected an object, got {type(config).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(config) - set(fields))
    if unknown:
        raise ProxylessError(f"{where}: unknown key(s) {', '.join(unknown)}")
    kwargs = {}
    for k, v in config.items():
        kwargs[k] = tuple(v) if isinstance(v, list) else v
    try:
        return cls(**kwargs)
    except ProxylessError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError, IndexError, ArithmeticError) as e:
        # a value of the wrong type that the class's own checks did not anticipate
        raise ProxylessError(f"{where}: invalid value ({type(e).__name__}: {e})") from None


class SearchSpace(ABC):
    """Base of the registered spaces; subclasses define `name`, `Config` and the two methods."""

    name: ClassVar[str]
    Config: ClassVar[type]

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
        d = dataclasses.asdict(self.config)
        return {
            "name": self.name,
            **{k: list(v) if isinstance(v, tuple) else v for k, v in d.items()},
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SearchSpace:
        """Any registered space from `{"name": ..., **hyperparameters}`."""
        if not isinstance(config, Mapping) or "name" not in config:
            raise ProxylessError("space config needs a 'name'")
        space_cls = SPACES.get(config["name"])
        rest = {k: v for k, v in config.items() if k != "name"}
        return space_cls(config_from_mapping(space_cls.Config, rest, f"space {config['name']}"))


SPACES: Registry[type[SearchSpace]] = Registry("search space")


def create_space(name: str, **overrides: Any) -> SearchSpace:
    """A registered space with its defaults, `None` overrides ignored (timm's create_model)."""
    return SearchSpace.from_config(
        {"name": name, **{k: v for k, v in overrides.items() if v is not None}}
    )


def check_positive_int(
    value: Any, field: str, minimum: int = 1, maximum: int | None = None
) -> None:
    require_int(value, field, minimum)
    if maximum is not None and value > maximum:
        raise ProxylessError(f"{field} must be at most {maximum} (a sanity bound), got {value!r}")


def check_positive_float(value: Any, field: str, maximum: float | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ProxylessError(f"{field} must be a number > 0, got {value!r}")
    if value != value or value == float("inf"):
        raise ProxylessError(f"{field} must be finite, got {value!r}")
    if maximum is not None and value > maximum:
        raise ProxylessError(f"{field} must be at most {maximum} (a sanity bound), got {value!r}")
