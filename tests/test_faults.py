"""Faults during a sweep: NaN, killed trial processes, and where local Ray listens."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

TINY = {
    "space": {"name": "mobilenet", "F": 0.25, "resolution": 16, "transition_op": "3x3_MBConv6"},
    "strategy": {"arch_lr": 0.05},
    "weights": {"lr": 0.1, "batch_size": 32},
    # long enough that a kill after the first epoch lands before the trial ends
    "search": {"epochs": 2, "warmup_epochs": 1, "arch_every": 2},
    "retrain": {"epochs": 3},
    "grid": {"B": [1]},
    "resources": {"workers": 0},
}


PHASES = ("search", "retrain")
KILLED = {"search": {"lambda2": 0.5}, "retrain": {}}  # the trial of each phase killed once


def _events(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


def _checkpointed_pid(run_dir: Path, phase: str, params: dict) -> int | None:
    """The process of the running `phase` trial with `params`, once Tune has recorded the
    checkpoint of its first epoch (events.jsonl); before that a kill would restart it from
    scratch, which is not the fault under test."""
    path = run_dir / "events.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    events = [json.loads(line) for line in lines if line.endswith("}")]  # the last may be half
    ours = {
        e["trial"]
        for e in events
        if e["phase"] == phase and e["event"] == "start" and params.items() <= e["params"].items()
    }
    ended = {e["trial"] for e in events if e["event"] in ("complete", "error")}
    for e in events:
        if e["event"] == "checkpoint" and e["trial"] in ours - ended and e["epoch"] == 0:
            return e["pid"]
    return None


@pytest.fixture(scope="module")
def faulty_sweep(tmp_path_factory, local_ray) -> dict:
    """One sweep with every fault at once: a NaN trial, and each phase's process killed once
    (from outside, after its first reported epoch).

    λ₂ = 1e300 overflows float32: the latency loss is inf and α would turn NaN.
    """
    from orchestrator.results import read_results
    from orchestrator.sweep import run_sweep
    from orchestrator.sweep_spec import SweepSpec
    from tests.outside import Killer

    root = tmp_path_factory.mktemp("faults")
    spec = SweepSpec.from_config(
        {**TINY, "name": "faults", "storage_path": str(root), "grid": {"lambda2": [0.5, 1e300]}}
    )
    run_dir = root / "faults"
    targets = {p: lambda p=p: _checkpointed_pid(run_dir, p, KILLED[p]) for p in PHASES}
    with Killer(targets) as killer:
        outcome = run_sweep(spec)
    rows = read_results(outcome.run_dir / "results.parquet")
    return {
        "outcome": outcome,
        "rows": rows,
        "events": _events(outcome.run_dir),
        "killed": killer.killed,
    }


def test_nan_stops_only_its_own_trial_with_the_reason_in_its_row(faulty_sweep) -> None:
    rows = faulty_sweep["rows"]
    search = {r["lambda2"]: r for r in rows if r["kind"] == "search"}
    assert search[1e300]["status"] == "failed"
    assert "not finite" in search[1e300]["error"] and search[1e300]["architecture"] is None
    assert search[0.5]["status"] == "done"
    retrain = [r for r in rows if r["kind"] == "retrain"]
    assert [r["search_trial_id"] for r in retrain] == [search[0.5]["trial_id"]]
    assert retrain[0]["status"] == "done" and retrain[0]["pareto"]
    assert not faulty_sweep["outcome"].interrupted


def test_killed_search_and_retrain_trials_restart_and_the_table_is_complete(faulty_sweep):
    rows = faulty_sweep["rows"]
    assert set(faulty_sweep["killed"]) == set(PHASES)  # the faults really happened
    done = [r for r in rows if r["status"] == "done"]
    assert [(r["kind"], r["epochs"]) for r in done] == [("search", 3), ("retrain", 3)]
    assert len(rows) == 3  # both searches and the one retrain: nothing lost, nothing doubled
    events = faulty_sweep["events"]
    for phase in PHASES:
        kinds = [e["event"] for e in events if e["phase"] == phase]
        trials = {e["trial"] for e in events if e["phase"] == phase}
        assert kinds.count("complete") == len(trials)  # each trial finished exactly once
        (killed,) = {
            e["trial"]
            for e in events
            if e["phase"] == phase
            and e["event"] == "start"
            and e["params"].items() >= KILLED[phase].items()
        }
        starts = [e for e in events if e["trial"] == killed and e["event"] == "start"]
        assert len(starts) == 2  # the killed trial ran again, once


def test_a_killed_retrain_resumes_at_the_next_epoch_and_reports_once(faulty_sweep) -> None:
    from tests.test_sweep import scalar_steps

    run_dir = faulty_sweep["outcome"].run_dir
    (retrain,) = [r for r in faulty_sweep["rows"] if r["kind"] == "retrain"]
    (trial_dir,) = (run_dir / "tune" / "faults-retrain").glob(f"*{retrain['trial_id']}*")
    reports = [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines()]
    epochs = [(r["epoch"], r["iterations_since_restore"]) for r in reports if "valid/accuracy" in r]
    # killed after epoch 0's checkpoint: the restarted process's first report is a later
    # epoch, and no epoch is reported twice (Tune's own result.json may lose the lines the
    # killed process sent, epoch 0's among them; TensorBoard below has every epoch)
    resumed = [e for e, since in epochs if since == 1 and e >= 1]
    assert len(resumed) == 1, epochs
    assert len({e for e, _ in epochs}) == len(epochs)
    assert [r.get("done") for r in reports].count(1) == 1
    tb = run_dir / "tensorboard" / "retrain" / retrain["trial_id"]
    steps = scalar_steps(tb, "valid/accuracy")
    assert steps[-1] == 2 and len(set(steps)) == len(steps)  # no point written twice
    assert Path(retrain["weights"]).is_file()


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


def test_a_sweep_that_retrains_no_net_exits_1_and_says_so(
    tmp_path: Path, local_ray, capsys
) -> None:
    """Its only search turns non-finite, so no net is retrained and there is no front: the row
    keeps the reason, and the exit status tells a script the sweep produced nothing (it used to
    be 0)."""
    import yaml

    from orchestrator.cli import main
    from orchestrator.results import read_results

    config = {**TINY, "name": "nothing", "grid": {"lambda2": [1e300]}}
    config["search"] = {**TINY["search"], "epochs": 1}
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(config))
    argv = ["sweep", "--config", str(tmp_path / "sweep.yaml"), "--storage-path", str(tmp_path)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "no net was retrained, so there is no front" in err and "results.parquet" in err
    (row,) = read_results(tmp_path / "nothing" / "results.parquet")
    assert row["status"] == "failed" and "not finite" in row["error"]
