"""Search vs random, per device: the paired accuracy gap at matched latency and the two arms'
hypervolumes under one reference.

- The gap pairs each searched net with its matched random net (`matched_to`): mean, a
  bootstrap 95 % interval over the pairs (10,000 resamples, seeded, so a redraw repeats it)
  and the pairs the search won. It measures architecture at equal latency, which a front
  comparison alone does not: a search that only finds faster nets wins hypervolume but not this.
- The hypervolumes count every net of an arm (the searched nets; the matched and uniform random
  nets) from one reference: the worst accuracy of either arm − 0.01 and the slowest net of
  the searched spaces, so neither arm's own spread moves the other's number.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from orchestrator.baseline import RANDOM_KIND
from orchestrator.pareto import hypervolume

RESAMPLES = 10_000


def _bootstrap(gaps: Sequence[float]) -> list[float]:
    """The 2.5 and 97.5 percentiles of the mean gap over resampled pairs."""
    rng = np.random.default_rng(0)
    values = np.asarray(gaps, dtype=np.float64)
    means = values[rng.integers(0, len(values), (RESAMPLES, len(values)))].mean(axis=1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def gap_statistics(gaps: Sequence[float]) -> dict[str, Any]:
    """Paired gaps (search − random) summed up: their count, mean with a bootstrap 95 %
    interval, median and the pairs the search won (None where there are no pairs)."""
    return {
        "pairs": len(gaps),
        "gap_mean": statistics.fmean(gaps) if gaps else None,
        "gap_ci95": _bootstrap(gaps) if gaps else None,
        # one badly trained random net moves the mean of a handful of pairs; not the median
        "gap_median": statistics.median(gaps) if gaps else None,
        "pairs_won": sum(g > 0 for g in gaps),
    }


def matched_pairs(rows: Sequence[Mapping[str, Any]]) -> list[tuple[Mapping, Mapping]]:
    """(searched net's retrain row, its matched random net's row) for every pair of `rows`
    whose two nets both have a row (`matched_to` names the search trial)."""
    by_search = {r.get("search_trial_id"): r for r in rows if r["kind"] == "retrain"}
    return [
        (by_search[r["matched_to"]], r)
        for r in rows
        if r["kind"] == RANDOM_KIND and r.get("matched_to") in by_search
    ]


def _arm_hypervolume(arm: Sequence[Mapping[str, Any]], column: str, ref: tuple) -> float:
    return hypervolume([r["test_accuracy"] for r in arm], [r[column] for r in arm], ref)


def compare_arms(
    rows: Sequence[Mapping[str, Any]], column: str, device_of: Any
) -> dict[str, dict[str, Any]]:
    """Per device with random nets: the paired gap (search − matched random), both arms'
    hypervolumes, and the random nets themselves (for the figure)."""
    scored = [
        r
        for r in rows
        if r["kind"] in ("retrain", RANDOM_KIND)
        and r["status"] == "done"
        and r.get("test_accuracy") is not None
        and r.get(column) is not None
    ]
    out: dict[str, dict[str, Any]] = {}
    for device in sorted({device_of(r) for r in scored if r["kind"] == RANDOM_KIND}):
        mine = [r for r in scored if device_of(r) == device]
        searched = [r for r in mine if r["kind"] == "retrain"]
        random = [r for r in mine if r["kind"] == RANDOM_KIND]
        gaps = [s["test_accuracy"] - m["test_accuracy"] for s, m in matched_pairs(mine)]
        bounds = [r.get("latency_bound_ms") for r in mine]
        slowest = (
            max(bounds)
            if all(b is not None for b in bounds) and column == "latency_table_ms"
            else 1.1 * max(r[column] for r in mine)
        )
        reference = (min(r["test_accuracy"] for r in mine) - 0.01, slowest)
        unmatched = sum(
            1
            for r in rows
            if r["kind"] == RANDOM_KIND
            and r.get("matched_to")
            and r["status"] == "failed"
            and device_of(r) == device
        )
        out[device] = {
            **gap_statistics(gaps),
            "unmatched": unmatched,
            "hypervolume": {
                "search": _arm_hypervolume(searched, column, reference),
                "random": _arm_hypervolume(random, column, reference),
            },
            "reference": {"accuracy": reference[0], "latency_ms": reference[1]},
            "random_nets": [
                {
                    "net": r.get("search_trial_id") or r["trial_id"],
                    "test_accuracy": r["test_accuracy"],
                    column: r[column],
                    "matched_to": r.get("matched_to"),
                }
                for r in random
            ],
        }
    return out


def versus_text(device: str, v: Mapping[str, Any]) -> str:
    """One line: the gap in accuracy points with its interval, pairs won, hypervolumes."""
    hv = v["hypervolume"]
    line = f"search vs random ({device}): "
    if v["pairs"]:
        lo, hi = v["gap_ci95"]
        line += (
            f"search − matched random {100 * v['gap_mean']:+.2f} points "
            f"(95 % interval {100 * lo:+.2f} to {100 * hi:+.2f}; median pair "
            f"{100 * v['gap_median']:+.2f}), won {v['pairs_won']} of {v['pairs']} pairs; "
        )
    else:
        line += "no matched pairs; "
    line += f"hypervolume search {hv['search']:.4g}, random {hv['random']:.4g}"
    if v["unmatched"]:
        line += f"; {v['unmatched']} searched nets had no random net at their latency"
    return line
