"""Faults during a sweep: NaN, killed trial processes, and where local Ray listens."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

TINY = {
    "space": {"name": "mobilenet", "F": 0.25, "resolution": 16, "transition_op": "3x3_MBConv6"},
    "strategy": {"arch_lr": 0.05},
    "weights": {"lr": 0.1, "batch_size": 32},
    "search": {"epochs": 1, "warmup_epochs": 1, "arch_every": 2},
    "retrain": {"epochs": 2},
    "grid": {"B": [1]},
    "resources": {"workers": 0},
}


def _events(run_dir: Path) -> list[dict]:
    import json

    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


def test_nan_stops_only_its_own_trial_with_the_reason_in_its_row(tmp_path: Path, local_ray):
    from orchestrator.results import read_results
    from orchestrator.sweep import run_sweep
    from orchestrator.sweep_spec import SweepSpec

    # λ₂ = 1e300 overflows float32: the latency loss is inf and α would turn NaN
    spec = SweepSpec.from_config(
        {**TINY, "name": "nan", "storage_path": str(tmp_path), "grid": {"lambda2": [0.0, 1e300]}}
    )
    outcome = run_sweep(spec, echo=lambda text: None)
    rows = read_results(outcome.run_dir / "results.parquet")
    search = {r["lambda2"]: r for r in rows if r["kind"] == "search"}
    assert search[1e300]["status"] == "failed"
    assert "not finite" in search[1e300]["error"] and search[1e300]["architecture"] is None
    assert search[0.0]["status"] == "done"
    retrain = [r for r in rows if r["kind"] == "retrain"]
    assert [r["search_trial_id"] for r in retrain] == [search[0.0]["trial_id"]]
    assert retrain[0]["status"] == "done" and retrain[0]["pareto"]


def test_killed_search_and_retrain_trials_restart_and_the_table_is_complete(
    tmp_path: Path, local_ray
):
    from orchestrator.results import read_results
    from orchestrator.sweep import run_sweep
    from orchestrator.sweep_spec import SweepSpec

    spec = SweepSpec.from_config(
        {**TINY, "name": "kill", "storage_path": str(tmp_path), "grid": {"lambda2": [0.5]}}
    )
    faults = {"kill_once_after_epoch": 0, "marker_dir": str(tmp_path / "markers")}
    outcome = run_sweep(spec, echo=lambda text: None, debug=faults)
    assert sorted(p.name for p in (tmp_path / "markers").iterdir()) == ["retrain", "search"]
    rows = read_results(outcome.run_dir / "results.parquet")
    assert [(r["kind"], r["status"]) for r in rows] == [("search", "done"), ("retrain", "done")]
    assert rows[0]["epochs"] == 2 and rows[1]["epochs"] == 2  # no epoch lost
    events = _events(outcome.run_dir)
    for phase in ("search", "retrain"):
        kinds = [e["event"] for e in events if e["phase"] == phase]
        assert kinds.count("complete") == 1 and kinds.count("start") >= 2


def test_local_ray_listens_on_loopback_only(local_ray) -> None:
    import psutil
    import ray

    nodes = ray.nodes()
    assert [n["NodeManagerAddress"] for n in nodes] == ["127.0.0.1"]
    assert ray.get_runtime_context().gcs_address.startswith("127.0.0.1:")
    servers = [
        p for p in psutil.process_iter(["name"]) if p.info["name"] in ("gcs_server", "raylet")
    ]
    assert len(servers) >= 2
    listening = [
        c.laddr.ip
        for p in servers
        for c in p.net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN
    ]
    assert listening and all(ip in ("127.0.0.1", "::ffff:127.0.0.1") for ip in listening), listening
