"""SweepSpec: one YAML file → a validated, frozen description of a whole sweep.

A sweep is a base search (data, space, strategy, weights, phase lengths) plus axes to vary:
λ₂, B, F, target latency and latency table. An axis is a list (a Tune grid) or, for λ₂ and
the target, a one-key mapping naming a Tune distribution (`{loguniform: [0.01, 3]}`). Every grid
point is checked by building its `SearchConfig` up front, so a bad value fails before Ray starts.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from cluster.resources import check_gpu_request
from nas_core.config import require_int
from nas_core.data import DataConfig
from nas_core.device import check_device_name
from nas_core.errors import ProxylessError
from nas_core.io import load_yaml_config
from nas_core.retrain import RetrainConfig
from nas_core.search import DEFAULT_SPACE, SearchConfig, WeightConfig
from nas_core.spaces.base import config_from_mapping
from nas_core.strategy import StrategyConfig

AXES = ("lambda2", "B", "F", "target_ms", "lut")
DISTRIBUTIONS = {"uniform": 2, "loguniform": 2, "choice": None, "randint": 2}
CONTINUOUS_AXES = ("lambda2", "target_ms")  # B, F and tables must be grids (tables are profiled)


@dataclass(frozen=True)
class Axis:
    """One swept knob: a grid of values, or a Tune distribution sampled `num_samples` times."""

    values: tuple[Any, ...] = ()
    distribution: str | None = None
    args: tuple[Any, ...] = ()

    def to_tune(self) -> Any:
        from ray import tune

        if self.distribution is None:
            return tune.grid_search(list(self.values))
        if self.distribution == "choice":
            return tune.choice(list(self.args))
        return getattr(tune, self.distribution)(*self.args)

    def points(self) -> list[Any]:
        """Values to validate: the grid, or the distribution's bounds / choices."""
        if self.distribution is None:
            return list(self.values)
        if self.distribution == "randint":
            return [self.args[0], self.args[1] - 1]
        return list(self.args)

    def to_config(self) -> Any:
        if self.distribution is None:
            return list(self.values)
        return {self.distribution: list(self.args)}

    @classmethod
    def from_config(cls, name: str, config: Any) -> Axis:
        where = f"grid.{name}"
        if isinstance(config, list | tuple):
            if not config:
                raise ProxylessError(f"{where}: needs at least one value")
            return cls(values=tuple(config))
        if isinstance(config, Mapping):
            if len(config) != 1:
                raise ProxylessError(
                    f"{where}: a distribution is one key, e.g. {{uniform: [0, 1]}}"
                )
            ((dist, args),) = config.items()
            if dist not in DISTRIBUTIONS:
                raise ProxylessError(
                    f"{where}: unknown distribution {dist!r} (use {', '.join(DISTRIBUTIONS)})"
                )
            if name not in CONTINUOUS_AXES:
                raise ProxylessError(f"{where}: only lambda2 and target_ms take a distribution")
            if not isinstance(args, list | tuple) or not args:
                raise ProxylessError(f"{where}.{dist}: expected a list of arguments")
            want = DISTRIBUTIONS[dist]
            if want is not None and len(args) != want:
                raise ProxylessError(f"{where}.{dist}: expected [low, high], got {list(args)!r}")
            if want is not None and not all(_finite(a) for a in args):
                raise ProxylessError(f"{where}.{dist}: bounds must be finite numbers")
            if want is not None and not args[0] < args[1]:
                raise ProxylessError(f"{where}.{dist}: low must be < high, got {list(args)!r}")
            if dist == "loguniform" and args[0] <= 0:
                raise ProxylessError(f"{where}.loguniform: low must be > 0, got {args[0]!r}")
            return cls(distribution=dist, args=tuple(args))
        return cls(values=(config,))  # a single value is a one-point grid


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class SearchPhase:
    """Length and rhythm of every search trial (the rest comes from the other sections)."""

    epochs: int = 4
    warmup_epochs: int = 2
    arch_every: int = 2
    arch_batch_size: int = 64
    alpha_init_std: float = 1e-3

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SearchPhase:
        return config_from_mapping(cls, config, "search")


