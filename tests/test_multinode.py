"""Sweeps on a cluster of several Ray nodes on this machine (`tests/multinode_cluster.py`: a
head with no CPUs and two 2-CPU worker nodes), run as users run them: `proxyless sweep
--address …` in a subprocess, Train-backed. Stops only the cluster it started."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest
import yaml

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
        yield {"address": (temp_dir / "address").read_text()}
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
