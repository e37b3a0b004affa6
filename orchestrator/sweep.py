"""`run_sweep`: search trials (Tune run 1) → retrain trials (Tune run 2) → Pareto front.

Run folder `storage_path/name/`:
  sweep.yaml            the resolved spec (what --resume reads)
  latency.parquet       the table profiled on this machine (when the grid has lut null)
  tune/search, tune/retrain   the two Tune experiments (restorable), train/ the Train runs
  architectures/<trial>.json  every derived architecture
  results.parquet       one row per trial, with the `pareto` flag
  pareto.png, pareto.md, summary.json, events.jsonl, tensorboard/
Everything the driver writes comes from what trials reported, so only Tune's own storage must be
shared on a multi-node cluster.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray.tune import Callback

from cluster.resources import require_gpus
from nas_core.errors import ProxylessError
from nas_core.io import atomic_write_text
from nas_core.latency.predictor import MissingLatencyError
from nas_core.latency.table import LatencyTable
from orchestrator.results import mark_pareto, retrain_row, search_row, write_results
from orchestrator.sweep_spec import SweepSpec, load_sweep_spec


@dataclass
class SweepOutcome:
    run_dir: Path
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    interrupted: bool


class SweepLog(Callback):
    """Driver side: events.jsonl, per-trial TensorBoard scalars and one progress line per epoch."""

    def __init__(self, run_dir: str, phase: str, echo: bool = True) -> None:
        self.run_dir, self.phase, self.echo = run_dir, phase, echo
        self._writers: dict[str, Any] = {}

    def __getstate__(self) -> dict[str, Any]:  # Tune pickles callbacks with the experiment
        return {**self.__dict__, "_writers": {}}

    def _event(self, event: str, trial: Any, **extra: Any) -> None:
        line = {"time": time.time(), "phase": self.phase, "event": event}
        line.update(trial=trial.trial_id, **extra)
        path = Path(self.run_dir) / "events.jsonl"
        with path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")

    def _writer(self, trial_id: str) -> Any:
        if trial_id not in self._writers:
            from torch.utils.tensorboard import SummaryWriter

            logdir = Path(self.run_dir) / "tensorboard" / self.phase / trial_id
            self._writers[trial_id] = SummaryWriter(str(logdir))
        return self._writers[trial_id]

    def _close(self, trial_id: str) -> None:
        writer = self._writers.pop(trial_id, None)
        if writer is not None:
            writer.close()

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._event("start", trial)

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        tid = trial.trial_id
        if "/" in "".join(result) and "epoch" in result:
            writer, step = self._writer(tid), int(result["epoch"])
            for k, v in result.items():
                if "/" in k and isinstance(v, int | float) and not isinstance(v, bool):
                    writer.add_scalar(k, v, step)
            writer.flush()
            if self.echo:
                lat = result.get("latency/expected_ms")
                print(
                    f"  {self.phase} {tid} epoch {int(result['epoch']) + 1}: "
                    f"valid acc {result.get('valid/accuracy', float('nan')):.3f}"
                    + (f", E[latency] {lat:.3f} ms" if lat is not None else ""),
                    flush=True,
                )
        if result.get("failed") and self.echo:
            print(f"  {self.phase} {tid} failed: {result.get('error')}", flush=True)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._event("complete", trial)
        self._close(trial.trial_id)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._event("error", trial)
        self._close(trial.trial_id)


# ---- set-up ----


def prepare_run_dir(spec: SweepSpec, resume: bool) -> SweepSpec:
    """Create the run folder or check it holds this same sweep; `sweep.yaml` records the spec."""
    import yaml

    run_dir = spec.run_dir
    saved_path = run_dir / "sweep.yaml"
    if saved_path.exists():
        saved = load_sweep_spec(saved_path).with_name(spec.name, spec.storage_path)
        if not resume and saved.to_config() != spec.to_config():
            raise ProxylessError(
                f"{run_dir} holds a different sweep: resume it with --resume {run_dir} "
                "or choose another --name"
            )
        spec = saved
    elif resume:
        raise ProxylessError(f"{run_dir}: no sweep to resume (no sweep.yaml)")
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(saved_path, yaml.safe_dump(spec.to_config(), sort_keys=False))
    return spec


def prepare_tables(spec: SweepSpec, echo: Callable[[str], None]) -> dict[str, LatencyTable]:
    """The grid's tables by path ('' = profiled here); each must price all of its spaces."""
    from nas_core.data import build_datasets

    num_classes = build_datasets(spec.data).num_classes
    spaces = {}
    for point in spec.grid_points():
        space = spec.search_config(point, out_dir="unused").build_space(num_classes)
        spaces.setdefault(point.get("lut") or "", []).append(space)
    tables: dict[str, LatencyTable] = {}
    for key, space_list in spaces.items():
        keys = list(dict.fromkeys(k for s in space_list for k in s.latency_layout().all_keys()))
        if key:
            table = LatencyTable.load(key)
            missing = table.missing(keys)
            if missing:
                raise MissingLatencyError(missing, f"{key}")
        elif spec.device == "cuda":  # measured on a cluster GPU, once Ray is up
            continue
        else:
            from nas_core.latency.profiler import ProfileConfig, profile_keys

            out = spec.run_dir / "latency.parquet"
            echo(f"profiling {len(keys)} latency entries on this machine → {out}")
            table = profile_keys(
                keys,
                ProfileConfig.for_search("cpu"),
                out=out,
                progress=False,
                extra_meta={"sweep": spec.name},
            )
        tables[key] = table
    return tables


