"""Strategy configuration, registry and the architecture optimiser."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Protocol

import torch
from pydantic import Field, field_validator, model_validator

from nas_core.arch_state import ArchState
from nas_core.config import ConfigModel, FiniteFloat
from nas_core.errors import ProxylessError
from nas_core.latency.predictor import LatencyModel
from nas_core.ranks import RankGroup
from nas_core.registry import Registry
from nas_core.supernet import SuperNet

# Adam's betas: two numbers in [0, 1)
UnitPair = Annotated[
    tuple[Annotated[FiniteFloat, Field(ge=0, lt=1)], Annotated[FiniteFloat, Field(ge=0, lt=1)]],
    Field(strict=False),
]


class StrategyConfig(ConfigModel):
    """How α learns. λ₂ is the one trade-off knob for every strategy (0 = accuracy only)."""

    name: str = "gradient"  # a registered strategy: gradient (Proxyless-G), reinforce (-R)
    # latency weight; REINFORCE uses it as the reward exponent w = −λ₂
    lambda2: FiniteFloat = Field(0.1, ge=0)
    # T; None = the space's expected latency at uniform α
    target_ms: FiniteFloat | None = Field(None, gt=0)
    # gradient: two-path BinaryConnect, or full (all N gates; activations of one path kept,
    # the others recomputed in backward: O(1) memory, O(N) compute)
    grad_mode: Literal["two", "full"] = "two"
    # gradient: add = CE + λ₂·E/T; mul = CE·(log E / log T)^λ₂
    latency_loss: Literal["add", "mul"] = "add"
    samples: int = Field(10, ge=1)  # REINFORCE: architectures sampled per update
    # REINFORCE: images that score the sampled nets, global (official 1000); None =
    # the search's arch_batch_size
    eval_batch_size: int | None = Field(None, ge=1)
    # REINFORCE: α updates spread evenly over each search epoch (official 300); None = one
    # every arch_every weight batches
    updates_per_epoch: int | None = Field(None, ge=1)
    # REINFORCE's baseline b: official = b ← b + decay·(mean R − b) before the advantages;
    # moving_average = advantages against the old b, then b ← decay·b + (1 − decay)·mean R
    baseline: Literal["official", "moving_average"] = "official"
    baseline_decay: FiniteFloat = Field(0.99, ge=0, le=1)
    arch_lr: FiniteFloat = Field(1e-3, gt=0)  # Adam, official default
    arch_betas: UnitPair = (0.0, 0.999)
    arch_eps: FiniteFloat = Field(1e-8, gt=0)
    arch_weight_decay: FiniteFloat = Field(0.0, ge=0)

    @field_validator("name")
    @classmethod
    def _registered(cls, name: str) -> str:
        if name not in STRATEGIES:
            raise ValueError(f"must be one of {', '.join(STRATEGIES.names())}")
        return name

    @model_validator(mode="after")
    def _reinforce_settings(self) -> StrategyConfig:
        for field in ("eval_batch_size", "updates_per_epoch"):
            if getattr(self, field) is not None and self.name != "reinforce":
                raise ValueError(f"{field}: applies to strategy reinforce only")
        return self

    @model_validator(mode="after")
    def _mul_needs_a_target_above_1ms(self) -> StrategyConfig:
        # log E / log T: T <= 1 ms makes the factor's base <= 0 or divides by zero
        if self.latency_loss == "mul" and self.target_ms is not None and self.target_ms <= 1:
            raise ValueError(
                f"target_ms: latency_loss mul needs a target above 1 ms "
                f"(log E / log T), got {self.target_ms:g}; use latency_loss add"
            )
        return self


def make_arch_optimizer(arch_state: ArchState, config: StrategyConfig) -> torch.optim.Adam:
    """Adam on α with the official settings (betas (0, 0.999): no first-moment smoothing).

    `foreach`: one fused update of every layer's α (the architecture actor's step time is on
    rank 0's critical path, and α is dozens of tiny tensors)."""
    return torch.optim.Adam(
        arch_state.parameters(),
        lr=config.arch_lr,
        betas=tuple(config.arch_betas),
        eps=config.arch_eps,
        weight_decay=config.arch_weight_decay,
        foreach=True,
    )


class Signal(Protocol):
    """What a strategy's `signal` returns: small, picklable, reducible over the ranks."""

    def reduce(self, ranks: RankGroup) -> Signal:
        """The signal of all ranks together (one collective; the identity for one rank)."""


class Strategy(ABC):
    """signal() where the data is, apply() where α lives; state() is what a checkpoint keeps."""

    def __init__(self, config: StrategyConfig, latency: LatencyModel | None) -> None:
        if latency is None and config.lambda2 > 0:
            raise ProxylessError("strategy.lambda2 > 0 needs a latency table (lut)")
        self.config = config
        self.latency = latency
        self.target_ms = config.target_ms or (latency.uniform() if latency is not None else 1.0)
        if config.latency_loss == "mul" and latency is not None and self.target_ms <= 1:
            raise ProxylessError(
                f"strategy.target_ms: latency_loss mul needs a target above 1 ms (log E / log T);"
                f" the space's expected latency at uniform α is {self.target_ms:g} ms: set "
                "strategy.target_ms or use latency_loss add"
            )

    @abstractmethod
    def signal(
        self, net: SuperNet, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> Signal:
        """This rank's contribution to one arch step, computed on its held-out batch."""

    @abstractmethod
    def apply(
        self, signal: Any, arch_state: ArchState, optimizer: torch.optim.Optimizer
    ) -> dict[str, float]:
        """One α update from the ranks' reduced signal; returns metrics to log."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:  # noqa: B027  (stateless default)
        """Restore what `state_dict` returned (nothing, for stateless strategies)."""


STRATEGIES: Registry[type[Strategy]] = Registry("strategy")


def create_strategy(config: StrategyConfig, latency: LatencyModel | None) -> Strategy:
    return STRATEGIES.get(config.name)(config, latency)
