"""A sweep on a real Ray head, as a cluster runs one: attached with --address and through
`ray job submit`, then the head and its temp dir are removed and every output must still be there.

The head runs in its own process group on 127.0.0.1 with token auth (single-machine mode keeps it
on loopback: docs/cluster.md, "A local Ray listens on loopback only"); the test stops only that
group and the processes naming its temp dir.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

RAY = str(Path(sys.executable).with_name("ray"))
TINY_SWEEP = {
    "data": {"dataset": "digits"},
    "space": {"name": "mobilenet", "F": 0.25, "resolution": 16, "transition_op": "3x3_MBConv6"},
    "strategy": {"arch_lr": 0.05},
    "weights": {"lr": 0.1, "batch_size": 32},
    "search": {"epochs": 1, "warmup_epochs": 1, "arch_every": 2},
    "retrain": {"epochs": 1},
    "grid": {"lambda2": [0.0, 1.0], "B": [1]},
    # the Train path; an attached cluster must say how many trials run at once; 2 search
    # epochs and 1 checkpoint kept show Train's own checkpoints being pruned
    "resources": {"workers": 1, "max_concurrent_trials": 2, "checkpoints_to_keep": 1},
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(port: int, proc: subprocess.Popen, log: Path, timeout_s: float) -> None:
    deadline = time.time() + timeout_s
    while True:
        assert proc.poll() is None, log.read_text()[-3000:]
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        assert time.time() < deadline, f"nothing listens on {port}: " + log.read_text()[-3000:]
        time.sleep(0.5)


def _run(argv: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=900, env=env)


def _submit(address: str, entrypoint: list[str], env: dict) -> subprocess.CompletedProcess:
    """`ray job submit` and wait; the head learns of its job agent a little after it listens."""
    env = {**env, "RAY_AUTH_MODE": "token"}  # `ray job` presents the token only then
    for _ in range(60):
        job = _run([RAY, "job", "submit", "--address", address, "--", *entrypoint], env)
        if "No available agent to submit job" not in job.stderr:
            break
        time.sleep(2)
    return job


def _stop(proc: subprocess.Popen, temp_dir: Path) -> None:
    """Stop the head's process group, then whatever still names its temp dir (never `ray stop`)."""
    import psutil

    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    left = []
    for p in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if any(str(temp_dir) in part for part in p.info["cmdline"] or ()):
                p.kill()
                left.append(p)
    psutil.wait_procs(left, timeout=30)


