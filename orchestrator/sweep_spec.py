"""SweepSpec: one YAML file → a validated, frozen description of a whole sweep.

A sweep is a base search (data, space, strategy, weights, phase lengths) plus axes to vary:
λ₂, B, F, target latency, latency table and seed (repeats, whose nets the front averages). An
axis is a list (a Tune grid) or, for λ₂ and the target, a one-key mapping naming a Tune
distribution (`{loguniform: [0.01, 3]}`). Every grid point is checked by building its
`SearchConfig` up front, so a bad value fails before Ray starts.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import Field, field_validator, model_serializer, model_validator

from cluster.resources import check_gpu_request, check_node_resources
from nas_core.config import ConfigModel, FiniteFloat, RunSettings
from nas_core.data import DataConfig
from nas_core.errors import ProxylessError
from nas_core.io import load_yaml_config
from nas_core.retrain_config import RetrainConfig, RetrainRecipe
from nas_core.search_config import DEFAULT_SPACE, SearchConfig, SearchSchedule, WeightConfig
from nas_core.strategy import StrategyConfig
from orchestrator.baseline import BaselineSpec
from orchestrator.profile_on import canonical_entry, label, requested

AxisName = Literal["lambda2", "B", "F", "target_ms", "lut", "seed"]
AXES: tuple[str, ...] = get_args(AxisName)
DISTRIBUTIONS = {"uniform": 2, "loguniform": 2, "choice": None, "randint": 2}  # name: arg count
CONTINUOUS_AXES = ("lambda2", "target_ms")  # B, F, tables and seeds are grids (tables are profiled)


class Axis(ConfigModel):
    """One swept knob: a grid of values, or a Tune distribution sampled `num_samples` times.

    In YAML a list (or one value) is a grid, a one-key mapping a distribution:
    `{loguniform: [0.01, 3]}`; `to_config` writes that same form back.
    """

    values: tuple[Any, ...] = Field((), strict=False)
    distribution: Literal["uniform", "loguniform", "choice", "randint"] | None = None
    args: tuple[Any, ...] = Field((), strict=False)

    @model_validator(mode="before")
    @classmethod
    def _from_yaml(cls, config: Any) -> Any:
        if isinstance(config, list | tuple):
            if not config:
                raise ValueError("needs at least one value")
            return {"values": tuple(config)}
        if isinstance(config, Mapping):
            if len(config) != 1:
                raise ValueError("a distribution is one key, e.g. {uniform: [0, 1]}")
            ((dist, args),) = config.items()
            if dist not in DISTRIBUTIONS:
                raise ValueError(f"unknown distribution {dist!r} (use {', '.join(DISTRIBUTIONS)})")
            if not isinstance(args, list | tuple) or not args:
                raise ValueError(f"{dist}: expected a list of arguments")
            return {"distribution": dist, "args": tuple(args)}
        return {"values": (config,)}  # a single value is a one-point grid

    @model_validator(mode="after")
    def _bounds(self) -> Axis:
        want = DISTRIBUTIONS.get(self.distribution or "")
        if want is None:
            return self
        args, dist = self.args, self.distribution
        if len(args) != want:
            raise ValueError(f"{dist}: expected [low, high], got {list(args)!r}")
        if not all(_finite(a) for a in args):
            raise ValueError(f"{dist}: bounds must be finite numbers")
        if not args[0] < args[1]:
            raise ValueError(f"{dist}: low must be < high, got {list(args)!r}")
        if dist == "loguniform" and args[0] <= 0:
            raise ValueError(f"loguniform: low must be > 0, got {args[0]!r}")
        return self

    @model_serializer
    def _to_yaml(self) -> Any:
        if self.distribution is None:
            return list(self.values)
        return {self.distribution: list(self.args)}

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


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


class NodeResources(ConfigModel):
    """Custom Ray resources each phase asks for, so a heterogeneous cluster runs it on the
    nodes meant for it: a node offers them with `ray start --resources='{"gpu-a10g": 1}'`
    (or `resources:` of a launcher node type), and a small amount (0.01) only picks the node
    type without limiting how many share it."""

    # each Train worker of a search (the search trial itself with workers 0)
    search_workers: dict[str, FiniteFloat] = Field(default_factory=dict)
    retrain: dict[str, FiniteFloat] = Field(default_factory=dict)  # each retrain trial

    _names = field_validator("search_workers", "retrain")(check_node_resources)

    def of(self, phase: str) -> dict[str, float]:
        """What one process of `phase` ('search' or 'retrain') asks for."""
        return dict(self.search_workers if phase == "search" else self.retrain)


class ResourceConfig(ConfigModel):
    """Per-trial resources. workers 0 runs the search inside the trial process (no Ray Train)."""

    workers: int = Field(1, ge=0)
    cpus_per_worker: FiniteFloat = Field(1.0, gt=0)
    gpus_per_worker: FiniteFloat = Field(0.0, ge=0)
    # None: as many as this machine's CPUs/GPUs allow; required on a cluster (it can grow)
    max_concurrent_trials: int | None = Field(None, ge=1)
    max_failures: int = Field(2, ge=0)
    # per Tune trial and per Train run (the latest always stays)
    checkpoints_to_keep: int = Field(2, ge=1)
    # a Train worker group not placed by then fails the trial
    placement_timeout_s: FiniteFloat = Field(300.0, gt=0)
    node_resources: NodeResources = NodeResources()  # which nodes run each phase

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
        per_cpu, per_gpu = self.trial_resources(phase)
        n = int(float(cluster.get("CPU", 1)) // per_cpu)
        for name, per in {"GPU": per_gpu, **self.custom_resources(phase)}.items():
            if per > 0:
                n = min(n, int(float(cluster.get(name, 0)) // per))
        return max(n, 1)

    def trial_resources(self, phase: str) -> tuple[float, float]:
        """(CPUs, GPUs) one trial of `phase` occupies, its Train workers included."""
        k = self._processes(phase)
        return self.cpus_per_worker * k, self.gpus_per_worker * k

    def custom_resources(self, phase: str) -> dict[str, float]:
        """The node resources one trial of `phase` occupies, its Train workers included."""
        k = self._processes(phase)
        return {name: k * v for name, v in self.node_resources.of(phase).items()}

    def _processes(self, phase: str) -> int:
        return max(self.workers, 1) if phase == "search" else 1


class ReferencePoint(ConfigModel):
    """A device's fixed hypervolume reference: nets count from this accuracy up and this
    latency down, so the hypervolumes of two sweeps with the same reference compare."""

    accuracy: float = Field(0.0, ge=0, le=1)
    latency_ms: FiniteFloat = Field(gt=0)


class SweepSpec(RunSettings):
    """A whole sweep: base search, the axes to vary, retraining, resources and where results go.

    `search` and `retrain` are the same models a single search or retrain reads; `seed`,
    `device`, `amp` and `channels_last` (from `RunSettings`) apply to both phases.
    """

    name: str = Field("demo", min_length=1)  # the run folder's name
    # run folder = storage_path/name: a path (shared on a cluster) or s3://, gs://, file:// URI
    storage_path: str = Field("runs", min_length=1)
    data: DataConfig = DataConfig()
    space: dict[str, Any] = Field(default_factory=lambda: dict(DEFAULT_SPACE))
    strategy: StrategyConfig = StrategyConfig()
    weights: WeightConfig = WeightConfig()
    search: SearchSchedule = SearchSchedule()
    retrain: RetrainRecipe = RetrainRecipe()
    grid: dict[AxisName, Axis] = Field(default_factory=dict)
    num_samples: int = Field(1, ge=1)  # repeats of the grid (draws, where an axis samples)
    resources: ResourceConfig = ResourceConfig()
    # the front's latency: table (target device) or measured (here)
    pareto_latency: Literal["table", "measured"] = "table"
    # per device (latency table name): the hypervolume's reference; a device without one
    # uses accuracy 0 and 1.1 x its slowest net, which moves with the sweep
    pareto_reference: dict[str, ReferencePoint] = Field(default_factory=dict)
    baseline: BaselineSpec = BaselineSpec()  # random nets retrained beside the searched ones

    @field_validator("name")
    @classmethod
    def _folder_name(cls, name: str) -> str:
        if "/" in name or name in (".", ".."):
            raise ValueError("must be a folder name, not a path")
        return name

    @field_validator("grid")
    @classmethod
    def _sampled_axes(cls, grid: dict[str, Axis]) -> dict[str, Axis]:
        for name, axis in grid.items():
            if axis.distribution is not None and name not in CONTINUOUS_AXES:
                raise ValueError(f"{name}: only lambda2 and target_ms take a distribution")
            if name == "lut":
                grid[name] = _table_entries(axis)
            if name == "seed" and not (
                all(type(v) is int and v >= 0 for v in axis.values)
                and len(set(axis.values)) == len(axis.values)
            ):
                raise ValueError(f"seed: expected distinct integers >= 0, got {list(axis.values)}")
        return {name: grid[name] for name in AXES if name in grid}  # one order, however written

    @model_validator(mode="after")
    def _every_point_runs(self) -> SweepSpec:
        check_gpu_request(
            self.device,
            self.resources.workers,
            self.resources.gpus_per_worker,
            "resources.gpus_per_worker",
        )
        if self.pareto_latency == "measured" and not self.retrain.measure_latency:
            raise ValueError("pareto_latency: measured needs retrain.measure_latency true")
        for point in self.grid_points():  # a bad value fails here, before Ray starts
            config = self.search_config(point, out_dir="unused")
            config.rank_batches(max(self.resources.workers, 1))
        return self

    # ---- what the trials run ----

    def grid_points(self) -> list[dict[str, Any]]:
        """Every combination of the axes' values (distributions contribute their bounds)."""
        names = list(self.grid)
        combos = itertools.product(*(self.grid[n].points() for n in names))
        return [dict(zip(names, c, strict=True)) for c in combos] or [{}]

    def trial_count(self) -> int:
        """How many search trials Tune makes: the grid's combinations, `num_samples` times
        (a distribution axis draws once per sample)."""
        grid = (len(a.values) for a in self.grid.values() if a.distribution is None)
        return math.prod(grid) * self.num_samples

    def param_space(self) -> dict[str, Any]:
        return {name: axis.to_tune() for name, axis in self.grid.items()}

    def run_settings(self, seed: int | None = None) -> dict[str, Any]:
        """Seed (a grid point's, else the spec's), device and precision, as both phases'
        configs take them."""
        settings = {name: getattr(self, name) for name in RunSettings.model_fields}
        return {**settings, "seed": self.seed if seed is None else seed}

    def search_config(self, params: Mapping[str, Any], out_dir: str) -> SearchConfig:
        """The SearchConfig of one trial: the base with the trial's λ₂, B, F, target and table."""
        space = {**self.space, **{k: params[k] for k in ("B", "F") if k in params}}
        strategy = {
            **self.strategy.to_config(),
            **{k: params[k] for k in ("lambda2", "target_ms") if k in params},
        }
        data = self.data.to_config()
        if isinstance(space.get("resolution"), int):  # images come at the space's input size
            data["resolution"] = space["resolution"]
        try:
            return SearchConfig.from_config(
                {
                    **self.search.to_config(),
                    **self.run_settings(params.get("seed")),
                    "space": space,
                    "data": data,
                    "strategy": strategy,
                    "weights": self.weights.to_config(),
                    # a table profiled on labelled nodes reaches the trial, not the config
                    "lut": None if requested(params.get("lut")) else params.get("lut"),
                    "out_dir": out_dir,
                    "tensorboard": False,  # the sweep writes every trial's scalars itself
                }
            )
        except ProxylessError as e:
            shown = ", ".join(f"{k}={v}" for k, v in params.items())
            raise ProxylessError(f"{e} (grid point {shown})" if shown else str(e)) from None

    def retrain_config(self, seed: int | None = None) -> RetrainConfig:
        """The retrain of a net whose search ran with `seed` (None: the spec's)."""
        return RetrainConfig.from_config(
            {
                **self.retrain.to_config(),
                **self.run_settings(seed),
                "data": self.data.to_config(),
            }
        )

    def tables(self) -> list[str | None]:
        axis = self.grid.get("lut")
        return list(axis.values) if axis is not None else [None]

    def with_name(self, name: str | None, storage_path: str | None = None) -> SweepSpec:
        changes = {"name": name, "storage_path": storage_path}
        return self.replace(**{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def from_config(cls, config: Any, base_dir: str | Path = ".") -> SweepSpec:
        """Build and validate; relative data and table paths resolve against `base_dir`."""
        spec = super().from_config(config)
        changes: dict[str, Any] = {}
        if spec.data.data_dir is not None:
            changes["data"] = spec.data.replace(data_dir=_absolute(spec.data.data_dir, base_dir))
        if "lut" in spec.grid:
            tables = [
                v if v is None or requested(v) else _absolute(v, base_dir)
                for v in spec.grid["lut"].values
            ]
            changes["grid"] = {**spec.grid, "lut": tables}
        return spec.replace(**changes) if changes else spec


def _table_entries(axis: Axis) -> Axis:
    """grid.lut: table paths, null (profiled here) and `{profile_on: {...}}` entries (profiled
    on labelled nodes: `orchestrator.profile_on`), the last kept in their string form."""
    values = []
    for v in axis.values:
        entry = canonical_entry(v)
        if entry is None and not (v is None or (isinstance(v, str) and v)):
            raise ValueError(
                f"lut: expected table paths, null or {{profile_on: {{...}}}}, got {v!r}"
            )
        values.append(v if entry is None else entry)
    labels = [label(requested(v) or {}) for v in values if requested(v)]
    if len(set(labels)) != len(labels):  # one file and one device name per label
        raise ValueError(f"lut: two profile_on entries name the same resources: {labels!r}")
    return Axis.from_config(values)


def _absolute(path: str, base_dir: str | Path) -> str:
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
