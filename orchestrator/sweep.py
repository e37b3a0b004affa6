"""`run_sweep`: search trials (Tune run 1) → retrain trials (Tune run 2) → Pareto front.

Run folder `storage_path/name/` (a path or a `pyarrow.fs` URI, see `orchestrator.storage`):
  sweep.yaml            the resolved spec (what --resume reads)
  latency.parquet       the table profiled on this machine (when the grid has lut null)
  tables/<label>.parquet   a table profiled on nodes labelled <label> (lut {profile_on: ...})
  tune/<name>-search, tune/<name>-retrain   the two Tune experiments (restorable)
  tune/train/search-<trial>   the Ray Train run of each search trial (resources.workers >= 1)
  architectures/<trial>.json, .md, .png  every derived architecture, its layers as a table
                        and a drawing; architectures/baseline/<net>.json the random baseline's
  nets/<retrain trial>/       weights.pt (+ weights.meta.json), architecture.json, retrain.json
  results.parquet       one row per trial, with the `pareto` flag and the paths above
  pareto.png, pareto.md, summary.json, events.jsonl, tensorboard/
Trials write nothing a run needs into Ray's node-local session folders: their outputs travel in
Tune checkpoints, which Tune stores under `storage_path`, and the driver copies the final ones in.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas_core.errors import ProxylessError
from nas_core.io import atomic_write_text, dump_yaml
from nas_core.latency.predictor import MissingLatencyError
from nas_core.latency.table import LatencyTable
from nas_core.logs import get_logger
from orchestrator.baseline import baseline_nets
from orchestrator.fronts import mark_pareto, price_on_every_device
from orchestrator.profile_on import profile_labelled_tables, requested
from orchestrator.report import publish
from orchestrator.results import retrain_row, search_row
from orchestrator.storage import RunStorage
from orchestrator.sweep_log import SweepLog  # noqa: F401  (runs pickled before the split)
from orchestrator.sweep_spec import SweepSpec, load_sweep_spec
from orchestrator.tune_run import (
    experiment_name,
    require_resources,
    run_phase,
    tune_environment,
)

log = get_logger(__name__)  # progress lines; the CLI decides where they go

# what the driver writes into the run folder (pulled back into a URI run's working copy)
DRIVER_FILES = (
    "sweep.yaml",
    "latency.parquet",
    "tables",
    "events.jsonl",
    "architectures",
    "tensorboard",
)


@dataclass
class SweepOutcome:
    location: str  # the run folder: a path, or a URI for a pyarrow.fs storage_path
    run_dir: Path  # the driver's local copy of it (the folder itself for a path)
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    interrupted: bool


# ---- set-up ----


def prepare_run_dir(spec: SweepSpec, resume: bool, store: RunStorage | None = None) -> SweepSpec:
    """Create the run folder or check it holds this same sweep; `sweep.yaml` records the spec."""
    store = store or RunStorage(spec.storage_path, spec.name)
    run_dir, where = store.work_dir, store.url()
    saved_path = run_dir / "sweep.yaml"
    if saved_path.exists():
        saved = load_sweep_spec(saved_path).with_name(spec.name, spec.storage_path)
        if not resume and saved.to_config() != spec.to_config():
            raise ProxylessError(
                f"{where} holds a different sweep: resume it with --resume {where} "
                "or choose another --name"
            )
        spec = saved
    elif resume:
        raise ProxylessError(f"{where}: no sweep to resume (no sweep.yaml)")
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(saved_path, dump_yaml(spec.to_config()))
    return spec


def table_keys(spec: SweepSpec) -> dict[str, list[str]]:
    """The latency entries each of the grid's tables must hold ('' = the one profiled here):
    every space of the grid points it prices, at the dataset's class count (read once)."""
    from nas_core.data import build_datasets

    num_classes = build_datasets(spec.data).num_classes
    keys: dict[str, dict[str, None]] = {}
    for point in spec.grid_points():
        space = spec.search_config(point, out_dir="unused").build_space(num_classes)
        keys.setdefault(point.get("lut") or "", {}).update(
            dict.fromkeys(space.latency_layout().all_keys())
        )
    return {table: list(entries) for table, entries in keys.items()}


def prepare_tables(
    spec: SweepSpec, run_dir: Path, keys_by_table: Mapping[str, list[str]] | None = None
) -> dict[str, LatencyTable]:
    """The grid's tables by path ('' = profiled here); each must price all of its spaces."""
    tables: dict[str, LatencyTable] = {}
    for key, keys in (keys_by_table or table_keys(spec)).items():
        if requested(key):  # profiled on its labelled nodes once Ray is up
            continue
        if key:
            table = LatencyTable.load(key)
            missing = table.missing(keys)
            if missing:
                raise MissingLatencyError(missing, f"{key}")
        elif spec.device == "cuda":  # measured on a cluster GPU, once Ray is up
            continue
        else:
            from nas_core.latency.profiler import ProfileConfig, profile_keys

            out = run_dir / "latency.parquet"
            log.info(f"profiling {len(keys)} latency entries on this machine → {out}")
            table = profile_keys(
                keys,
                ProfileConfig.for_search("cpu"),
                out=out,
                progress=False,
                extra_meta={"sweep": spec.name},
            )
        tables[key] = table
    _one_table_per_device(tables)
    return tables


