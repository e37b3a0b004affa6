"""Latency tables profiled on the nodes of a device type: `grid.lut: [{profile_on: {a10g: 1}}]`.

A heterogeneous cluster labels each device type with a custom Ray resource. Such a grid entry
is a table profiled as a Ray task on a node that offers the resource, every entry at once,
before the searches start. Each table is named after its label (one device type, one front),
records the node it ran on (`extra.profiled_on`), and is saved as `tables/<label>.parquet` in
the run folder, where a resumed sweep finds it again. In the spec the entry is kept as one
string, `profile_on:{"a10g": 1.0}`, so that tables, trials and rows key it as they key the
path of a table file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cluster.resources import check_node_resources
from nas_core.latency.table import LatencyTable
from nas_core.logs import get_logger

log = get_logger(__name__)

PREFIX = "profile_on:"


def canonical_entry(value: Any) -> str | None:
    """A `{profile_on: {resource: amount}}` grid entry (or its string form) as its string
    form; None for anything else (a table path, null). A malformed request is a ValueError."""
    if isinstance(value, str) and value.startswith(PREFIX):
        try:
            value = {"profile_on": json.loads(value[len(PREFIX) :])}
        except json.JSONDecodeError as e:
            raise ValueError(f"lut: {value!r}: not JSON after {PREFIX!r} ({e.msg})") from None
    if not isinstance(value, Mapping):
        return None
    if set(value) != {"profile_on"} or not isinstance(value["profile_on"], Mapping):
        raise ValueError(f"lut: expected {{profile_on: {{<node resource>: 1}}}}, got {value!r}")
    if not value["profile_on"]:
        raise ValueError("lut: profile_on names no node resource")
    try:
        asked = check_node_resources(value["profile_on"])
    except ValueError as e:
        raise ValueError(f"lut: profile_on: {e}") from None
    ordered = {name: asked[name] for name in sorted(asked)}
    return PREFIX + json.dumps(ordered, separators=(",", ":"))


def requested(entry: str | None) -> dict[str, float] | None:
    """The node resources a canonical `profile_on:` entry asks for; None for a table path."""
    if not entry or not entry.startswith(PREFIX):
        return None
    return json.loads(entry[len(PREFIX) :])


def label(resources: Mapping[str, float]) -> str:
    """The device name of a table profiled on nodes with `resources`: their names."""
    return "+".join(sorted(resources))


def table_path(run_dir: Path, resources: Mapping[str, float]) -> Path:
    return run_dir / "tables" / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', label(resources))}.parquet"


def profile_labelled_tables(
    entries: Mapping[str, Sequence[str]], run_dir: Path, device: str, extra_meta: dict[str, Any]
) -> dict[str, LatencyTable]:
    """Every `profile_on:` entry of `entries` (entry → the latency keys it must price) as a
    table: the one saved by an earlier run of this sweep when it prices every key, else
    profiled on a node with the entry's resources, all at once."""
    import ray

    from cluster.profile import start_profile_on
    from cluster.resources import require_gpus, require_node_resources

    tables: dict[str, LatencyTable] = {}
    pending: dict[str, Any] = {}
    for entry, keys in entries.items():
        resources = requested(entry)
        if resources is None:
            continue
        out = table_path(run_dir, resources)
        if out.exists() and not (found := LatencyTable.load(out)).missing(list(keys)):
            tables[entry] = found
            continue
        require_node_resources(resources, "profiling its latency table", f"grid.lut {entry}")
        if str(device).startswith("cuda"):
            require_gpus(1, f"profiling the CUDA table of grid.lut {entry}")
        log.info(f"profiling {len(keys)} latency entries on a node with {label(resources)} → {out}")
        pending[entry] = start_profile_on(keys, resources, device, label(resources), extra_meta)
    entry_of = {ref: entry for entry, ref in pending.items()}
    waiting = list(pending.values())
    while waiting:  # each saved as it comes: a failed one keeps the others for the resume
        (ref,), waiting = ray.wait(waiting, num_returns=1)
        entry, table = entry_of[ref], ray.get(ref)
        out = table_path(run_dir, requested(entry) or {})
        out.parent.mkdir(parents=True, exist_ok=True)
        table.save(out)
        tables[entry] = table
    return tables
