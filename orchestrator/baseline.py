"""A sweep's random baseline: architectures drawn from each searched space, retrained as the
searched nets are, never on a front.

Weight-sharing searches often tie random sampling under equal training (Li & Talwalkar, UAI
2019; Yu et al., ICLR 2020), so a sweep can carry its own control (`baseline:` in the spec):
- `random: N`: N nets per searched (space, table, seed), every layer's op uniform;
- `matched: true`: one net per searched net whose table latency is within ±`tolerance` of it,
  drawn from the spread sampler (a Dirichlet preference per net, which reaches both ends of the
  space) in at most `draws` draws, never the searched net itself; a searched net no draw fits
  gets a row that says so.
Draws are seeded from what they match (space, table, seed, latency), not from Tune's trial ids,
so a resumed sweep draws the same nets. Each net is a retrain trial with its searched
counterpart's recipe and seed; its row has `kind: random` and, for a matched net,
`matched_to` = the searched net's name. `orchestrator.versus_random` compares the arms.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import Field

from nas_core.architecture import Architecture
from nas_core.config import ConfigModel
from nas_core.latency.predictor import architecture_latency
from nas_core.latency.table import LatencyTable
from nas_core.latency.validate import random_architectures

RANDOM_KIND = "random"  # the `kind` of a baseline net's row
BATCH = 64  # spread draws priced at a time while matching


class BaselineSpec(ConfigModel):
    """The random arms a sweep retrains beside its searched nets (off by default)."""

    random: int = Field(0, ge=0, le=1000)  # uniform nets per searched space, table and seed
    matched: bool = False  # one net per searched net at its table latency
    tolerance: float = Field(0.05, gt=0, lt=1)  # a matched net's relative latency window
    draws: int = Field(2000, ge=1, le=1_000_000)  # spread draws tried per matched net

    @property
    def active(self) -> bool:
        return self.random > 0 or self.matched


def _seed(*parts: Any) -> int:
    """A seed that is a pure function of `parts` (stable across processes and resumes)."""
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    return int(digest[:15], 16)


def matched_architecture(
    searched: Architecture, table: LatencyTable, target_ms: float, tolerance: float, draws: int
) -> tuple[Architecture | None, int]:
    """The first spread draw other than `searched` within ±`tolerance` of `target_ms` on
    `table`, and how many draws it took (None and `draws` when none fits). A copy of the
    searched net would pair it with itself: the all-Zero floor net is often the only one."""
    space = searched.space
    seed = _seed(space.to_config(), table.meta.device, round(target_ms, 9))
    tried = 0
    for start in range(0, draws, BATCH):
        batch = random_architectures(space, min(BATCH, draws - start), seed + start, spread=True)
        for arch in batch:
            tried += 1
            near = abs(architecture_latency(arch, table) - target_ms) <= tolerance * target_ms
            if near and arch.ops != searched.ops:
                return arch, tried
    return None, tried


def _row(
    name: str, search: Mapping[str, Any], arch: Architecture | None, table: LatencyTable
) -> dict[str, Any]:
    """A baseline net's source row: its searched counterpart's space, table and seed."""
    return {
        "kind": RANDOM_KIND,
        "trial_id": name,
        "status": "done",
        "error": None,
        "search_trial_id": name,
        "B": search.get("B"),
        "F": search.get("F"),
        "lut": search.get("lut"),
        "device": search.get("device"),
        "strategy": RANDOM_KIND,
        "space": search.get("space"),
        "architecture": None if arch is None else json.dumps(arch.to_config()),
        "ops": None if arch is None else ",".join(arch.ops),
        "latency_table_ms": None if arch is None else architecture_latency(arch, table),
        "seed": search.get("seed"),
        "pareto": False,
    }


def baseline_nets(
    spec: BaselineSpec,
    searched: Sequence[Mapping[str, Any]],
    tables: Mapping[str, LatencyTable],
) -> list[dict[str, Any]]:
    """The baseline's source rows for the finished `searched` rows (`tables` by `lut`, "" for
    the profiled one), in a fixed order; a matched net no draw fitted has status `failed`."""
    rows: list[dict[str, Any]] = []
    done = [r for r in searched if r["status"] == "done" and r.get("architecture")]
    groups: dict[tuple, Mapping[str, Any]] = {}
    for r in done:
        groups.setdefault((r["space"], r.get("lut") or "", r.get("seed")), r)
    for k, (key, first) in enumerate(sorted(groups.items(), key=lambda kv: json.dumps(kv[0]))):
        arch = Architecture.from_config(json.loads(first["architecture"]))
        table = tables[key[1]]
        for i, net in enumerate(random_architectures(arch.space, spec.random, _seed(*key))):
            rows.append(_row(f"random-{k:02d}-{i:03d}", first, net, table))
    if spec.matched:
        for r in sorted(done, key=lambda r: str(r["trial_id"])):
            arch = Architecture.from_config(json.loads(r["architecture"]))
            table = tables[r.get("lut") or ""]
            target = float(r["latency_table_ms"])
            net, tried = matched_architecture(arch, table, target, spec.tolerance, spec.draws)
            row = _row(f"matched-{r['trial_id']}", r, net, table)
            row["matched_to"] = r["trial_id"]
            if net is None:
                row["status"] = "failed"
                row["error"] = (
                    f"no random architecture within ±{spec.tolerance:.0%} of {target:.3f} ms "
                    f"in {tried} draws (the searched net itself excluded)"
                )
            rows.append(row)
    return rows
