"""The main job end to end: `proxyless sweep`, interrupted and resumed.

The embedded demo's spec, cut to two grid points (one depth, λ₂ 0 and 1) and half its epochs to
fit the suite's time, runs once per module in a subprocess: it is interrupted with SIGINT right
after its first search trial finishes, then continued with `--resume`; the tests below read what
it left behind.
Search trials on Ray Train inside Tune (workers: 1) run in test_real_cluster, on a real head.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from nas_core.weights_meta import WeightsMeta
from orchestrator.results import read_results
from tests.learned_cases import SWEEP_SPEC

pytestmark = pytest.mark.slow
SPEC = SWEEP_SPEC  # the demo's spec on two grid points, with a random baseline
POINTS = 2


def _events(run_dir: Path) -> list[dict]:
    path = run_dir / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("sweeps")
    run_dir = root / "demo"
    spec = root / "sweep.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    cli = [sys.executable, "-m", "orchestrator.cli", "sweep"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with (root / "first.log").open("w") as log:
        proc = subprocess.Popen(
            [*cli, "--config", str(spec), "--storage-path", str(root)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.time() + 400
        while not any(e["event"] == "complete" for e in _events(run_dir)):
            assert proc.poll() is None, (root / "first.log").read_text()[-3000:]
            assert time.time() < deadline, "no search trial finished in time"
            time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        first_code = proc.wait(timeout=180)
    before = _events(run_dir)
    resumed = subprocess.run(
        [*cli, "--resume", str(run_dir)], capture_output=True, text=True, timeout=900, env=env
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    return {
        "run_dir": run_dir,
        "first_code": first_code,
        "before": before,
        "after": _events(run_dir)[len(before) :],
        "stdout": resumed.stdout,
        "rows": read_results(run_dir / "results.parquet"),
    }


def test_ctrl_c_leaves_a_resumable_run_and_no_finished_trial_runs_twice(demo) -> None:
    assert demo["first_code"] == 130
    finished_before = {e["trial"] for e in demo["before"] if e["event"] == "complete"}
    assert finished_before
    restarted = {e["trial"] for e in demo["after"] if e["event"] == "start"}
    assert not finished_before & restarted
    completions = defaultdict(int)
    for e in demo["before"] + demo["after"]:
        completions[e["trial"]] += e["event"] == "complete"
    assert set(completions.values()) == {1}  # every trial finished exactly once


def test_results_hold_every_search_and_retrain_trial(demo) -> None:
    rows = demo["rows"]
    search = [r for r in rows if r["kind"] == "search"]
    retrain = [r for r in rows if r["kind"] == "retrain"]
    assert len(search) == POINTS and len(retrain) == POINTS
    assert all(r["status"] == "done" for r in search + retrain)
    assert {r["search_trial_id"] for r in retrain} == {r["trial_id"] for r in search}
    assert any(r["pareto"] for r in retrain) and not any(r["pareto"] for r in search)
    for r in retrain:  # 0.94-0.97 here; 0.8 is 10 binomial SE (360 test images) below 0.94
        assert 0.8 < r["test_accuracy"] <= 1.0
        assert r["latency_measured_ms"] > 0 and r["params"] > 0 and r["macs"] > 0
        # every retrained net is in the run folder, never only in Ray's session scratch
        weights = Path(r["weights"])
        assert weights.is_file() and weights.is_relative_to(demo["run_dir"])
        meta = WeightsMeta.beside(weights)  # and so is what its weights learned, beside them
        assert meta is not None and meta.dataset == "digits"
        assert meta.metrics.test_accuracy == pytest.approx(r["test_accuracy"])
        assert Path(r["architecture_path"]).is_file()
    archs = sorted((demo["run_dir"] / "architectures").glob("*.json"))
    assert [p.stem for p in archs] == sorted(r["trial_id"] for r in search)
    assert {r["seed"] for r in rows} == {3}


def test_every_architecture_is_drawn_and_keeps_its_alpha(demo) -> None:
    """Each derived net: its final α in results.parquet, a per-layer table priced on its
    table and a drawing, beside its JSON."""
    from nas_core.arch_state import ArchState

    folder = demo["run_dir"] / "architectures"
    for r in demo["rows"]:
        if r["kind"] == "random":  # drawn, not searched: no α (test_the_random_baseline_…)
            continue
        state = ArchState.from_config(json.loads(r["alpha"]))  # retrain rows carry it too
        assert ",".join(state.argmax()) == r["ops"]  # the net is α's argmax
        name = r["search_trial_id"]
        table = (folder / f"{name}.md").read_text().splitlines()
        assert len(table) == 4 + len(state) and "latency (ms)" in table[2]
        assert (folder / f"{name}.png").stat().st_size > 1000


def test_table_latency_falls_as_lambda2_rises(demo) -> None:
    """benchmarks/bar_spread.py --only sweep, seeds 0–4 on this CPU's table: λ₂ = 0 derived
    3.24–4.15 ms, λ₂ = 1 the floor net (2.53 ms) every time, so the order holds in 5 of 5."""
    by_depth = defaultdict(list)
    for r in demo["rows"]:
        if r["kind"] == "search":
            by_depth[r["B"]].append((r["lambda2"], r["latency_table_ms"]))
    assert by_depth, "the demo sweep has no search rows"
    for points in by_depth.values():
        assert len(points) >= 2, points  # an order needs two λ₂ values
        latencies = [lat for _, lat in sorted(points)]
        # never slower with more weight on latency; the all-Zero net is a floor it may reach
        assert all(a >= b - 1e-9 for a, b in itertools.pairwise(latencies))
        assert latencies[0] > latencies[-1]


def _tensorboard(folder: Path) -> dict[str, set]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    found: dict[str, set] = defaultdict(set)
    for events in folder.rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events.parent), size_guidance={"images": 0})
        acc.Reload()
        tags = acc.Tags()
        for kind in ("scalars", "images"):
            found[kind].update(tags.get(kind, []))
        for plugin in ("hparams", "text"):
            with contextlib.suppress(KeyError):  # the file holds no summary of that plugin
                found[plugin].update(acc.PluginTagToContent(plugin))
    return found


def scalar_steps(folder: Path, tag: str) -> list[int]:
    """Every step written for `tag` under one TensorBoard run folder, in file order."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return [e.step for e in acc.Scalars(tag)]


