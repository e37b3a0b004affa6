"""Sweeps on a cluster of several Ray nodes on this machine (`tests/multinode_cluster.py`: a
head with no CPUs and two 2-CPU worker nodes), run as users run them: `proxyless sweep
--address …` in a subprocess, Train-backed. Stops only the cluster it started."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pandas as pd
import psutil
import pytest
import yaml

from nas_core.latency.table import LatencyTable
from tests.test_real_cluster import TINY_SWEEP, _run, _stop

pytestmark = pytest.mark.slow

CLUSTER = Path(__file__).with_name("multinode_cluster.py")


def _client_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}


@pytest.fixture(scope="module")
def multinode() -> dict:
    temp_dir = Path(tempfile.mkdtemp(prefix="mn-", dir="/tmp"))  # short: Ray's socket paths
    log = temp_dir / "cluster.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, str(CLUSTER), str(temp_dir), "2"],
            env=_client_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.time() + 180
        while not (temp_dir / "address").is_file():
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.time() < deadline, "the cluster did not start: " + log.read_text()[-3000:]
            time.sleep(0.5)
        yield {"address": (temp_dir / "address").read_text(), "temp_dir": temp_dir, "proc": proc}
    finally:
        _stop(proc, temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_a_stale_token_file_does_not_break_a_cluster_without_token_auth(
    multinode, tmp_path
) -> None:
    """Any earlier local `ray.init` leaves ~/.ray/auth_token. A client that turned token mode
    on because of it made every trial of this cluster "cancelled before it started running"
    (issue 31); Ray's rule (token mode only when RAY_AUTH_MODE=token) sends none."""
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text(uuid.uuid4().hex * 2)
    spec = tmp_path / "sweep.yaml"
    spec.write_text(yaml.safe_dump({**TINY_SWEEP, "grid": {"lambda2": [0.5], "B": [1]}}))
    argv = [sys.executable, "-m", "orchestrator.cli", "sweep", "--config", str(spec)]
    argv += ["--storage-path", str(tmp_path / "runs"), "--address", multinode["address"]]
    done = _run([*argv, "--name", "stale"], {**_client_env(), "HOME": str(home)})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = pd.read_parquet(tmp_path / "runs" / "stale" / "results.parquet")
    assert sorted(rows["kind"]) == ["retrain", "search"]
    assert list(rows["status"]) == ["done", "done"], rows["error"].tolist()