def _one_table_per_device(tables: Mapping[str, LatencyTable]) -> None:
    """Each device gets one front, so two tables of one device would mix their units."""
    seen: dict[str, str] = {}
    for key, table in tables.items():
        where = key or "the table profiled here"
        device = table.meta.device
        if device in seen:
            raise ProxylessError(
                f"grid.lut: {seen[device]} and {where} are both tables of {device!r}; a "
                "device has one front, so keep one of them (or re-profile one elsewhere)"
            )
        seen[device] = where


def profile_gpu_table(
    spec: SweepSpec,
    run_dir: Path,
    tables: dict[str, LatencyTable],
    keys_by_table: Mapping[str, list[str]] | None = None,
) -> dict[str, LatencyTable]:
    """The CUDA table of a `lut: null` grid point, profiled on one GPU of the cluster."""
    if spec.device != "cuda" or "" in tables or None not in spec.tables():
        return tables
    from cluster.profile import profile_on_gpu

    keys = (keys_by_table or table_keys(spec))[""]
    out = run_dir / "latency.parquet"
    log.info(f"profiling {len(keys)} latency entries on a cluster GPU → {out}")
    tables[""] = profile_on_gpu(keys, out, {"sweep": spec.name})
    return tables


def write_architecture_views(
    folder: Path, name: str, arch: Mapping[str, Any], table: LatencyTable
) -> None:
    """`<name>.md` (the per-layer table, priced on the net's table) and `<name>.png` (the
    drawing) beside the architecture's JSON; kept as they are when a resumed sweep finds them
    (the png is written last)."""
    if (folder / f"{name}.png").exists():
        return
    import matplotlib.pyplot as plt

    from nas_core.arch_view import architecture_figure, architecture_markdown, layer_rows
    from nas_core.architecture import Architecture
    from nas_core.io import atomic_output

    rows = layer_rows(Architecture.from_config(arch), table)
    atomic_write_text(folder / f"{name}.md", f"## {name}\n\n" + architecture_markdown(rows))
    figure = architecture_figure(rows, f"{name} ({table.meta.device})")
    with atomic_output(folder / f"{name}.png") as tmp:
        figure.savefig(tmp, format="png")
    plt.close(figure)


# ---- the two Tune runs ----


def _trial_id(result: Any, index: int) -> str:
    return str((result.metrics or {}).get("trial_id") or f"pending-{index}")


def _save_net(store: RunStorage, result: Any, row: dict[str, Any]) -> None:
    """Copy a finished retrain trial's final checkpoint (its net) to nets/<trial>/."""
    from orchestrator.trials import NET_FILES, NET_RECORD

    checkpoint = result.checkpoint
    if row["status"] != "done" or checkpoint is None:
        return
    fs, path = checkpoint.filesystem, checkpoint.path
    folder = store.copy_in(fs, path, NET_FILES, f"nets/{row['trial_id']}", optional=[NET_RECORD])
    row["weights"] = f"{folder}/weights.pt"


def _save_architecture(store: RunStorage, name: str, arch: dict[str, Any]) -> str:
    """architectures/<name>.json in the run folder; its path or URI for the row."""
    relative = f"architectures/{name}.json"
    atomic_write_text(store.work_dir / relative, json.dumps(arch, indent=2))
    return store.url(relative)


def _retrain_job(row: Mapping[str, Any], tables: Mapping[str, LatencyTable]) -> dict[str, Any]:
    """What a retrain trial needs of a net: its architecture, the table pricing it, its seed."""
    return {
        "architecture": json.loads(row["architecture"]),
        "table": tables[row["lut"] or ""].to_yaml_dict(),
        "seed": row["seed"],
    }


def run_sweep(
    spec: SweepSpec,
    address: str | None = None,
    resume: bool = False,
    verbose: bool = False,  # Ray workers' own output too
) -> SweepOutcome:
    """Run (or continue) a whole sweep and write its outputs; see the module docstring."""
    store = RunStorage(spec.storage_path, spec.name)
    try:
        store.pull(*DRIVER_FILES)
        try:
            with tune_environment():
                outcome = _run_sweep(spec, store, address, resume, verbose)
        except BaseException:  # Ctrl-C or an error: keep what the driver wrote, if storage can
            with contextlib.suppress(ProxylessError):
                store.push()
            raise
        store.push()
        return outcome
    finally:
        store.close()


