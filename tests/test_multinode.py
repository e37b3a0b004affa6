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
import torch
import yaml

from nas_core.latency.table import LatencyTable
from tests.test_real_cluster import TINY_SWEEP, _run, _stop

pytestmark = pytest.mark.slow

CLUSTER = Path(__file__).with_name("multinode_cluster.py")
SINGLE_MACHINE = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


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


def test_each_phase_runs_where_its_resources_say_and_each_node_type_gets_a_front(
    multinode, tmp_path
) -> None:
    """A heterogeneous cluster's node types as custom resources. The searches' Train workers
    ask for node-1's, the retrains for node-0's, and each row (and each search epoch) names the
    node that did the work: unsteered, Ray spreads these four over both nodes (checked: the
    test fails with the requests removed). The grid's two tables are profiled on node-0 and
    node-1, each named after its label and recording its node, and give two fronts.

    The client's home holds a stale token file, as any earlier local `ray.init` leaves: a
    client that turned token mode on because of it made every trial of this cluster
    "cancelled before it started running" (issue 31); Ray's rule (token mode only when
    RAY_AUTH_MODE=token) sends none."""
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text(uuid.uuid4().hex * 2)
    nodes = json.loads((multinode["temp_dir"] / "nodes.json").read_text())
    placed = {"search_workers": {"node-1": 0.01}, "retrain": {"node-0": 0.01}}
    resources = {**TINY_SWEEP["resources"], "node_resources": placed}
    tables = [{"profile_on": {"node-0": 1}}, {"profile_on": {"node-1": 1}}]
    spec = tmp_path / "sweep.yaml"
    grid = {"lambda2": [0.5], "B": [1], "lut": tables}
    spec.write_text(yaml.safe_dump({**TINY_SWEEP, "grid": grid, "resources": resources}))
    argv = [sys.executable, "-m", "orchestrator.cli", "sweep", "--config", str(spec)]
    argv += ["--storage-path", str(tmp_path / "runs"), "--address", multinode["address"]]
    done = _run([*argv, "--name", "placed"], {**_client_env(), "HOME": str(home)})
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


TRAIN_WORKER = "ray::RayTrainWorker"  # the process titles of what a test's node loss hits
TRIAL_DRIVER = "ray::ImplicitFunc"  # a Tune function trial: the search trial itself


def _pid_titled(cluster: subprocess.Popen, title: str) -> int | None:
    """A process of this test's cluster (its nodes' processes descend from the cluster's
    process), not of any other Ray on the machine, whose title starts with `title`."""
    for p in psutil.Process(cluster.pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if p.cmdline() and p.cmdline()[0].startswith(title):
                return p.pid
    return None


def _remove_node_after_first_checkpoint(
    multinode: dict, run_dir: Path, title: str, stop: threading.Event
) -> None:
    """The test's thread: once the search's first Train checkpoint is written, has the
    cluster remove the node that runs the process titled `title`."""
    while not stop.is_set():
        pid = _pid_titled(multinode["proc"], title)
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
    removed = json.loads((temp_dir / "removed").read_text())
    (temp_dir / "removed").unlink()  # the next test's removal
    return removed


def _sweep_losing_a_node(multinode: dict, tmp_path: Path, title: str) -> None:
    """A Train-backed search of four epochs whose node running `title` is removed without
    grace after the first epoch's Train checkpoint: the sweep ends with every trial done, each
    search epoch reported once, the node going mid-search, α as an in-process search of the
    same point reaches, and no placement group left on the cluster."""
    search = {"epochs": 3, "warmup_epochs": 1, "arch_every": 2}  # room to act after epoch 0
    spec = tmp_path / "sweep.yaml"
    config = {**TINY_SWEEP, "search": search, "grid": {"lambda2": [0.5], "B": [1]}}
    spec.write_text(yaml.safe_dump(config))
    run_dir = tmp_path / "runs" / "lost"
    argv = [sys.executable, "-m", "orchestrator.cli", "sweep", "--config", str(spec)]
    argv += ["--storage-path", str(tmp_path / "runs"), "--address", multinode["address"]]
    stop = threading.Event()
    remover = threading.Thread(
        target=_remove_node_after_first_checkpoint, args=(multinode, run_dir, title, stop)
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
    search_row = rows.set_index("kind").loc["search"]
    _same_alpha_as_in_process(config, run_dir, search_row["alpha"], tmp_path / "local")
    assert _live_placement_groups(multinode["address"]) == []


def _same_alpha_as_in_process(config: dict, run_dir: Path, alpha: str, out: Path) -> None:
    """The resumed search's final α equals one search of the same point in this process, on
    the table the sweep profiled: nothing of the lost attempt counted twice or went missing."""
    from nas_core.arch_state import ArchState
    from nas_core.search import Searcher
    from orchestrator.sweep_spec import SweepSpec

    point = {"lambda2": 0.5, "B": 1}
    local = SweepSpec.from_config(config).search_config(point, out_dir=str(out))
    local = local.replace(lut=str(run_dir / "latency.parquet"))
    searcher = Searcher.from_config(local)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a Train worker's one thread: float sums must match exactly
    try:
        searcher.run()
    finally:
        torch.set_num_threads(threads)
    swept = ArchState.from_config(json.loads(alpha)).alphas
    for a, b in zip(swept, searcher.net.arch_state.alphas, strict=True):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-5, atol=1e-6)


def _live_placement_groups(address: str) -> list:
    """Placement groups of the cluster not removed: a dead Train controller's would stay."""
    probe = (
        f"import json, ray; ray.init(address={address!r}, logging_level='ERROR'); "
        "print(json.dumps([g['state'] for g in ray.util.placement_group_table().values() "
        "if g['state'] != 'REMOVED']))"
    )
    # single-machine mode, as the CLI's: else Ray swaps 127.0.0.1 for this host's address
    done = _run([sys.executable, "-c", probe], {**_client_env(), SINGLE_MACHINE: "0"})
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_lost_worker_node_is_survived_with_every_epoch_once(multinode, tmp_path) -> None:
    """The node of a search's Train worker. Train restarts the group from its checkpoint on
    the node left, or, where the node held the trial too, Tune reruns the trial and its Train
    run resumes."""
    _sweep_losing_a_node(multinode, tmp_path, TRAIN_WORKER)


def test_a_lost_trial_driver_node_is_survived_with_every_epoch_once(multinode, tmp_path) -> None:
    """The node of the search trial itself (the Tune actor that owns the Train controller, the
    architecture actor and the report queue, which die with it): Tune reruns the trial, and its
    Train run resumes from its own last checkpoint."""
    _sweep_losing_a_node(multinode, tmp_path, TRIAL_DRIVER)
