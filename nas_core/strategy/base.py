"""Strategy configuration, registry and the architecture optimiser."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from nas_core.arch_state import ArchState
from nas_core.errors import ProxylessError
from nas_core.latency.predictor import LatencyModel
from nas_core.registry import Registry
from nas_core.supernet import SuperNet


@dataclass(frozen=True)
class StrategyConfig:
    """How α learns. λ₂ is the one trade-off knob for every strategy (0 = accuracy only)."""

    name: str = "gradient"  # gradient (Proxyless-G) or reinforce (Proxyless-R)
    lambda2: float = 0.1  # latency weight; REINFORCE uses it as the reward exponent w = −λ₂
    target_ms: float | None = None  # T; None = the space's expected latency at uniform α
    grad_mode: str = "two"  # gradient: two-path BinaryConnect, or full (all gates, O(N) memory)
    latency_loss: str = "add"  # gradient: add = CE + λ₂·E/T; mul = CE·(log E / log T)^λ₂
    samples: int = 10  # REINFORCE: architectures sampled per update
    baseline_decay: float = 0.99  # REINFORCE: b ← decay·b + (1 − decay)·mean R
    arch_lr: float = 1e-3  # Adam, official default
    arch_betas: tuple[float, float] = (0.0, 0.999)
    arch_eps: float = 1e-8
    arch_weight_decay: float = 0.0

    def __post_init__(self) -> None:
        def number(name: str, low: float, high: float = math.inf, low_open: bool = False) -> None:
            v = getattr(self, name)
            ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            if not ok or v < low or v > high or (low_open and v == low):
                side = ">" if low_open else ">="
                raise ProxylessError(
                    f"strategy.{name} must be a finite number {side} {low}, got {v!r}"
                )

        if self.name not in STRATEGIES:
            raise ProxylessError(
                f"strategy.name must be one of {', '.join(STRATEGIES.names())}, got {self.name!r}"
            )
        number("lambda2", 0.0)
        if self.target_ms is not None:
            number("target_ms", 0.0, low_open=True)
        if self.grad_mode not in ("two", "full"):
            raise ProxylessError(f"strategy.grad_mode must be two or full, got {self.grad_mode!r}")
        if self.latency_loss not in ("add", "mul"):
            raise ProxylessError(
                f"strategy.latency_loss must be add or mul, got {self.latency_loss!r}"
            )
        if isinstance(self.samples, bool) or not isinstance(self.samples, int) or self.samples < 1:
            raise ProxylessError(f"strategy.samples must be an integer >= 1, got {self.samples!r}")
        number("baseline_decay", 0.0, 1.0)
        number("arch_lr", 0.0, low_open=True)
        number("arch_eps", 0.0, low_open=True)
        number("arch_weight_decay", 0.0)
        betas = self.arch_betas
        if (
            not isinstance(betas, tuple | list)
            or len(betas) != 2
            or not all(
                isinstance(b, int | float) and not isinstance(b, bool) and 0 <= b < 1 for b in betas
            )
        ):
            raise ProxylessError(
                f"strategy.arch_betas must be two numbers in [0, 1), got {self.arch_betas!r}"
            )

    def to_config(self) -> dict[str, Any]:
        d = asdict(self)
        d["arch_betas"] = list(self.arch_betas)
        return d

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> StrategyConfig:
        from nas_core.spaces.base import config_from_mapping

        return config_from_mapping(cls, config, "strategy")


def make_arch_optimizer(arch: ArchState, config: StrategyConfig) -> torch.optim.Adam:
    """Adam on α with the official settings (betas (0, 0.999): no first-moment smoothing)."""
    return torch.optim.Adam(
        arch.parameters(),
        lr=config.arch_lr,
        betas=tuple(config.arch_betas),
        eps=config.arch_eps,
        weight_decay=config.arch_weight_decay,
    )


class Strategy(ABC):
    """signal() where the data is, apply() where α lives; state() is what a checkpoint keeps."""

    def __init__(self, config: StrategyConfig, latency: LatencyModel | None) -> None:
        if latency is None and config.lambda2 > 0:
            raise ProxylessError("strategy.lambda2 > 0 needs a latency table (lut)")
        self.config = config
        self.latency = latency
        self.target_ms = config.target_ms or (latency.uniform() if latency is not None else 1.0)

    @abstractmethod
    def signal(
        self, net: SuperNet, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> Any:
        """This process's contribution to one arch step, computed on its held-out batch."""

    @abstractmethod
    def apply(
        self, signals: Sequence[Any], arch: ArchState, optimizer: torch.optim.Optimizer
    ) -> dict[str, float]:
        """One α update from the signals of every process; returns metrics to log."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:  # noqa: B027  (stateless default)
        """Restore what `state_dict` returned (nothing, for stateless strategies)."""


STRATEGIES: Registry[type[Strategy]] = Registry("strategy")


def create_strategy(config: StrategyConfig, latency: LatencyModel | None) -> Strategy:
    return STRATEGIES.get(config.name)(config, latency)