def test_tensorboard_has_hparams_the_front_figure_and_scalars(demo) -> None:
    tb = demo["run_dir"] / "tensorboard"
    hparams = _tensorboard(tb / "hparams")
    assert "_hparams_/experiment" in hparams["hparams"]
    runs = [p for p in (tb / "hparams").iterdir() if p.is_dir()]
    retrained = [r for r in demo["rows"] if r["kind"] != "search" and r["status"] == "done"]
    assert len(runs) == len(retrained) > POINTS  # one HParams run per net, the random ones too
    assert {"hparam/test_accuracy", "hparam/latency_table_ms"} <= hparams["scalars"]
    front = _tensorboard(tb / "pareto")
    assert "pareto/front" in front["images"] and front["text"]
    search = _tensorboard(tb / "search")
    assert {"valid/accuracy", "latency/expected_ms", "arch/entropy_mean"} <= search["scalars"]
    assert "arch/probabilities" in search["images"]  # the α heat-map, also in a sweep
    assert any(tag.startswith("arch_entropy/") for tag in search["scalars"])
    assert "valid/accuracy" in _tensorboard(tb / "retrain")["scalars"]
    assert len(list((tb / "search").iterdir())) == POINTS


def test_the_run_ends_by_printing_the_front_and_the_tensorboard_command(demo) -> None:
    out = demo["stdout"]
    assert "Pareto front" in out
    assert f"tensorboard --logdir {demo['run_dir'] / 'tensorboard'}" in out
    front = [r for r in demo["rows"] if r["pareto"]]
    assert all(r["search_trial_id"] in out for r in front)  # named by their search trial
    assert (demo["run_dir"] / "pareto.png").stat().st_size > 1000


def test_the_random_baseline_is_retrained_beside_the_searched_nets(demo, capsys) -> None:
    """One uniform net and one net matched to each searched net's table latency (±5 %), each
    retrained with the same recipe and seed, never on the front; summary.json, the printed end
    and `proxyless pareto` (which redraws the figure) compare the two arms."""
    from orchestrator.cli import main

    rows, run_dir = demo["rows"], demo["run_dir"]
    searched = {r["trial_id"]: r for r in rows if r["kind"] == "search"}
    random = [r for r in rows if r["kind"] == "random"]
    assert [r["search_trial_id"] for r in random if not r.get("matched_to")] == ["random-00-000"]
    matched = {r["matched_to"]: r for r in random if r.get("matched_to")}
    assert set(matched) == set(searched)
    for name, r in matched.items():
        if r["status"] == "failed":  # a net the spread draws never reach (the all-Zero floor)
            assert "no random architecture within ±5%" in r["error"]
            continue
        target = searched[name]["latency_table_ms"]
        assert abs(r["latency_table_ms"] - target) <= 0.05 * target
    done = [r for r in random if r["status"] == "done"]
    assert len(done) >= 2 and not any(r["pareto"] for r in random)
    for r in done:
        assert 0.1 < r["test_accuracy"] <= 1.0 and r["seed"] == 3 and r["strategy"] == "random"
        assert Path(r["architecture_path"]).is_file() and Path(r["weights"]).is_file()
        assert Path(r["architecture_path"]).parent == run_dir / "architectures" / "baseline"
    pairs = sum(r.get("matched_to") is not None for r in done)
    versus = json.loads((run_dir / "summary.json").read_text())["devices"]
    (stats,) = versus.values()
    assert stats["search_vs_random"]["pairs"] == pairs
    assert len(stats["search_vs_random"]["random_nets"]) == len(done)
    assert "search vs random" in demo["stdout"]
    figure = run_dir / "pareto.png"
    figure.unlink()
    assert main(["pareto", str(run_dir)]) == 0  # redraws the front with the crosses
    assert "search vs random" in capsys.readouterr().out and figure.stat().st_size > 1000
