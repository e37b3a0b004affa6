"""A sweep's fronts: one per device, over settings averaged across their seeds.

A *setting* is a grid point without its seed (λ₂, B, F, target, table, strategy); the nets
retrained from its seeds make one *point* on its device's front: the mean test accuracy and
latency, with their spread across seeds. Milliseconds of two devices are different units, so
each device (latency table) has its own front, reference point and hypervolume; the
cross-device latency matrix then shows how each device's choice runs on the others.
"""

from __future__ import annotations

import itertools
import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from orchestrator.pareto import default_reference, hypervolume, pareto_mask
from orchestrator.versus_random import compare_arms

SETTING = ("lambda2", "B", "F", "target_ms", "lut", "strategy")  # what a seed repeats
AVERAGED = ("test_accuracy", "latency_table_ms", "latency_measured_ms")  # mean ± spread
LATENCY_COLUMNS = {"table": "latency_table_ms", "measured": "latency_measured_ms"}


def net_name(r: Mapping[str, Any]) -> str:
    """A net's one name: the search trial that derived it (its `architectures/<name>.json`);
    a retrain trial's own id is its row's `trial_id`."""
    return str(r.get("search_trial_id") or r["trial_id"])


def device_of(row: Mapping[str, Any]) -> str:
    """The device whose front a row belongs to: its latency table's."""
    return str(row.get("device") or "unknown")