def test_each_phase_runs_where_its_resources_say_and_each_node_type_gets_a_front(
    multinode, tmp_path
) -> None:
    """A heterogeneous cluster's node types as custom resources. The searches' Train workers
    ask for node-1's, the retrains for node-0's, and each row (and each search epoch) names the
    node that did the work: unsteered, Ray spreads these four over both nodes (checked: the
    test fails with the requests removed). The grid's two tables are profiled on node-0 and
    node-1, each named after its label and recording its node, and give two fronts."""
    nodes = json.loads((multinode["temp_dir"] / "nodes.json").read_text())
    placed = {"search_workers": {"node-1": 0.01}, "retrain": {"node-0": 0.01}}
    resources = {**TINY_SWEEP["resources"], "node_resources": placed}
    tables = [{"profile_on": {"node-0": 1}}, {"profile_on": {"node-1": 1}}]
    spec = tmp_path / "sweep.yaml"
    grid = {"lambda2": [0.5], "B": [1], "lut": tables}
    spec.write_text(yaml.safe_dump({**TINY_SWEEP, "grid": grid, "resources": resources}))
    argv = [sys.executable, "-m", "orchestrator.cli", "sweep", "--config", str(spec)]
    argv += ["--storage-path", str(tmp_path / "runs"), "--address", multinode["address"]]
    done = _run([*argv, "--name", "placed"], {**_client_env(), "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run_dir = tmp_path / "runs" / "placed"
    rows = pd.read_parquet(run_dir / "results.parquet")
    assert list(rows["status"]) == ["done"] * 4, rows["error"].tolist()
    where = {kind: set(same["node_id"]) for kind, same in rows.groupby("kind")}
    assert where == {"search": {nodes["node-1"]}, "retrain": {nodes["node-0"]}}, (nodes, where)
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    epochs = [e for e in events if e["phase"] == "search" and e["event"] == "epoch"]
    assert len(epochs) == 4 and {e["node_id"] for e in epochs} == {nodes["node-1"]}

    for label in ("node-0", "node-1"):
        table = LatencyTable.load(run_dir / "tables" / f"{label}.parquet")
        assert table.meta.name == label
        assert table.meta.extra["profiled_on"]["node_id"] == nodes[label]
    assert sorted(rows["device"]) == ["node-0, 1 thread"] * 2 + ["node-1, 1 thread"] * 2
    summary = json.loads((run_dir / "summary.json").read_text())
    assert sorted(summary["devices"]) == ["node-0, 1 thread", "node-1, 1 thread"]


def _train_worker_pid(cluster: subprocess.Popen) -> int | None:
    """A Train worker of this test's cluster (its nodes' processes descend from the cluster's
    process), not of any other Ray on the machine."""
    for p in psutil.Process(cluster.pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if p.cmdline() and p.cmdline()[0].startswith("ray::RayTrainWorker"):
                return p.pid
    return None


def _remove_node_after_first_checkpoint(
    multinode: dict, run_dir: Path, stop: threading.Event
) -> None:
    """The test's thread: once the search's first Train checkpoint is written, has the
    cluster remove the node that runs its Train worker."""
    while not stop.is_set():
        pid = _train_worker_pid(multinode["proc"])
        if pid is not None and any((run_dir / "tune" / "train").glob("search-*/checkpoint_*")):
            (multinode["temp_dir"] / "remove").write_text(str(pid))
            os.kill(multinode["proc"].pid, signal.SIGUSR1)
            return
        stop.wait(0.1)


def _removal(temp_dir: Path, timeout_s: float = 60) -> dict:
    deadline = time.time() + timeout_s
    while not (temp_dir / "removed").is_file():
        assert time.time() < deadline, "no node was removed"
        time.sleep(0.2)
    return json.loads((temp_dir / "removed").read_text())


def test_a_lost_worker_node_is_survived_with_every_epoch_once(multinode, tmp_path) -> None:
    """The node of a search's Train worker, removed without grace after the first of four
    epochs' Train checkpoints. Train restarts the group from that checkpoint on the node left,
    or, where the node held the trial too, Tune reruns the trial and its Train run resumes:
    either way the sweep ends with every trial done and each search epoch reported once."""
    search = {"epochs": 3, "warmup_epochs": 1, "arch_every": 2}  # room to act after epoch 0
    spec = tmp_path / "sweep.yaml"
    spec.write_text(
        yaml.safe_dump({**TINY_SWEEP, "search": search, "grid": {"lambda2": [0.5], "B": [1]}})
    )
    run_dir = tmp_path / "runs" / "lost"
    argv = [sys.executable, "-m", "orchestrator.cli", "sweep", "--config", str(spec)]
    argv += ["--storage-path", str(tmp_path / "runs"), "--address", multinode["address"]]
    stop = threading.Event()
    remover = threading.Thread(
        target=_remove_node_after_first_checkpoint, args=(multinode, run_dir, stop)
    )
    remover.start()
    try:
        done = _run([*argv, "--name", "lost"], {**_client_env(), "HOME": str(tmp_path)})
    finally:
        stop.set()
        remover.join()
    removal = _removal(multinode["temp_dir"])
    assert "error" not in removal, removal
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = pd.read_parquet(run_dir / "results.parquet")
    assert list(rows["status"]) == ["done", "done"], rows["error"].tolist()
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    epochs = [e for e in events if e["phase"] == "search" and e["event"] == "epoch"]
    assert sorted(e["epoch"] for e in epochs) == [0, 1, 2, 3]  # none lost, none repeated
    # the node went mid-search: after the first checkpoint (by construction), before the last
    # epoch reached the driver
    assert removal["time"] < max(e["time"] for e in epochs)