def _run_sweep(
    spec: SweepSpec,
    store: RunStorage,
    address: str | None,
    resume: bool,
    verbose: bool,
) -> SweepOutcome:
    """The phases in order: set up, search, record the architectures, retrain, publish."""
    from cluster.connect import cluster_address, ensure_ray

    address = cluster_address(address)
    if address is not None:  # before anything is written: the user will edit the spec
        spec.resources.require_concurrency()
        ensure_ray(address, log_to_driver=verbose)  # a cluster that is not there, likewise
    run_dir = store.work_dir
    spec = prepare_run_dir(spec, resume, store)
    keys = table_keys(spec)  # the dataset read once, for its class count
    tables = prepare_tables(spec, run_dir, keys)
    ensure_ray(address, log_to_driver=verbose)
    require_resources(spec.resources)
    tables = profile_gpu_table(spec, run_dir, tables, keys)
    tables.update(profile_labelled_tables(keys, run_dir, spec.device, {"sweep": spec.name}))
    _one_table_per_device(tables)
    store.push()  # a URI run is resumable from here on, even if this driver is killed

    rows, interrupted = _search_phase(spec, store, tables)
    jobs, sources = _record_architectures(spec, store, rows, tables, interrupted)
    store.push()
    if jobs and not interrupted:
        interrupted = _retrain_phase(spec, store, jobs, sources, rows)
    price_on_every_device(rows, tables.values())  # the cross-device latency matrix
    summary = mark_pareto(rows, spec.pareto_latency, spec.pareto_reference)
    publish(run_dir, rows, summary)
    return SweepOutcome(store.url(), run_dir, rows, summary, interrupted)


def _search_phase(
    spec: SweepSpec, store: RunStorage, tables: Mapping[str, LatencyTable]
) -> tuple[list[dict[str, Any]], bool]:
    """Tune run 1: one search trial per grid point; (its rows, whether it was interrupted)."""
    from ray import tune

    from orchestrator.trials import search_trial

    log.info(
        f"sweep {spec.name}: search trials → {store.url('tune/' + experiment_name(spec, 'search'))}"
    )
    trainable = tune.with_parameters(
        search_trial,
        spec=spec.to_config(),
        tables={k: t.to_yaml_dict() for k, t in tables.items()},
        train_storage=store.url("tune/train"),
    )
    grid, stopped = run_phase(
        spec, store, "search", trainable, spec.param_space(), spec.num_samples, spec.trial_count()
    )
    rows = [
        search_row(_trial_id(r, i), r.config or {}, r.metrics or {}, r.error, spec.seed)
        for i, r in enumerate(grid)
    ]
    return rows, stopped or any(r["status"] == "unfinished" for r in rows)


def _record_architectures(
    spec: SweepSpec,
    store: RunStorage,
    rows: list[dict[str, Any]],
    tables: Mapping[str, LatencyTable],
    interrupted: bool,
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Every derived net's files and retrain job, then the random baseline's (which appends
    its rows): (the jobs, the rows each job takes its knobs from)."""
    run_dir = store.work_dir
    jobs = {}
    for r in rows:
        if r["status"] == "done":
            arch = json.loads(r["architecture"])
            r["architecture_path"] = _save_architecture(store, r["trial_id"], arch)
            table = tables[r["lut"] or ""]
            write_architecture_views(run_dir / "architectures", r["trial_id"], arch, table)
            jobs[r["trial_id"]] = _retrain_job(r, tables)
    sources = {r["trial_id"]: r for r in rows}
    if spec.baseline.active and not interrupted:
        for r in baseline_nets(spec.baseline, rows, tables):
            if r["status"] != "done":  # a matched net no draw fitted: its row says why
                rows.append(r)
                continue
            name = f"baseline/{r['trial_id']}"
            r["architecture_path"] = _save_architecture(store, name, json.loads(r["architecture"]))
            sources[r["trial_id"]] = r
            jobs[r["trial_id"]] = _retrain_job(r, tables)
    return jobs, sources


def _retrain_phase(
    spec: SweepSpec,
    store: RunStorage,
    jobs: dict[str, dict[str, Any]],
    sources: Mapping[str, dict[str, Any]],
    rows: list[dict[str, Any]],
) -> bool:
    """Tune run 2: one retrain trial per job, its rows appended; whether it was interrupted."""
    from ray import tune

    from orchestrator.trials import retrain_trial

    where = store.url("tune/" + experiment_name(spec, "retrain"))
    log.info(f"retrain trials ({len(jobs)} architectures) → {where}")
    retrain_grid, stopped = run_phase(
        spec,
        store,
        "retrain",
        tune.with_parameters(retrain_trial, spec=spec.to_config(), jobs=jobs),
        {"search_trial": tune.grid_search(sorted(jobs))},
        1,
        len(jobs),
    )
    for i, r in enumerate(retrain_grid):
        search_id = (r.config or {}).get("search_trial")
        row = retrain_row(_trial_id(r, i), sources[search_id], r.metrics or {}, r.error)
        _save_net(store, r, row)
        rows.append(row)
    return stopped or any(r["status"] == "unfinished" for r in rows if r["kind"] != "search")
