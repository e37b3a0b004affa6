"""What one search is: its schedule, weight optimiser, space, data, strategy and table, as
frozen pydantic models that YAML maps onto key for key (`load_search_config`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from nas_core.config import ConfigModel, FiniteFloat, RunSettings
from nas_core.data import DataConfig
from nas_core.errors import ProxylessError
from nas_core.io import load_yaml_config
from nas_core.spaces import SearchSpace
from nas_core.strategy import StrategyConfig


class WeightConfig(ConfigModel):
    """Weight optimiser: SGD Nesterov, cosine lr per batch, label smoothing (official)."""

    lr: FiniteFloat = Field(0.025, gt=0)
    momentum: FiniteFloat = Field(0.9, ge=0, lt=1)
    nesterov: bool = True
    weight_decay: FiniteFloat = Field(4e-5, ge=0)
    label_smoothing: FiniteFloat = Field(0.1, ge=0, lt=1)
    batch_size: int = Field(64, ge=1)  # global: K ranks take batch_size / K each
    # peak lr of the warm-up's cosine (official: 0.05, hard-coded there); None = lr. The search
    # restarts its cosine at lr
    warmup_lr: FiniteFloat | None = Field(None, gt=0)
    # pytorch = torch's default init; he_fout = the official one (conv N(0, 2 / (k² · C_out)),
    # BN γ 1 and β 0, linear U(±1/√fan_in) with zero bias)
    init: Literal["pytorch", "he_fout"] = "pytorch"
    # residual candidates start as identity (see SuperNet): our small-budget remedy, not the
    # official setting
    zero_init_residual: bool = True


DEFAULT_SPACE = {
    "name": "mobilenet",
    "B": 3,
    "F": 0.5,
    "resolution": 32,
    "transition_op": "3x3_MBConv6",
}


class SearchSchedule(ConfigModel):
    """Length and rhythm of a search (a sweep's `search` section is exactly this)."""

    epochs: int = Field(10, ge=1)  # search epochs after warm-up
    warmup_epochs: int = Field(2, ge=0)  # weight-only epochs on uniform paths (official: 40)
    arch_every: int = Field(5, ge=1)  # one arch step per this many weight batches
    arch_batch_size: int = Field(64, ge=1)  # global, like weights.batch_size
    # search epochs after warm-up without arch steps (the official loop skips the first: 1)
    arch_start_epoch: int = Field(0, ge=0)
    alpha_init_std: FiniteFloat = Field(1e-3, ge=0)  # α ~ N(0, std²), official


class SearchConfig(SearchSchedule, RunSettings):
    """Everything one search needs; YAML maps onto it key for key (nested sections)."""

    space: dict[str, Any] = Field(default_factory=lambda: dict(DEFAULT_SPACE))
    data: DataConfig = DataConfig()
    strategy: StrategyConfig = StrategyConfig()
    weights: WeightConfig = WeightConfig()
    # latency table; None = profile this CPU into out_dir/latency.parquet
    lut: Annotated[str, Field(min_length=1)] | None = None
    out_dir: str = "runs/search"
    tensorboard: bool = True

    @field_validator("space")
    @classmethod
    def _known_space(cls, space: dict[str, Any]) -> dict[str, Any]:
        SearchSpace.from_config({"num_classes": 10, **space})  # the dataset sets num_classes
        return space

    def rank_batches(self, world_size: int) -> tuple[int, int]:
        """(weight, arch) batch of one of `world_size` ranks: the configured sizes are global,
        so the number of weight and α updates per epoch does not depend on the rank count."""
        arch_field, arch_size = self.arch_batch()
        sizes = {"weights.batch_size": self.weights.batch_size, arch_field: arch_size}
        for field, size in sizes.items():
            if size % world_size:
                raise ProxylessError(
                    f"{field}: {size} does not split evenly over {world_size} workers"
                )
        return self.weights.batch_size // world_size, arch_size // world_size

    def arch_batch(self) -> tuple[str, int]:
        """(the setting, its global size) of an arch step's held-out batch: REINFORCE's own
        evaluation batch where the strategy sets one, else arch_batch_size."""
        if self.strategy.eval_batch_size is not None:
            return "strategy.eval_batch_size", self.strategy.eval_batch_size
        return "arch_batch_size", self.arch_batch_size

    def arch_steps_in(self, batch: int, per_epoch: int) -> bool:
        """Whether an arch step follows weight batch `batch` of an epoch of `per_epoch`: every
        `arch_every` batches, or `strategy.updates_per_epoch` spread evenly over the epoch."""
        updates = self.strategy.updates_per_epoch
        if updates is None:
            return (batch + 1) % self.arch_every == 0
        if updates > per_epoch:
            raise ProxylessError(
                f"strategy.updates_per_epoch: {updates} is more than the {per_epoch} weight "
                "batches of an epoch (one α update at most per batch)"
            )
        return (batch + 1) * updates // per_epoch > batch * updates // per_epoch

    def build_space(self, num_classes: int) -> SearchSpace:
        """The space with the dataset's class count (an explicit, different count is an error)."""
        config = dict(self.space)
        given = config.setdefault("num_classes", num_classes)
        if given != num_classes:
            raise ProxylessError(
                f"space.num_classes is {given} but dataset {self.data.dataset} has {num_classes}"
            )
        return SearchSpace.from_config(config)


def load_search_config(path: str | Path) -> SearchConfig:
    """YAML (safe_load) → SearchConfig; errors name the file."""
    return load_yaml_config(path, SearchConfig.from_config, "a search config")


def with_overrides(config: SearchConfig, **changes: Any) -> SearchConfig:
    """A copy of `config` with top-level fields replaced (None values ignored), re-validated."""
    kept = {k: v for k, v in changes.items() if v is not None}
    return SearchConfig.from_config({**config.to_config(), **kept})
