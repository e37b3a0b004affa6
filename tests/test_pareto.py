"""Pareto front, hypervolume, the results table and its rendering."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest

from nas_core.errors import ProxylessError
from orchestrator.fronts import mark_pareto
from orchestrator.pareto import default_reference, hypervolume, pareto_mask
from orchestrator.results import COLUMNS, read_results, retrain_row, search_row, write_results
from orchestrator.trial_report import FailedReport
from tests.trial_reports import retrained, searched


def test_front_of_a_small_example() -> None:
    acc = [0.9, 0.8, 0.95, 0.85, 0.9]
    lat = [2.0, 1.0, 3.0, 2.5, 2.0]
    # (0.85, 2.5) is dominated by (0.9, 2.0); the two equal points both stay
    assert pareto_mask(acc, lat) == [True, True, True, False, True]


def test_nan_never_joins_the_front() -> None:
    assert pareto_mask([float("nan"), 0.5], [1.0, 2.0]) == [False, True]


def _dominates(p: tuple[float, float], q: tuple[float, float]) -> bool:
    return p[0] >= q[0] and p[1] <= q[1] and p != q


def test_front_matches_the_definition_on_random_points() -> None:
    rng = random.Random(0)
    for _ in range(50):
        pts = [(round(rng.random(), 2), round(rng.random(), 2)) for _ in range(rng.randint(1, 12))]
        mask = pareto_mask([p[0] for p in pts], [p[1] for p in pts])
        for p, m in zip(pts, mask, strict=True):
            assert m == (not any(_dominates(q, p) for q in pts))


def _grid_hypervolume(pts, ref, n=400) -> float:
    """Area by counting cell centres dominated by some point (a slow, obvious estimate)."""
    acc_ref, lat_ref = ref
    hi = max(p[0] for p in pts)
    cells = 0
    for i, j in itertools.product(range(n), range(n)):
        lat = lat_ref * (i + 0.5) / n
        acc = acc_ref + (hi - acc_ref) * (j + 0.5) / n
        cells += any(p[0] >= acc and p[1] <= lat for p in pts)
    return cells * (lat_ref / n) * ((hi - acc_ref) / n)


def test_hypervolume_matches_a_grid_count() -> None:
    rng = random.Random(1)
    pts = [(rng.uniform(0.5, 1), rng.uniform(0.1, 2)) for _ in range(6)]
    ref = default_reference([p[1] for p in pts])
    exact = hypervolume([p[0] for p in pts], [p[1] for p in pts], ref)
    assert exact == pytest.approx(_grid_hypervolume(pts, ref), rel=0.02)


def test_dominated_points_do_not_change_the_hypervolume() -> None:
    acc, lat = [0.9, 0.8], [2.0, 1.0]
    ref = (0.0, 3.0)
    base = hypervolume(acc, lat, ref)
    assert base == pytest.approx(0.9 * 1.0 + 0.8 * 1.0)
    assert hypervolume([*acc, 0.7], [*lat, 2.5], ref) == pytest.approx(base)
    assert hypervolume([*acc, 0.95], [*lat, 2.5], ref) > base


def _rows() -> list[dict]:
    arch = '{"space": {"name": "mobilenet"}, "ops": ["zero", "3x3_MBConv6"]}'
    rows = []
    # measured here, the third net is the fastest: on that front it joins the other two
    points = [(0.0, 0.97, 3.0, 3.2), (0.5, 0.95, 2.0, 2.2), (1.0, 0.94, 2.5, 1.5)]
    for i, (lam, acc, lat, here) in enumerate(points):
        metrics = searched(arch, latency_table_ms=lat, params=10 + i)
        metrics["valid_accuracy"] = 0.5 + i / 10  # the search's own
        s = search_row(f"s{i}", {"lambda2": lam, "B": 2, "F": 0.5}, metrics, None)
        done = retrained(acc, epochs=3, valid_accuracy=0.99, latency_measured_ms=here)
        r = retrain_row(f"r{i}", s, done, None)
        r.update(architecture_path=f"architectures/s{i}.json", weights=f"nets/s{i}/weights.pt")
        rows += [s, r]
    failed = FailedReport(error="loss became nan").to_metrics()
    rows.append(search_row("s9", {"lambda2": 2.0}, failed, None))
    return rows


def test_results_round_trip_through_parquet(tmp_path: Path) -> None:
    rows = _rows()
    summary = mark_pareto(rows)
    assert summary["trials"] == 3 and summary["front"] == 2
    assert [r["trial_id"] for r in rows if r["pareto"]] == ["r0", "r1"]
    write_results(tmp_path / "results.parquet", rows)
    back = read_results(tmp_path / "results.parquet")
    assert [r["trial_id"] for r in back] == [r["trial_id"] for r in rows]
    assert set(back[0]) == set(COLUMNS)
    failed = back[-1]
    assert failed["status"] == "failed" and "nan" in failed["error"]
    assert back[1]["ops"] == "zero,3x3_MBConv6" and back[1]["lambda2"] == 0.0
    assert back[0]["B"] == 2 and isinstance(back[0]["B"], int)  # not 2.0: B counts blocks


def test_reading_a_foreign_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "x.parquet").write_text("not parquet")
    with pytest.raises(ProxylessError, match="not a Parquet file"):
        read_results(tmp_path / "x.parquet")
    with pytest.raises(ProxylessError, match="no such results file"):
        read_results(tmp_path / "none.parquet")


def test_pareto_cli_redraws_the_front(tmp_path: Path, capsys) -> None:
    import json

    from orchestrator.cli import main

    write_results(tmp_path / "results.parquet", _rows())
    assert main(["pareto", str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    # one name per net, the search trial's; the retrain trial and the net's files beside it
    assert [r["net"] for r in out["rows"]] == ["s1", "s0"]  # fastest first
    assert [r["retrain_trial_id"] for r in out["rows"]] == ["r1", "r0"]
    assert out["rows"][0]["architecture_path"] == "architectures/s1.json"
    assert out["rows"][0]["weights"] == "nets/s1/weights.pt"
    assert out["hypervolume"] > 0
    assert (tmp_path / "pareto.png").stat().st_size > 1000
    assert "| s1 |" in (tmp_path / "pareto.md").read_text()
    assert list((tmp_path / "tensorboard" / "hparams").iterdir())
    assert main(["pareto", str(tmp_path / "missing")]) == 2


def test_a_redraw_updates_the_flags_the_summary_and_the_renderings(tmp_path: Path) -> None:
    import json

    from orchestrator.cli import main

    write_results(tmp_path / "results.parquet", _rows())
    assert main(["pareto", str(tmp_path), "--latency", "measured", "-q"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["latency"] == "latency_measured_ms" and summary["front"] == 3
    flags = {r["trial_id"]: r["pareto"] for r in read_results(tmp_path / "results.parquet")}
    assert [flags[f"r{i}"] for i in range(3)] == [True, True, True]
    assert "| s2 |" in (tmp_path / "pareto.md").read_text()
    assert main(["pareto", str(tmp_path), "--latency", "table", "-q"]) == 0
    flags = {r["trial_id"]: r["pareto"] for r in read_results(tmp_path / "results.parquet")}
    assert [flags[f"r{i}"] for i in range(3)] == [True, True, False]
    assert json.loads((tmp_path / "summary.json").read_text())["front"] == 2
    assert "| s2 |" not in (tmp_path / "pareto.md").read_text()


def test_hparams_label_the_search_and_the_retrain_accuracy(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from orchestrator.report import write_tensorboard

    rows = _rows()
    summary = mark_pareto(rows)
    write_tensorboard(tmp_path, rows, summary, _figure())
    run = tmp_path / "hparams" / "s1"  # named by its search trial
    values = {}
    for folder in run.iterdir():
        acc = EventAccumulator(str(folder))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            values[tag] = acc.Scalars(tag)[-1].value
    assert values["hparam/search_valid_accuracy"] == pytest.approx(0.6)  # the search's, not 0.99
    assert values["hparam/retrain_valid_accuracy"] == pytest.approx(0.99)


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.figure()


def test_every_point_of_the_figure_is_labelled_and_ties_share_one(tmp_path: Path) -> None:
    from orchestrator.report import draw_front

    rows = _rows()
    twin = dict(next(r for r in rows if r["trial_id"] == "r0"))
    twin.update(trial_id="r7", search_trial_id="s7", lambda2=0.25)  # one net, found twice
    rows.append(twin)
    summary = mark_pareto(rows)
    texts = [t.get_text() for t in draw_front(summary).axes[0].texts]
    assert len(texts) == 3  # four nets, three places
    assert any(t.startswith("s0, s7") and "(×2)" in t for t in texts)
    assert any(t == "s2" for t in texts)  # a dominated net is labelled too


def test_one_front_per_device(tmp_path: Path) -> None:
    """Milliseconds of two devices are two units: two fronts, two hypervolumes, two panels."""
    from orchestrator.report import draw_front, front_markdown, front_text

    rows = []
    for device, scale in (("phone", 10.0), ("this cpu", 1.0)):
        for r in _rows():
            r["device"] = device
            r["trial_id"], r["search_trial_id"] = (
                f"{device[0]}{r['trial_id']}",
                f"{device[0]}{r['search_trial_id']}",
            )
            if r["latency_table_ms"] is not None:
                r["latency_table_ms"] *= scale
            rows.append(r)
    # on the phone, the slow accurate net is much slower: it leaves that front
    next(r for r in rows if r["trial_id"] == "pr0")["latency_table_ms"] = 1e3
    next(r for r in rows if r["trial_id"] == "pr0")["test_accuracy"] = 0.90
    summary = mark_pareto(rows)
    assert set(summary["devices"]) == {"phone", "this cpu"}
    assert (
        summary["devices"]["this cpu"]["front"] == 2 and summary["devices"]["phone"]["front"] == 1
    )
    assert summary["hypervolume"] is None  # no one number across units
    hv = {d: s["hypervolume"] for d, s in summary["devices"].items()}
    assert hv["phone"] > 0 and hv["this cpu"] > 0 and hv["phone"] != hv["this cpu"]
    flags = {r["trial_id"]: r["pareto"] for r in rows if r["kind"] == "retrain"}
    assert flags == {
        "pr0": False,
        "pr1": True,
        "pr2": False,
        "tr0": True,
        "tr1": True,
        "tr2": False,
    }
    md = front_markdown(summary)
    assert "### phone" in md and "### this cpu" in md and md.count("hypervolume") == 2
    assert "phone: 1 of 3" in front_text(summary)
    figure = draw_front(summary)
    assert len(figure.axes) == 2
    write_results(tmp_path / "results.parquet", rows)
    assert read_results(tmp_path / "results.parquet")[1]["device"] == "phone"


def test_the_cross_device_latency_matrix(tmp_path: Path) -> None:
    """Each device's best front net priced on every table of the sweep: rows, the device it
    was searched for; columns, where it runs."""
    import dataclasses
    import json

    from nas_core.architecture import Architecture
    from nas_core.latency.predictor import architecture_latency
    from nas_core.latency.synthetic import synthetic_table
    from nas_core.latency.table import LatencyEntry, LatencyTable
    from nas_core.spaces import create_space
    from orchestrator.fronts import price_on_every_device
    from orchestrator.report import front_markdown

    space = create_space("mobilenet", B=1, F=0.5, resolution=32, num_classes=10)
    base = synthetic_table(space)
    phone = LatencyTable(
        {k: LatencyEntry(e.count, 7.0 * e.mean + (k.startswith("expanded") and 3.0), e.var)
         for k, e in base.entries.items()},
        dataclasses.replace(base.meta, name="phone"),
    )  # fmt: skip
    cpu = LatencyTable(base.entries, dataclasses.replace(base.meta, name="this cpu"))
    rows = []
    for device, table in (("phone", phone), ("this cpu", cpu)):
        for i in range(3):
            ops = tuple(s.candidates[(i + j) % len(s.candidates)]
                        for j, s in enumerate(space.layer_specs()))  # fmt: skip
            arch = json.dumps(Architecture(space, ops).to_config())
            latency = architecture_latency(Architecture(space, ops), table)
            metrics = searched(arch, device=device, latency_table_ms=latency)
            s = search_row(f"{device[0]}s{i}", {"lambda2": i / 2}, metrics, None)
            r = retrain_row(f"{device[0]}r{i}", s, retrained(0.9 - i / 20), None)
            rows += [s, r]
    price_on_every_device(rows, [phone, cpu])
    summary = mark_pareto(rows)
    matrix = summary["latency_matrix"]
    assert set(matrix) == {"phone", "this cpu"}
    for cell in matrix.values():
        assert set(cell["latency_ms"]) == {"phone", "this cpu"}  # a 2 x 2 matrix
        net = next(
            r for r in rows if r["kind"] == "retrain" and r["search_trial_id"] == cell["net"]
        )
        arch = Architecture.from_config(json.loads(net["architecture"]))
        assert cell["latency_ms"]["phone"] == pytest.approx(architecture_latency(arch, phone))
        assert cell["latency_ms"]["this cpu"] == pytest.approx(architecture_latency(arch, cpu))
    assert "### Latency across devices" in front_markdown(summary)
    from orchestrator.report import front_text

    assert "Latency across devices" in front_text(summary)
    write_results(tmp_path / "results.parquet", rows)  # the prices travel with the rows
    back = read_results(tmp_path / "results.parquet")
    assert mark_pareto(back)["latency_matrix"] == matrix


def test_a_fixed_reference_makes_hypervolumes_comparable() -> None:
    """With the spec's reference, a sweep's hypervolume does not move with its slowest net."""
    from orchestrator.sweep_spec import ReferencePoint

    fixed = {"unknown": ReferencePoint(accuracy=0.5, latency_ms=4.0)}
    rows = _rows()
    summary = mark_pareto(rows, references=fixed)
    stats = summary["devices"]["unknown"]
    assert stats["reference"] == {"accuracy": 0.5, "latency_ms": 4.0, "from": "spec"}
    # front: (2.0, 0.95) and (3.0, 0.97): (3-2)·(0.95-0.5) + (4-3)·(0.97-0.5)
    assert stats["hypervolume"] == pytest.approx(1.0 * 0.45 + 1.0 * 0.47)
    slower = _rows()
    slower.append(
        dict(slower[-2], trial_id="r8", lambda2=3.0, test_accuracy=0.6, latency_table_ms=9.0)
    )
    assert mark_pareto(slower, references=fixed)["devices"]["unknown"]["hypervolume"] == (
        pytest.approx(stats["hypervolume"])
    )  # a slow, dominated net changes nothing
    moving = mark_pareto(slower)["devices"]["unknown"]
    assert moving["reference"]["from"] == "slowest net" and moving["reference"]["latency_ms"] > 9


def _seeded_rows() -> list[dict]:
    """Two settings, three seeds each: λ₂ = 0 (accurate, slow) and λ₂ = 1 (fast)."""
    arch = '{"space": {"name": "mobilenet"}, "ops": ["zero", "3x3_MBConv6"]}'
    rows = []
    for lam, accs, lats in ((0.0, (0.90, 0.92, 0.94), (3.0, 3.2, 3.4)),
                            (1.0, (0.80, 0.85, 0.90), (1.0, 1.0, 1.3))):  # fmt: skip
        for seed, (acc, lat) in enumerate(zip(accs, lats, strict=True)):
            name = f"l{lam:g}s{seed}"
            metrics = searched(arch, latency_table_ms=lat)
            s = search_row(name, {"lambda2": lam, "seed": seed}, metrics, None)
            done = retrained(acc, test_samples=400)
            rows += [s, retrain_row(f"r-{name}", s, done, None)]
    return rows


def test_seeds_make_one_point_with_its_mean_and_spread(tmp_path: Path) -> None:
    """grid.seed repeats a setting: the front holds its mean, the report its spread."""
    from orchestrator.report import draw_front, front_markdown

    rows = _seeded_rows()
    summary = mark_pareto(rows)
    stats = summary["devices"]["unknown"]
    assert stats["trials"] == 6 and stats["settings"] == 2 and stats["front"] == 2
    slow, fast = sorted(stats["points"], key=lambda p: -p["latency_table_ms"])
    assert slow["nets"] == ["l0s0", "l0s1", "l0s2"] and slow["seeds"] == [0, 1, 2]
    assert slow["test_accuracy"] == pytest.approx(0.92)
    assert slow["test_accuracy_std"] == pytest.approx(0.02)  # sample standard deviation
    assert fast["latency_table_ms"] == pytest.approx(1.1)
    assert fast["latency_table_ms_std"] == pytest.approx(0.1732, abs=1e-4)
    # the hypervolume is the means': (1.1, 0.85) and (3.2, 0.92) against (0, 1.1 × 3.2)
    ref = 1.1 * 3.2
    assert stats["hypervolume"] == pytest.approx((3.2 - 1.1) * 0.85 + (ref - 3.2) * 0.92)
    assert all(r["pareto"] for r in rows if r["kind"] == "retrain")  # every seed's row
    md = front_markdown(summary)
    assert "0.9200 ± 0.0200" in md and "| l0s0, l0s1, l0s2 |" in md
    assert "each the mean ± spread of 3 seeds" in md
    bars = draw_front(summary).axes[0].containers  # one error-bar set: the front
    assert len(bars) == 1 and len(bars[0].lines[2]) == 2  # x and y bars
    write_results(tmp_path / "results.parquet", rows)
    assert [r["seed"] for r in read_results(tmp_path / "results.parquet")][:2] == [0, 0]


def test_front_neighbours_within_the_test_sets_noise_are_flagged() -> None:
    """An accuracy step smaller than the binomial standard error is no measured step."""
    from orchestrator.fronts import standard_error
    from orchestrator.report import front_text

    rows = _seeded_rows()
    for r in rows:  # the fast setting now trails the slow one by 0.005
        if r["kind"] == "retrain" and r["lambda2"] == 1.0:
            r["test_accuracy"] -= 0.85 - 0.915
    stats = mark_pareto(rows)["devices"]["unknown"]
    se = standard_error(0.92, 400)
    assert se == pytest.approx((0.92 * 0.08 / 400) ** 0.5) and se > 0.005
    slow, fast = sorted(stats["points"], key=lambda p: -p["latency_table_ms"])
    assert slow["within_noise"] == ["l1s0"] and fast["within_noise"] == ["l0s0"]
    assert "differs in test accuracy from that front neighbour" in front_text(mark_pareto(rows))
    clear = mark_pareto(_seeded_rows())["devices"]["unknown"]["points"]
    assert all(p["within_noise"] == [] for p in clear)  # 0.07 apart: a real step


def test_the_default_reference_is_the_slowest_net_of_the_spaces() -> None:
    """Without a spec reference, the table price of the spaces' slowest net: fixed by the
    spec and the table, so a slower net found by a later sweep does not move it."""
    import dataclasses
    import json

    from nas_core.architecture import Architecture
    from nas_core.latency.predictor import LatencyModel
    from nas_core.latency.synthetic import synthetic_table
    from nas_core.latency.table import LatencyTable
    from nas_core.spaces import create_space
    from orchestrator.fronts import price_on_every_device

    space = create_space("mobilenet", B=1, F=0.5, resolution=32, num_classes=10)
    base = synthetic_table(space)
    table = LatencyTable(base.entries, dataclasses.replace(base.meta, name="phone"))
    rows = []
    for i in range(3):
        ops = tuple(s.candidates[i % len(s.candidates)] for s in space.layer_specs())
        metrics = searched(json.dumps(Architecture(space, ops).to_config()), device="phone")
        s = search_row(f"s{i}", {"lambda2": i}, metrics, None)
        r = retrain_row(f"r{i}", s, retrained(0.8 + i / 50), None)
        r["latency_table_ms"] = float(i + 1)
        rows += [s, r]
    price_on_every_device(rows, [table])
    bound = LatencyModel(space, table).slowest()
    assert bound > LatencyModel(space, table).uniform()
    stats = mark_pareto(rows)["devices"]["phone"]
    assert stats["reference"] == {
        "accuracy": 0.0,
        "latency_ms": pytest.approx(bound),
        "from": "slowest net of the spaces",
    }
    rows[-1]["latency_table_ms"] = bound * 0.9  # a slower net found: same reference
    assert mark_pareto(rows)["devices"]["phone"]["reference"]["latency_ms"] == pytest.approx(bound)
    measured = mark_pareto(
        [dict(r, latency_measured_ms=1.0 + i) for i, r in enumerate(rows)], "measured"
    )
    assert measured["devices"]["phone"]["reference"]["from"] == "slowest net"  # no table bound


def test_a_knob_the_grid_does_not_sweep_comes_from_the_space() -> None:
    metrics = searched('{"space": {"name": "mobilenet", "B": 3, "F": 0.75}, "ops": []}')
    row = search_row("s0", {"lambda2": 0.1}, metrics, None)
    assert (row["B"], row["F"]) == (3, 0.75)
    assert search_row("s1", {"B": 2}, metrics, None)["B"] == 2  # the grid's