def profile_gpu_table(
    spec: SweepSpec, tables: dict[str, LatencyTable], echo: Callable[[str], None]
) -> dict[str, LatencyTable]:
    """The CUDA table of a `lut: null` grid point, profiled on one GPU of the cluster."""
    if spec.device != "cuda" or "" in tables or None not in spec.tables():
        return tables
    from cluster.profile import profile_on_gpu
    from nas_core.data import build_datasets

    num_classes = build_datasets(spec.data).num_classes
    points = [p for p in spec.grid_points() if not p.get("lut")]
    spaces = [spec.search_config(p, out_dir="unused").build_space(num_classes) for p in points]
    keys = list(dict.fromkeys(k for s in spaces for k in s.latency_layout().all_keys()))
    out = spec.run_dir / "latency.parquet"
    echo(f"profiling {len(keys)} latency entries on a cluster GPU → {out}")
    tables[""] = profile_on_gpu(keys, out, {"sweep": spec.name})
    return tables


# ---- the two Tune runs ----


def _run_phase(
    spec: SweepSpec,
    phase: str,
    trainable: Callable[..., None],
    param_space: Mapping[str, Any],
    num_samples: int,
) -> Any:
    import ray
    from ray import tune

    path = spec.run_dir / "tune" / phase
    res = spec.resources
    cpu, gpu = res.trial_resources(phase)
    if phase == "search" and res.workers >= 1:
        cpu, gpu = 0.01, 0.0  # the trial only drives its Train workers, which reserve their own
    # a trial whose GPUs the cluster can never offer would wait in Tune's queue forever
    require_gpus(res.trial_resources(phase)[1], f"each {phase} trial")
    trainable = tune.with_resources(trainable, {"cpu": cpu, **({"gpu": gpu} if gpu else {})})
    if tune.Tuner.can_restore(str(path)):
        tuner = tune.Tuner.restore(
            str(path), trainable=trainable, resume_unfinished=True, resume_errored=True
        )
    else:
        concurrency = res.concurrency(ray.cluster_resources(), phase)
        tuner = tune.Tuner(
            trainable,
            param_space=dict(param_space),
            tune_config=tune.TuneConfig(
                num_samples=num_samples,
                max_concurrent_trials=concurrency,
                reuse_actors=True,  # one torch import per trial slot, not per trial
            ),
            run_config=tune.RunConfig(
                name=phase,
                storage_path=str(spec.run_dir / "tune"),
                callbacks=[SweepLog(str(spec.run_dir), phase)],
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                failure_config=tune.FailureConfig(max_failures=res.max_failures),
                verbose=0,
            ),
        )
    return tuner.fit()


def _trial_id(result: Any, index: int) -> str:
    return str((result.metrics or {}).get("trial_id") or f"pending-{index}")


def run_sweep(
    spec: SweepSpec,
    address: str | None = None,
    resume: bool = False,
    echo: Callable[[str], None] = print,
    verbose: bool = False,
    debug: Mapping[str, Any] | None = None,
) -> SweepOutcome:
    """Run (or continue) a whole sweep and write its outputs; see the module docstring."""
    from ray import tune

    from cluster.search import ensure_ray
    from orchestrator.report import render
    from orchestrator.trials import retrain_trial, search_trial

    spec = prepare_run_dir(spec, resume)
    run_dir = spec.run_dir
    tables = prepare_tables(spec, echo)
    ensure_ray(address, log_to_driver=verbose)
    tables = profile_gpu_table(spec, tables, echo)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # our own progress lines, not Tune's boxes
    # per-epoch checkpoints of short trials trip Tune's "snapshotting too often" warning
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")

    echo(f"sweep {spec.name}: search trials → {run_dir / 'tune' / 'search'}")
    grid = _run_phase(
        spec,
        "search",
        tune.with_parameters(
            search_trial,
            spec=spec.to_config(),
            tables={k: t.to_yaml_dict() for k, t in tables.items()},
            train_storage=str(run_dir / "tune" / "train"),
            faults=dict(debug or {}),  # test hooks (kill a trial once)
        ),
        spec.param_space(),
        spec.num_samples,
    )
    rows = [
        search_row(_trial_id(r, i), r.config or {}, r.metrics or {}, r.error)
        for i, r in enumerate(grid)
    ]
    interrupted = any(r["status"] == "unfinished" for r in rows)
    jobs = {}
    for r in rows:
        if r["status"] == "done":
            arch = json.loads(r["architecture"])
            atomic_write_text(
                run_dir / "architectures" / f"{r['trial_id']}.json", json.dumps(arch, indent=2)
            )
            table = tables[r["lut"] or ""]
            jobs[r["trial_id"]] = {"architecture": arch, "table": table.to_yaml_dict()}

    if jobs and not interrupted:
        echo(f"retrain trials ({len(jobs)} architectures) → {run_dir / 'tune' / 'retrain'}")
        by_id = {r["trial_id"]: r for r in rows}
        retrain_grid = _run_phase(
            spec,
            "retrain",
            tune.with_parameters(
                retrain_trial, spec=spec.to_config(), jobs=jobs, faults=dict(debug or {})
            ),
            {"search_trial": tune.grid_search(sorted(jobs))},
            1,
        )
        for i, r in enumerate(retrain_grid):
            search_id = (r.config or {}).get("search_trial")
            row = retrain_row(_trial_id(r, i), by_id[search_id], r.metrics or {}, r.error)
            rows.append(row)
        interrupted = interrupted or any(
            r["status"] == "unfinished" for r in rows if r["kind"] == "retrain"
        )
    summary = mark_pareto(rows, spec.pareto_latency)
    write_results(run_dir / "results.parquet", rows)
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    if summary["trials"]:
        render(run_dir, rows, summary)
    return SweepOutcome(run_dir, rows, summary, interrupted)