def _mean_spread(values: Sequence[Any]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation of the known values (no spread from one value)."""
    known = [float(v) for v in values if v is not None]
    if not known:
        return None, None
    return statistics.fmean(known), statistics.stdev(known) if len(known) > 1 else None


def standard_error(accuracy: float, samples: int | None) -> float | None:
    """The binomial standard error of an accuracy measured on `samples` test images: how
    much the test set alone moves it."""
    if not samples:
        return None
    return math.sqrt(max(accuracy * (1 - accuracy), 0.0) / samples)


def points_of(members: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The finished retrained nets of one device, one point per setting: its nets (in seed
    order), knobs, and the mean and spread (`<column>_std`) of accuracy and latencies."""
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for r in members:
        groups.setdefault(tuple(r.get(k) for k in SETTING), []).append(r)
    points = []
    for same in groups.values():
        same = sorted(same, key=lambda r: (r.get("seed") is None, r.get("seed"), net_name(r)))
        point: dict[str, Any] = {
            "nets": [net_name(r) for r in same],
            "seeds": [r.get("seed") for r in same],
            **{k: same[0].get(k) for k in ("lambda2", "B", "F", "target_ms")},
        }
        for column in AVERAGED:
            point[column], point[f"{column}_std"] = _mean_spread([r.get(column) for r in same])
        for column in ("params", "macs"):
            mean = _mean_spread([r.get(column) for r in same])[0]
            point[column] = None if mean is None else round(mean)
        samples = [r.get("test_samples") for r in same if r.get("test_samples")]
        point["standard_error"] = standard_error(point["test_accuracy"], min(samples, default=0))
        points.append(point)
    return points


def _flag_noise(front: list[dict[str, Any]], column: str) -> None:
    """Mark front points whose accuracy differs from a front neighbour's by less than the
    test set's binomial standard error: their order on the front is within noise."""
    front.sort(key=lambda p: p[column])
    for p in front:
        p["within_noise"] = []
    for a, b in itertools.pairwise(front):
        errors = [e for e in (a["standard_error"], b["standard_error"]) if e is not None]
        if errors and abs(a["test_accuracy"] - b["test_accuracy"]) < max(errors):
            a["within_noise"].append(b["nets"][0])
            b["within_noise"].append(a["nets"][0])


def mark_pareto(
    rows: list[dict[str, Any]],
    latency: str = "table",
    references: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Set `pareto` on the finished retrain rows whose setting is on its device's front and
    return the fronts' summary: per device its points, front size, reference and hypervolume;
    the top-level `reference` / `hypervolume` are that device's when there is one device.

    The reference point of a device is, in order: the spec's (`references`: device → an
    object with `accuracy` and `latency_ms`); accuracy 0 and the table latency of the slowest
    net its searched spaces hold (`latency_bound_ms`, fixed by the spec and the table, so
    sweeps of one spec compare); or, for measured latency, 1.1 × its slowest net's. A sweep
    with a random baseline adds each device's `search_vs_random` (`orchestrator.versus_random`);
    random nets are never on a front."""
    column = LATENCY_COLUMNS[latency]
    for r in rows:
        r["pareto"] = False
    done = [
        r
        for r in rows
        if r["kind"] == "retrain"
        and r["status"] == "done"
        and r.get("test_accuracy") is not None
        and r.get(column) is not None
    ]
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in done:
        groups.setdefault(device_of(r), []).append(r)
    devices = {}
    for device, members in sorted(groups.items()):
        points = points_of(members)
        acc = [p["test_accuracy"] for p in points]
        lat = [p[column] for p in points]
        for p, m in zip(points, pareto_mask(acc, lat), strict=True):
            p["pareto"] = m
        on_front = {name for p in points if p["pareto"] for name in p["nets"]}
        for r in members:
            r["pareto"] = net_name(r) in on_front
        _flag_noise([p for p in points if p["pareto"]], column)
        reference = _reference(device, members, lat, column, references)
        devices[device] = {
            "trials": len(members),
            "settings": len(points),
            "front": sum(p["pareto"] for p in points),
            "reference": reference,
            "hypervolume": hypervolume(acc, lat, (reference["accuracy"], reference["latency_ms"])),
            "points": sorted(points, key=lambda p: (not p["pareto"], p[column])),
        }
    for device, versus in compare_arms(rows, column, device_of).items():
        if device in devices:  # a device whose searched nets all failed has no comparison
            devices[device]["search_vs_random"] = versus
    only = next(iter(devices.values())) if len(devices) == 1 else None
    return {
        "latency": column,
        "trials": len(done),
        "front": sum(d["front"] for d in devices.values()),
        "devices": devices,
        "latency_matrix": latency_matrix(rows, devices),
        "reference": only["reference"] if only else None,
        "hypervolume": only["hypervolume"] if only else (0.0 if not devices else None),
    }


def _reference(
    device: str,
    members: Sequence[Mapping[str, Any]],
    latencies: Sequence[float],
    column: str,
    references: Mapping[str, Any] | None,
) -> dict[str, Any]:
    fixed = (references or {}).get(device)
    if fixed is not None:
        return {"accuracy": fixed.accuracy, "latency_ms": fixed.latency_ms, "from": "spec"}
    bounds = [r.get("latency_bound_ms") for r in members]
    if column == "latency_table_ms" and bounds and all(b is not None for b in bounds):
        return {"accuracy": 0.0, "latency_ms": max(bounds), "from": "slowest net of the spaces"}
    accuracy, latency_ms = default_reference(latencies)
    return {"accuracy": accuracy, "latency_ms": latency_ms, "from": "slowest net"}


def price_on_every_device(rows: list[dict[str, Any]], tables: Iterable[Any]) -> None:
    """Each retrained net's latency on every table given that can price its space, as JSON
    {device: ms} in `latency_by_device` (the columns of the cross-device matrix), and on its
    own table the slowest net of its space (`latency_bound_ms`, the default reference)."""
    from nas_core.architecture import Architecture
    from nas_core.latency.predictor import LatencyModel, MissingLatencyError, architecture_latency

    tables = list(tables)
    for r in rows:
        if r["kind"] == "search" or not r.get("architecture"):
            continue
        arch = Architecture.from_config(json.loads(r["architecture"]))
        prices = {}
        for table in tables:
            try:
                prices[table.meta.device] = architecture_latency(arch, table)
                if table.meta.device == r.get("device"):
                    r["latency_bound_ms"] = LatencyModel(arch.space, table).slowest()
            except MissingLatencyError:  # that device's table does not cover this space
                continue
        r["latency_by_device"] = json.dumps(prices)


def latency_matrix(
    rows: Sequence[Mapping[str, Any]], devices: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """The paper's specialisation table for the sweep's devices: for each device searched for
    (rows), its most accurate front point and that point's mean latency on every device
    (columns)."""
    by_name = {net_name(r): r for r in rows if r["kind"] == "retrain"}
    matrix = {}
    for device, stats in devices.items():
        front = [p for p in stats["points"] if p["pareto"]]
        if not front:
            continue
        best = max(front, key=lambda p: p["test_accuracy"])
        prices = [json.loads(by_name[n].get("latency_by_device") or "{}") for n in best["nets"]]
        on = sorted({d for price in prices for d in price})
        matrix[device] = {
            "net": ", ".join(best["nets"]),
            "test_accuracy": best["test_accuracy"],
            "latency_ms": {d: _mean_spread([price.get(d) for price in prices])[0] for d in on},
        }
    return matrix


def front_points(summary: Mapping[str, Any]) -> list[tuple[str, dict[str, Any], list[dict]]]:
    """(device, its summary, its front points fastest first) for every device."""
    column = summary["latency"]
    return [
        (
            device,
            stats,
            sorted((p for p in stats["points"] if p["pareto"]), key=lambda p: p[column]),
        )
        for device, stats in summary["devices"].items()
    ]


def front_rows(rows: Sequence[Mapping[str, Any]], latency: str = "table") -> list[dict[str, Any]]:
    """The rows on a front, by device, fastest first."""
    column = LATENCY_COLUMNS[latency]
    front = [dict(r) for r in rows if r.get("pareto")]
    return sorted(front, key=lambda r: (device_of(r), r[column], -r["test_accuracy"]))