@dataclass(frozen=True)
class ResourceConfig:
    """Per-trial resources. workers 0 runs the search inside the trial process (no Ray Train)."""

    workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    # None: as many as this machine's CPUs/GPUs allow; required on a cluster (it can grow)
    max_concurrent_trials: int | None = None
    max_failures: int = 2
    checkpoints_to_keep: int = 2  # per Tune trial and per Train run (the latest always stays)
    placement_timeout_s: float = 300.0  # a Train worker group not placed by then fails the trial

    def __post_init__(self) -> None:
        require_int(self.workers, "resources.workers", 0)
        require_int(self.max_failures, "resources.max_failures", 0)
        require_int(self.checkpoints_to_keep, "resources.checkpoints_to_keep", 1)
        if self.max_concurrent_trials is not None:
            require_int(self.max_concurrent_trials, "resources.max_concurrent_trials", 1)
        if not _finite(self.cpus_per_worker) or self.cpus_per_worker <= 0:
            raise ProxylessError(
                f"resources.cpus_per_worker must be a number > 0, got {self.cpus_per_worker!r}"
            )
        if not _finite(self.gpus_per_worker) or self.gpus_per_worker < 0:
            raise ProxylessError(
                f"resources.gpus_per_worker must be a number >= 0, got {self.gpus_per_worker!r}"
            )
        if not _finite(self.placement_timeout_s) or self.placement_timeout_s <= 0:
            raise ProxylessError(
                "resources.placement_timeout_s must be a number > 0, "
                f"got {self.placement_timeout_s!r}"
            )

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ResourceConfig:
        return config_from_mapping(cls, config, "resources")

    @property
    def use_gpu(self) -> bool:
        return self.gpus_per_worker > 0

    def require_concurrency(self) -> None:
        """An attached cluster's resources are those of the moment (an autoscaler adds nodes
        later), so a sweep on one must say how many trials run at once."""
        if self.max_concurrent_trials is None:
            raise ProxylessError(
                "resources.max_concurrent_trials: required when attaching to a Ray cluster "
                "(its resources can grow with the autoscaler, so they cannot be read once); "
                "set it in the sweep spec"
            )

    def concurrency(self, cluster: Mapping[str, float], phase: str) -> int:
        """Trials that fit at once: Tune does not reserve Train's workers (ray#54305)."""
        if self.max_concurrent_trials is not None:
            return self.max_concurrent_trials
        cpus, gpus = float(cluster.get("CPU", 1)), float(cluster.get("GPU", 0))
        per_cpu, per_gpu = self.trial_resources(phase)
        n = int(cpus // per_cpu)
        if per_gpu > 0:
            n = min(n, int(gpus // per_gpu))
        return max(n, 1)

    def trial_resources(self, phase: str) -> tuple[float, float]:
        """(CPUs, GPUs) one trial of `phase` occupies, its Train workers included."""
        k = max(self.workers, 1) if phase == "search" else 1
        return self.cpus_per_worker * k, self.gpus_per_worker * k


RETRAIN_KEYS = (
    "epochs",
    "lr",
    "momentum",
    "weight_decay",
    "label_smoothing",
    "batch_size",
    "compile",
)


@dataclass(frozen=True)
class SweepSpec:
    """A whole sweep: base search, the axes to vary, retraining, resources and where results go."""

    name: str = "demo"
    # run folder = storage_path/name: a path (shared on a cluster) or s3://, gs://, file:// URI
    storage_path: str = "runs"
    seed: int = 0
    device: str = "cpu"  # cpu or cuda (every trial uses the GPU Ray assigns it)
    amp: str = "off"  # weight steps of searches and retrains: off | bf16 | fp16
    channels_last: bool = False  # NHWC weights and inputs in searches and retrains
    data: DataConfig = field(default_factory=DataConfig)
    space: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_SPACE))
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    weights: WeightConfig = field(default_factory=WeightConfig)
    search: SearchPhase = field(default_factory=SearchPhase)
    retrain: dict[str, Any] = field(default_factory=lambda: {"epochs": 8})
    grid: dict[str, Axis] = field(default_factory=dict)
    num_samples: int = 1  # repeats of the grid (draws, when an axis is a distribution)
    resources: ResourceConfig = field(default_factory=ResourceConfig)
    pareto_latency: str = "table"  # the front's latency: table (target device) or measured (here)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or "/" in self.name:
            raise ProxylessError(f"name must be a non-empty folder name, got {self.name!r}")
        if not isinstance(self.storage_path, str) or not self.storage_path:
            raise ProxylessError(f"storage_path must be a path, got {self.storage_path!r}")
        require_int(self.seed, "seed", 0)
        require_int(self.num_samples, "num_samples", 1)
        check_device_name(self.device)
        check_gpu_request(
            self.device,
            self.resources.workers,
            self.resources.gpus_per_worker,
            "resources.gpus_per_worker",
        )
        if self.pareto_latency not in ("table", "measured"):
            raise ProxylessError(
                f"pareto_latency must be table or measured, got {self.pareto_latency!r}"
            )
        unknown = sorted(set(self.retrain) - set(RETRAIN_KEYS) - {"measure_latency"})
        if unknown:
            raise ProxylessError(f"retrain: unknown key(s) {', '.join(unknown)}")
        self.retrain_config()  # validates epochs, lr, batch size
        if self.pareto_latency == "measured" and self.retrain.get("measure_latency") is False:
            raise ProxylessError("pareto_latency: measured needs retrain.measure_latency true")
        for point in self.grid_points():
            self.search_config(point, out_dir="unused")

    # ---- what the trials run ----

    def grid_points(self) -> list[dict[str, Any]]:
        """Every combination of the axes' values (distributions contribute their bounds)."""
        names = list(self.grid)
        combos = itertools.product(*(self.grid[n].points() for n in names))
        return [dict(zip(names, c, strict=True)) for c in combos] or [{}]

    def param_space(self) -> dict[str, Any]:
        return {name: axis.to_tune() for name, axis in self.grid.items()}

    def search_config(self, params: Mapping[str, Any], out_dir: str) -> SearchConfig:
        """The SearchConfig of one trial: the base with the trial's λ₂, B, F, target and table."""
        space = dict(self.space)
        for knob in ("B", "F"):
            if knob in params:
                space[knob] = params[knob]
        strategy = self.strategy
        if "lambda2" in params:
            strategy = _replace(strategy, "grid.lambda2", lambda2=params["lambda2"])
        if "target_ms" in params:
            strategy = _replace(strategy, "grid.target_ms", target_ms=params["target_ms"])
        data = self.data
        if isinstance(space.get("resolution"), int):  # images come at the space's input size
            data = replace(data, resolution=space["resolution"])
        lut = params.get("lut")
        if lut is not None and (not isinstance(lut, str) or not lut):
            raise ProxylessError(f"grid.lut: expected a table path or null, got {lut!r}")
        try:
            return SearchConfig.from_config(
                {
                    **asdict(self.search),
                    "space": space,
                    "data": data.to_config(),
                    "strategy": strategy.to_config(),
                    "weights": asdict(self.weights),
                    "lut": lut,
                    "seed": self.seed,
                    "device": self.device,
                    "amp": self.amp,
                    "channels_last": self.channels_last,
                    "out_dir": out_dir,
                    "tensorboard": False,  # the sweep writes every trial's scalars itself
                }
            )
        except ProxylessError as e:
            shown = ", ".join(f"{k}={v}" for k, v in params.items())
            raise ProxylessError(f"{e} (grid point {shown})" if shown else str(e)) from None

    def retrain_config(self, lut: str | None = None) -> RetrainConfig:
        fields = {k: v for k, v in self.retrain.items() if k in (*RETRAIN_KEYS, "measure_latency")}
        try:
            return RetrainConfig(
                data=self.data,
                seed=self.seed,
                device=self.device,
                amp=self.amp,
                channels_last=self.channels_last,
                lut=lut,
                **fields,
            )
        except ProxylessError as e:
            raise ProxylessError(f"retrain.{e}") from None

    def tables(self) -> list[str | None]:
        axis = self.grid.get("lut")
        return list(axis.values) if axis is not None else [None]

    def with_name(self, name: str | None, storage_path: str | None = None) -> SweepSpec:
        changes: dict[str, Any] = {}
        if name is not None:
            changes["name"] = name
        if storage_path is not None:
            changes["storage_path"] = storage_path
        return replace(self, **changes) if changes else self

    # ---- round trip ----

    def to_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "storage_path": self.storage_path,
            "seed": self.seed,
            "device": self.device,
            "amp": self.amp,
            "channels_last": self.channels_last,
            "data": self.data.to_config(),
            "space": dict(self.space),
            "strategy": self.strategy.to_config(),
            "weights": asdict(self.weights),
            "search": asdict(self.search),
            "retrain": dict(self.retrain),
            "grid": {k: a.to_config() for k, a in self.grid.items()},
            "num_samples": self.num_samples,
            "resources": asdict(self.resources),
            "pareto_latency": self.pareto_latency,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any], base_dir: str | Path = ".") -> SweepSpec:
        """Build and validate; relative data and table paths resolve against `base_dir`."""
        if not isinstance(config, Mapping):
            raise ProxylessError("a sweep spec must be a mapping")
        d = dict(config)
        nested = {
            "data": DataConfig,
            "strategy": StrategyConfig,
            "weights": WeightConfig,
            "search": SearchPhase,
            "resources": ResourceConfig,
        }
        for key, sub in nested.items():
            if key in d:
                if not isinstance(d[key], Mapping):
                    raise ProxylessError(f"{key} must be a mapping")
                d[key] = sub.from_config(d[key])
        for key in ("space", "retrain"):
            if key in d and not isinstance(d[key], Mapping):
                raise ProxylessError(f"{key} must be a mapping")
            if key in d:
                d[key] = dict(d[key])
        if "data" in d and d["data"].data_dir is not None:
            d["data"] = replace(d["data"], data_dir=_absolute(d["data"].data_dir, base_dir))
        if "grid" in d:
            grid = d["grid"] if d["grid"] is not None else {}
            if not isinstance(grid, Mapping):
                raise ProxylessError("grid must be a mapping of axis → values")
            unknown = sorted(set(grid) - set(AXES))
            if unknown:
                raise ProxylessError(
                    f"grid: unknown axis {', '.join(map(str, unknown))} (use {', '.join(AXES)})"
                )
            axes = {name: Axis.from_config(name, grid[name]) for name in AXES if name in grid}
            if "lut" in axes:
                tables = [None if v is None else _absolute(v, base_dir) for v in axes["lut"].values]
                axes["lut"] = Axis(values=tuple(tables))
            d["grid"] = axes
        try:
            return config_from_mapping(cls, d, "sweep spec")
        except TypeError as e:
            raise ProxylessError(f"sweep spec: {e}") from None