def _two_device_tables(root: Path) -> list[str]:
    """Synthetic tables of the tiny sweep's space for two devices, the phone 7x slower."""
    import dataclasses

    from nas_core.latency.synthetic import synthetic_table
    from nas_core.latency.table import LatencyEntry, LatencyTable
    from nas_core.spaces import SearchSpace

    space = SearchSpace.from_config({**TINY_SWEEP["space"], "B": 1, "num_classes": 10})
    base = synthetic_table(space)
    paths = []
    for name, scale in (("toy phone", 7.0), ("toy cpu", 1.0)):
        entries = {k: LatencyEntry(e.count, scale * e.mean, e.var) for k, e in base.entries.items()}
        path = root / f"{name.replace(' ', '-')}.parquet"
        LatencyTable(entries, dataclasses.replace(base.meta, name=name)).save(path)
        paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def cluster_runs(tmp_path_factory) -> dict:
    """Start a head; run the attached sweep, the job and a refused client side by side."""
    root = tmp_path_factory.mktemp("real-cluster")
    # short: Ray's unix socket paths under the temp dir must stay below 108 characters
    temp_dir = Path(tempfile.mkdtemp(prefix="rh-", dir="/tmp"))
    token = uuid.uuid4().hex + uuid.uuid4().hex
    gcs, dashboard, agent = _free_port(), _free_port(), _free_port()
    spec, job_spec = root / "sweep.yaml", root / "job.yaml"
    luts = _two_device_tables(root)  # two fronts and a 2 x 2 latency matrix, in two trials
    spec.write_text(
        yaml.safe_dump({**TINY_SWEEP, "grid": {"lambda2": [0.5], "B": [1], "lut": luts}})
    )
    # the job's sweep searches for one device: one Train run less for 2 cores to start
    job_spec.write_text(
        yaml.safe_dump({**TINY_SWEEP, "grid": {"lambda2": [0.5], "B": [1], "lut": luts[:1]}})
    )
    head_log = root / "head.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    head_env = {
        **env,
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # keeps 127.0.0.1 (docs/cluster.md)
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": token,
    }
    head = [RAY, "start", "--head", "--block", "--node-ip-address=127.0.0.1"]
    # 4 logical CPUs on 2 cores: both sweeps' Train workers start side by side
    head += [f"--port={gcs}", f"--temp-dir={temp_dir}", "--num-cpus=4"]
    head += ["--include-dashboard=true", "--dashboard-host=127.0.0.1"]
    # the job agent's own port: the session's local Ray may hold the default one
    head += [f"--dashboard-port={dashboard}", f"--dashboard-agent-listen-port={agent}"]
    with head_log.open("w") as log:
        proc = subprocess.Popen(
            head, env=head_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    # Ray's documented rule, as for `ray job submit`: the client presents its token in token mode
    client_env = {**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, "PYTHONUNBUFFERED": "1"}
    cli = [sys.executable, "-m", "orchestrator.cli", "sweep", "--config"]
    sweep = [*cli, str(spec)]
    attach = ["--storage-path", str(root / "runs"), "--address", f"127.0.0.1:{gcs}"]
    storage_uri = (root / "uri-runs").as_uri()  # file://: the driver's files via pyarrow.fs
    try:
        for port in (gcs, dashboard, agent):
            _wait_listening(port, proc, head_log, 120)
        with ThreadPoolExecutor(4) as pool:
            attached = pool.submit(_run, [*sweep, "--name", "attached", *attach], client_env)
            refused = pool.submit(
                _run,
                [*sweep, "--name", "refused", *attach],
                {**client_env, "RAY_AUTH_TOKEN": "not" + token},
            )
            no_mode = {k: v for k, v in client_env.items() if k != "RAY_AUTH_MODE"}
            untold = pool.submit(_run, [*sweep, "--name", "untold", *attach], no_mode)
            job = pool.submit(
                _submit,
                f"http://127.0.0.1:{dashboard}",
                [*cli, str(job_spec), "--name", "job", "--storage-path", storage_uri],
                client_env,
            )
        attached, refused, job = attached.result(), refused.result(), job.result()
        untold = untold.result()
        assert attached.returncode == 0, attached.stdout[-3000:] + attached.stderr[-3000:]
        assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    finally:
        _stop(proc, temp_dir)
        shutil.rmtree(temp_dir)  # as when the autoscaler removes a cloud node
    return {
        "attached": root / "runs" / "attached",
        "job": root / "uri-runs" / "job",
        "job_stdout": job.stdout,
        "refused": refused,
        "untold": untold,
        "temp_dir": temp_dir,
    }


DEVICES = {"attached": {"toy phone", "toy cpu"}, "job": {"toy phone"}}


@pytest.mark.parametrize("run", ["attached", "job"])
def test_every_output_survives_the_head_and_exports(cluster_runs, run: str, tmp_path) -> None:
    from orchestrator.cli import main
    from orchestrator.results import read_results

    run_dir = cluster_runs[run]
    devices = DEVICES[run]
    rows = read_results(run_dir / "results.parquet")
    assert [r["status"] for r in rows] == ["done"] * 2 * len(devices)
    retrained = [r for r in rows if r["kind"] == "retrain"]
    assert len(retrained) == len(devices)
    assert str(cluster_runs["temp_dir"]) not in json.dumps(rows)  # nothing points at the head
    for r in retrained:
        assert r["weights"].endswith(f"nets/{r['trial_id']}/weights.pt")
        net = sorted(p.name for p in (run_dir / "nets" / r["trial_id"]).iterdir())
        assert net == ["architecture.json", "retrain.json", "weights.meta.json", "weights.pt"]
        assert r["hostname"] and r["time_total_s"] > 0 and r["seed"] == 0
        out = tmp_path / f"{r['trial_id']}.onnx"
        assert (
            main(
                [
                    "export",
                    r["architecture_path"],
                    "--weights",
                    r["weights"],
                    "--format",
                    "onnx",
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
        assert out.stat().st_size > 1000
    # one Train run per search trial, named after it, in storage
    search = [r for r in rows if r["kind"] == "search"]
    runs = {p.name: p for p in (run_dir / "tune" / "train").iterdir()}
    assert set(runs) == {f"search-{r['trial_id']}" for r in search}
    for train_run in runs.values():  # 2 epochs, checkpoints_to_keep 1
        kept = [p for p in train_run.glob("checkpoint_*") if p.is_dir()]
        assert len(kept) == 1, list(train_run.iterdir())
    for name in ("sweep.yaml", "pareto.png", "summary.json", "events.jsonl"):
        assert (run_dir / name).is_file(), name
    # one front per device, and each device's net timed on every device: attached, 2 x 2
    summary = json.loads((run_dir / "summary.json").read_text())
    assert set(summary["devices"]) == devices
    assert all(d["hypervolume"] > 0 and d["front"] == 1 for d in summary["devices"].values())
    matrix = summary["latency_matrix"]
    assert set(matrix) == devices
    for cell in matrix.values():
        assert set(cell["latency_ms"]) == devices
    # rank 0's per-epoch reports (with their Train checkpoints) reached Tune
    results = list((run_dir / "tune" / f"{run}-search").glob("*/result.json"))
    assert len(results) == len(devices)
    for result in results:
        reports = [json.loads(line) for line in result.read_text().splitlines()]
        epochs = [r for r in reports if "valid/accuracy" in r]
        assert [r["epoch"] for r in epochs] == [0, 1] and "checkpoint_path" in reports[-2]
        assert all(r["alpha"] for r in epochs)  # rank 0's α per epoch: the heat-map's
    assert all(r["alpha"] for r in rows)  # the final α, in results.parquet


def test_the_attached_sweeps_devices_time_each_others_nets(cluster_runs) -> None:
    """The 2 x 2 matrix: each device's net is slower on the phone, whose table is 7x."""
    summary = json.loads((cluster_runs["attached"] / "summary.json").read_text())
    matrix = summary["latency_matrix"]
    assert len(matrix) == 2
    assert all(c["latency_ms"]["toy phone"] > c["latency_ms"]["toy cpu"] for c in matrix.values())


def test_the_job_ran_on_the_cluster_and_wrote_through_pyarrow(cluster_runs) -> None:
    out = cluster_runs["job_stdout"]
    assert "Pareto front" in out and "succeeded" in out
    rows_uri = [line for line in out.splitlines() if line.startswith("results: ")]
    assert rows_uri and rows_uri[0].split()[1].startswith("file://")


def test_a_refused_token_is_one_line_and_exit_2(cluster_runs) -> None:
    wrong = cluster_runs["refused"]
    assert wrong.returncode == 2
    assert (
        wrong.stderr.strip()
        .splitlines()[-1]
        .startswith("proxyless: error: cannot attach to the Ray cluster at 127.0.0.1:")
    )
    assert "the cluster refused this client's token" in wrong.stderr.strip().splitlines()[-1]
    assert "Traceback" not in wrong.stderr
    assert not cluster_runs["attached"].with_name("refused").exists()  # nothing written


def test_a_client_not_in_token_mode_is_told_how_to_present_its_token(cluster_runs) -> None:
    """The token is there (RAY_AUTH_TOKEN) but RAY_AUTH_MODE is not "token": Ray's rule is that
    the client then sends none (a cluster without token auth must never be sent one)."""
    untold = cluster_runs["untold"]
    assert untold.returncode == 2, untold.stderr[-3000:]
    last = untold.stderr.strip().splitlines()[-1]
    assert last.startswith("proxyless: error: cannot attach to the Ray cluster at 127.0.0.1:")
    assert "the cluster wants a token: set RAY_AUTH_MODE=token" in last
    assert "Traceback" not in untold.stderr


def test_a_cluster_that_does_not_answer_is_one_line_and_exit_2(tmp_path: Path) -> None:
    spec = tmp_path / "sweep.yaml"
    spec.write_text(yaml.safe_dump(TINY_SWEEP))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    argv = [sys.executable, "-m", "orchestrator.cli", "sweep", "--config", str(spec)]
    argv += ["--storage-path", str(tmp_path / "runs"), "--address", f"127.0.0.1:{_free_port()}"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"proxyless: error: cannot attach to the Ray cluster at {argv[-1]}: nothing answered "
        "(Connection refused); check the address (host:port of the head's GCS, e.g. "
        "10.0.0.10:6379) and that the cluster is up (`ray status` on the head)"
    ]
    assert not (tmp_path / "runs").exists()  # nothing written for a run that never started
