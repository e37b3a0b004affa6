"""The random baseline of a sweep: its draws, its rows and the search-vs-random comparison."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nas_core.architecture import Architecture
from nas_core.errors import ProxylessError
from nas_core.latency.predictor import architecture_latency
from nas_core.latency.synthetic import synthetic_table
from nas_core.spaces import SearchSpace
from orchestrator.baseline import BaselineSpec, baseline_nets
from orchestrator.fronts import mark_pareto
from orchestrator.report import draw_front, front_markdown, front_text
from orchestrator.results import read_results, retrain_row, search_row, write_results
from orchestrator.sweep_spec import DEMO_SPEC, SweepSpec
from orchestrator.versus_random import compare_arms, versus_text
from tests.trial_reports import retrained, searched

SPACE = {"name": "mobilenet", "B": 2, "F": 0.5, "resolution": 32,
         "transition_op": "3x3_MBConv6", "num_classes": 10}  # fmt: skip


@pytest.fixture(scope="module")
def space_and_table():
    space = SearchSpace.from_config(SPACE)
    return space, synthetic_table(space)


def _searched(space: SearchSpace, table, positions: list[int], seed: int = 0) -> list[dict]:
    """Finished search rows whose nets take candidate `p` (clipped) in every layer."""
    rows = []
    for i, p in enumerate(positions):
        ops = tuple(s.candidates[min(p, len(s.candidates) - 1)] for s in space.layer_specs())
        arch = Architecture(space, ops)
        metrics = searched(
            json.dumps(arch.to_config()),
            latency_table_ms=architecture_latency(arch, table),
            device=table.meta.device,
        )
        rows.append(search_row(f"s{i}", {"lambda2": float(i), "seed": seed}, metrics, None))
    return rows


def test_uniform_and_matched_draws_are_fixed_by_what_they_match(space_and_table) -> None:
    space, table = space_and_table
    searched = _searched(space, table, [0, 2, 4])
    spec = BaselineSpec(random=3, matched=True)
    nets = baseline_nets(spec, searched, {"": table})
    assert [r["trial_id"] for r in nets] == [
        "random-00-000", "random-00-001", "random-00-002",
        "matched-s0", "matched-s1", "matched-s2",
    ]  # fmt: skip
    assert nets == baseline_nets(spec, searched, {"": table})  # a resumed sweep draws the same
    assert all(r["kind"] == "random" and r["seed"] == 0 for r in nets)
    for r in nets[3:]:
        target = next(s for s in searched if s["trial_id"] == r["matched_to"])
        assert r["status"] == "done"
        arch = Architecture.from_config(json.loads(r["architecture"]))
        ms = architecture_latency(arch, table)
        assert ms == pytest.approx(r["latency_table_ms"])
        assert abs(ms - target["latency_table_ms"]) <= 0.05 * target["latency_table_ms"]
        assert r["ops"] != target["ops"]  # drawn, not copied
    other_seed = baseline_nets(spec, _searched(space, table, [0, 2, 4], seed=1), {"": table})
    assert [r["ops"] for r in other_seed[:3]] != [r["ops"] for r in nets[:3]]


def test_a_latency_no_draw_fits_gives_a_row_that_says_so(space_and_table) -> None:
    space, table = space_and_table
    spec = BaselineSpec(matched=True, tolerance=1e-9, draws=5)
    (row,) = baseline_nets(spec, _searched(space, table, [1]), {"": table})
    assert row["status"] == "failed" and row["architecture"] is None
    assert "no random architecture within ±0% of" in row["error"] and "in 5 draws" in row["error"]


def _arms(gaps: list[float]) -> list[dict]:
    """Searched nets at 0.90 and their matched random nets `gap` below, plus one uniform."""
    rows = []
    for i, gap in enumerate(gaps):
        arch = json.dumps({"space": SPACE, "ops": []})
        metrics = searched(arch, latency_table_ms=2.0 + i, device="toy")
        s = search_row(f"s{i}", {"lambda2": float(i)}, metrics, None)
        r = retrain_row(f"r{i}", s, retrained(0.9, test_samples=1000), None)
        m = {**s, "kind": "random", "trial_id": f"matched-s{i}", "search_trial_id": f"matched-s{i}",
             "matched_to": f"s{i}", "strategy": "random"}  # fmt: skip
        rm = retrain_row(f"rm{i}", m, retrained(0.9 - gap), None)
        rows += [s, r, rm]
    name = "random-00-000"
    u = {**rows[0], "kind": "random", "trial_id": name, "search_trial_id": name,
         "latency_table_ms": 9.0}  # fmt: skip
    rows.append(retrain_row("ru", u, retrained(0.5), None))
    return rows


def test_the_paired_gap_its_interval_and_both_hypervolumes() -> None:
    rows = _arms([0.02, 0.04, 0.0, 0.06])
    compared = compare_arms(rows, "latency_table_ms", lambda r: r["device"])
    ((device, v),) = compared.items()
    assert device == "toy" and v["pairs"] == 4 and v["pairs_won"] == 3
    assert v["gap_mean"] == pytest.approx(0.03)
    lo, hi = v["gap_ci95"]
    assert 0.0 <= lo < 0.03 < hi <= 0.06  # resampled means stay within the gaps' range
    assert v["reference"]["accuracy"] == pytest.approx(0.49)  # worst of either arm − 0.01
    assert v["hypervolume"]["search"] > v["hypervolume"]["random"] > 0
    assert len(v["random_nets"]) == 5
    assert compare_arms(rows, "latency_table_ms", lambda r: r["device"]) == {device: v}  # seeded
    # one random net that trained badly makes the mean, not the median
    ((_, skewed),) = compare_arms(
        _arms([0.0, 0.01, 0.2]), "latency_table_ms", lambda r: r["device"]
    ).items()
    assert skewed["gap_mean"] == pytest.approx(0.07) and skewed["gap_median"] == pytest.approx(0.01)
    assert "median pair +1.00" in versus_text("toy", skewed)


def test_random_nets_are_never_on_a_front_and_the_renderings_show_them(tmp_path: Path) -> None:
    rows = _arms([0.02, -0.01])
    rows[-1]["test_accuracy"] = 0.99  # the uniform net beats every searched one
    summary = mark_pareto(rows)
    assert not any(r["pareto"] for r in rows if r["kind"] == "random")
    assert {r["trial_id"] for r in rows if r["pareto"]} <= {"r0", "r1"}
    versus = summary["devices"]["toy"]["search_vs_random"]
    assert versus["pairs"] == 2 and versus["pairs_won"] == 1
    assert "search vs random (toy): search − matched random +0.50 points" in front_text(summary)
    assert "won 1 of 2 pairs" in front_markdown(summary)
    figure = draw_front(summary)
    labels = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert "random (3)" in labels
    write_results(tmp_path / "results.parquet", rows)
    back = read_results(tmp_path / "results.parquet")
    assert [r.get("matched_to") for r in back if r["kind"] == "random"] == ["s0", "s1", None]
    assert mark_pareto(back)["devices"]["toy"]["search_vs_random"] == versus


def test_the_spec_takes_a_baseline_and_refuses_bad_ones() -> None:
    spec = SweepSpec.from_config({**DEMO_SPEC, "baseline": {"random": 2, "matched": True}})
    assert spec.baseline == BaselineSpec(random=2, matched=True) and spec.baseline.active
    assert SweepSpec.from_config(spec.to_config()) == spec
    assert not SweepSpec.from_config(DEMO_SPEC).baseline.active  # the demo does not run one
    for bad, field in (({"random": -1}, "random"), ({"tolerance": 0}, "tolerance"),
                       ({"matched": "maybe"}, "matched"), ({"draw": 3}, "draw")):  # fmt: skip
        with pytest.raises(ProxylessError, match=f"baseline.{field}"):
            SweepSpec.from_config({**DEMO_SPEC, "baseline": bad})


def test_the_floor_net_is_never_matched_with_itself(space_and_table) -> None:
    """Every searchable layer Zero: on this table no other net comes within 5 % of it, and the
    spread draws hit the floor net itself (19 of 2,000 here), which would pair it with itself."""
    space, table = space_and_table
    (row,) = baseline_nets(BaselineSpec(matched=True), _searched(space, table, [99]), {"": table})
    assert row["status"] == "failed" and "the searched net itself excluded" in row["error"]