def _replace(strategy: StrategyConfig, where: str, **changes: Any) -> StrategyConfig:
    try:
        return replace(strategy, **changes)
    except ProxylessError as e:
        raise ProxylessError(f"{where}: {e}") from None


def _absolute(path: Any, base_dir: str | Path) -> str:
    if not isinstance(path, str) or not path:
        raise ProxylessError(f"expected a path, got {path!r}")
    p = Path(os.path.expanduser(path))
    return str(p if p.is_absolute() else (Path(base_dir) / p).resolve())


# The embedded default: what `proxyless sweep` and `make demo` run (configs/sweep_digits.yaml
# holds the same spec as a file to copy from).
DEMO_SPEC: dict[str, Any] = {
    "name": "demo",
    "data": {"dataset": "digits"},
    "space": {"name": "mobilenet", "resolution": 32, "transition_op": "3x3_MBConv6"},
    "strategy": {"name": "gradient", "arch_lr": 0.05},
    "weights": {"lr": 0.1, "batch_size": 32},
    "search": {"epochs": 4, "warmup_epochs": 2, "arch_every": 2},
    "retrain": {"epochs": 8, "lr": 0.05, "batch_size": 64},
    "grid": {"lambda2": [0.0, 0.02, 1.0], "B": [2, 3], "F": [0.5]},
    "resources": {"workers": 0},  # in-process searches: a Train launch costs 20-60 s on 2 cores
}


def demo_spec() -> SweepSpec:
    return SweepSpec.from_config(DEMO_SPEC)


def load_sweep_spec(path: str | Path) -> SweepSpec:
    """YAML (safe_load) → SweepSpec; relative paths resolve from the current folder."""
    return load_yaml_config(path, SweepSpec.from_config, "a sweep spec")
