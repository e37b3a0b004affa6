"""The sweep's results table: one row per search and retrain trial, stored as Parquet.

Rows are plain dicts with a fixed schema (`COLUMNS`), built from what the trials reported to
Tune (read through `orchestrator.trial_report`, whose field names are these columns' names), so
a restored sweep rebuilds the same table. Writes go through a temp file and a rename.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from nas_core.arch_view import ALPHA_KEY
from nas_core.errors import ProxylessError
from nas_core.io import atomic_output, read_parquet
from orchestrator.baseline import RANDOM_KIND
from orchestrator.trial_report import DONE, FailedReport, ReportError, RetrainReport, SearchReport

COLUMNS: dict[str, str] = {
    "kind": "string",  # search | retrain | random (a baseline net, orchestrator.baseline)
    "trial_id": "string",
    "status": "string",  # done | failed (reported error) | error (crashed) | unfinished
    "error": "string",
    "search_trial_id": "string",  # retrain rows: the search that derived the architecture
    "lambda2": "float64",
    "B": "int64",  # blocks per stage: an integer in every space
    "F": "float64",
    "target_ms": "float64",
    "lut": "string",  # null: the table profiled on the sweep's machine
    "device": "string",  # the latency table's device name
    "strategy": "string",
    "space": "string",  # JSON
    "architecture": "string",  # JSON (nas_core.architecture.Architecture)
    "ops": "string",
    "alpha": "string",  # JSON: the search's final α (nas_core.arch_state.ArchState)
    "epochs": "int64",
    "valid_accuracy": "float64",  # search: the super-net's last valid accuracy
    "test_accuracy": "float64",  # retrain: standalone net on the test split
    "test_samples": "int64",  # retrain: the test split's size (the accuracy's resolution)
    "latency_table_ms": "float64",
    "latency_measured_ms": "float64",  # retrain: timed on the trial's machine, batch 1
    # retrain: JSON {device: ms} on every table of the sweep that can price the net's space
    "latency_by_device": "string",
    # retrain: the slowest net of its space on its own table (the default front reference)
    "latency_bound_ms": "float64",
    "params": "int64",
    "macs": "int64",
    "pareto": "bool",
    "weights": "string",  # retrain: the net's weights.pt in the run folder (path or URI)
    "architecture_path": "string",  # the architecture JSON in the run folder (path or URI)
    "seed": "int64",
    "time_total_s": "float64",  # the trial's running time as Tune counted it
    "hostname": "string",  # the node the trial finished on
    "node_id": "string",  # the Ray node that trained it (a Train-backed search: rank 0's)
    "matched_to": "string",  # random rows: the searched net whose latency this one matches
}


# columns a results.parquet written before they existed lacks (read as null)
LATER_COLUMNS = (
    "test_samples",
    "latency_bound_ms",
    "alpha",
    "latency_by_device",
    "weights",
    "architecture_path",
    "seed",
    "time_total_s",
    "hostname",
    "matched_to",
    "node_id",
)


def trial_status(metrics: Mapping[str, Any], error: Any) -> tuple[str, str | None]:
    """(status, error message) of one Tune result."""
    if FailedReport.sent(metrics):
        return "failed", FailedReport.from_metrics(metrics).error
    if metrics.get(DONE):
        return "done", None
    if error is not None:
        text = str(error).strip().splitlines()
        return "error", text[-1] if text else type(error).__name__
    return "unfinished", None


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v)


def _finished(
    kind: type[SearchReport | RetrainReport],
    trial_id: str,
    metrics: Mapping[str, Any],
    error: Any,
) -> tuple[str, str | None, dict[str, Any]]:
    """(status, error message, the report's fields that are not None, by name = column). A
    report that does not read makes its own row an error naming the trial: one bad report
    costs that row, never the sweep's table of finished results."""
    try:
        status, message = trial_status(metrics, error)
        got = kind.from_metrics(metrics).present() if status == "done" else {}
    except ReportError as e:
        return "error", f"trial {trial_id}: {e}", {}
    return status, message, got


def search_row(
    trial_id: str,
    params: Mapping[str, Any],
    metrics: Mapping[str, Any],
    error: Any,
    seed: int | None = None,
) -> dict[str, Any]:
    status, message, got = _finished(SearchReport, trial_id, metrics, error)
    if status != "done":  # an unfinished search's last epoch reported its α
        got = {ALPHA_KEY: metrics.get(ALPHA_KEY)}
    arch = got.get("architecture")
    space = json.loads(got["space"]) if got.get("space") else {}
    return {
        "kind": "search",
        "trial_id": trial_id,
        "status": status,
        "error": message,
        "search_trial_id": trial_id,
        "lambda2": _number(params.get("lambda2", metrics.get("lambda2"))),
        # a knob the grid does not sweep is the base space's
        "B": _number(params.get("B", space.get("B"))),
        "F": _number(params.get("F", space.get("F"))),
        "target_ms": _number(params.get("target_ms")),
        "lut": params.get("lut"),
        "device": got.get("device"),
        "strategy": got.get("strategy"),
        "space": got.get("space"),
        "architecture": arch,
        "ops": ",".join(json.loads(arch)["ops"]) if arch else None,
        "alpha": got.get(ALPHA_KEY),
        "epochs": got.get("epochs"),
        "valid_accuracy": got.get("valid_accuracy"),
        "latency_table_ms": got.get("latency_table_ms"),
        "params": got.get("params"),
        "macs": got.get("macs"),
        "pareto": False,
        "weights": None,
        "architecture_path": None,
        "seed": params.get("seed", seed),  # a grid.seed axis, else the spec's seed
        "time_total_s": _number(metrics.get("time_total_s")),  # Tune's own keys
        "hostname": metrics.get("hostname"),
        "node_id": got.get("node_id"),
    }


def retrain_row(
    trial_id: str, search: Mapping[str, Any], metrics: Mapping[str, Any], error: Any
) -> dict[str, Any]:
    """A retrain trial's row; its knobs and architecture come from its search row (or, for a
    baseline net, from the row that drew it: its kind stays `random`), and so do its latency
    and size where the trial reported none."""
    status, message, got = _finished(RetrainReport, trial_id, metrics, error)
    row = {k: search.get(k) for k in COLUMNS}
    row.update(
        kind=RANDOM_KIND if search.get("kind") == RANDOM_KIND else "retrain",
        trial_id=trial_id,
        status=status,
        error=message,
        search_trial_id=search["trial_id"],
        epochs=got.get("epochs"),
        valid_accuracy=got.get("valid_accuracy"),
        test_accuracy=got.get("test_accuracy"),
        test_samples=got.get("test_samples"),
        latency_table_ms=_number(got.get("latency_table_ms", search.get("latency_table_ms"))),
        latency_measured_ms=got.get("latency_measured_ms"),
        params=got.get("params", search.get("params")),
        macs=got.get("macs", search.get("macs")),
        pareto=False,
        weights=None,
        time_total_s=_number(metrics.get("time_total_s")),  # Tune's own keys
        hostname=metrics.get("hostname"),
        node_id=got.get("node_id"),
    )
    return row


def _schema():
    import pyarrow as pa

    types = {
        "string": pa.string(),
        "float64": pa.float64(),
        "int64": pa.int64(),
        "bool": pa.bool_(),
    }
    return pa.schema([(name, types[t]) for name, t in COLUMNS.items()])


def _clean(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == "float64":
        v = float(value)
        return v if not math.isnan(v) else None
    if kind == "int64":
        return int(value)
    if kind == "bool":
        return bool(value)
    return str(value)


def write_results(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _schema()
    rows = list(rows)
    data = {name: [_clean(r.get(name), kind) for r in rows] for name, kind in COLUMNS.items()}
    table = pa.table(data, schema=schema) if data["kind"] else schema.empty_table()
    with atomic_output(path) as tmp:
        pq.write_table(table, tmp)


def read_results(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a results.parquet; a missing or foreign file is a one-line error."""
    p = Path(path)
    table = read_parquet(p, "results file")
    missing = [c for c in COLUMNS if c not in table.column_names]
    if [c for c in missing if c not in LATER_COLUMNS]:
        raise ProxylessError(f"{p}: not a sweep results table (no column {missing[0]})")
    present = [c for c in COLUMNS if c in table.column_names]
    return [{**dict.fromkeys(missing), **r} for r in table.select(present).to_pylist()]
