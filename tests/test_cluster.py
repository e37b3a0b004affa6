"""Distributed search on a local Ray (num_cpus=2, bound to 127.0.0.1)."""

from __future__ import annotations

import contextlib
import json
import re
import time
from pathlib import Path

import pytest
import torch

from nas_core.arch_state import ArchState
from nas_core.batchnorm import mixed_shard
from nas_core.data import DataConfig, build_datasets
from nas_core.evaluation import evaluate_sums
from nas_core.loader import make_loader
from nas_core.search import Searcher
from nas_core.search_config import SearchConfig, WeightConfig
from nas_core.spaces import SearchSpace
from nas_core.strategy import StrategyConfig
from nas_core.supernet import SuperNet
from tests.conftest import toy_latency_table

SPACE = {"name": "mobilenet", "B": 2, "F": 0.25, "resolution": 16, "transition_op": "3x3_MBConv6"}


def _config(
    tmp_path: Path, out: str, epochs: int = 1, warmup_epochs: int = 1, **strategy
) -> SearchConfig:
    lut = tmp_path / "toy.parquet"
    if not lut.exists():
        toy_latency_table(SearchSpace.from_config({**SPACE, "num_classes": 10})).save(lut)
    return SearchConfig(
        space=dict(SPACE),
        data=DataConfig(resolution=16),
        strategy=StrategyConfig(**{"lambda2": 0.1, "arch_lr": 0.05, **strategy}),
        weights=WeightConfig(lr=0.1),
        lut=str(lut),
        epochs=epochs,
        warmup_epochs=warmup_epochs,
        arch_every=2,
        out_dir=str(tmp_path / out),
        tensorboard=False,
    )


def _train_worker(since: float) -> int | None:
    """A Ray Train worker started after `since`."""
    import psutil

    for p in psutil.process_iter(["cmdline", "create_time"]):
        title = (p.info["cmdline"] or [""])[0]
        # create_time is derived from the boot time: up to a second early
        if title.startswith("ray::RayTrainWorker") and p.info["create_time"] >= since - 2:
            return p.pid
    return None


def _after_arch_steps(name: str, steps: int, since: float) -> int | None:
    """The Train worker, once the run's architecture actor has applied `steps` updates."""
    import ray

    try:
        version, _ = ray.get(ray.get_actor(name).alphas.remote(), timeout=10)
    # not up yet, already gone, or slow to answer on a loaded machine: ask again next poll
    except (ValueError, ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
        return None
    return _train_worker(since) if version >= steps else None


def _actor_after_checkpoints(storage: Path, count: int) -> int | None:
    """The architecture actor's process, once the run has written `count` checkpoints."""
    import psutil

    if len(list(storage.glob("checkpoint_*"))) < count:
        return None
    for p in psutil.process_iter(["cmdline"]):
        if (p.info["cmdline"] or [""])[0].startswith("ray::ArchitectureActor"):
            return p.pid
    return None


def _last_checkpoint(out: Path) -> dict:
    from nas_core.checkpoint import load_checkpoint

    checkpoints = sorted(p for p in (out / "ray" / "search").glob("checkpoint_*") if p.is_dir())
    return load_checkpoint(checkpoints[-1] / "checkpoint.pt")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, local_ray) -> dict:
    """The single-process search; the same on 1 Train worker whose worker is killed before
    the first checkpoint and whose architecture actor after it; and 2 workers."""
    from cluster.search import actor_name, run_search
    from tests.outside import Killer, Listeners

    tmp_path = tmp_path_factory.mktemp("cluster")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # Ray workers run one thread; float sums must match exactly
    try:
        local = Searcher.from_config(_config(tmp_path, "local", 2, warmup_epochs=0))
        expected = local.run()
    finally:
        torch.set_num_threads(threads)
    # the worker killed in its first epoch (arch steps, no checkpoint yet): the restarted
    # attempt must not inherit the dead one's α updates; then the actor's process after the
    # first checkpoint: the run continues from that checkpoint; both exactly as in one process
    one_config = _config(tmp_path, "one", 2, warmup_epochs=0)
    arch_actor = actor_name(str(Path(one_config.out_dir).resolve() / "ray"), "search")
    storage = Path(one_config.out_dir) / "ray" / "search"
    since = time.time()
    faults = {
        "worker": lambda: _after_arch_steps(arch_actor, 3, since),
        "actor": lambda: _actor_after_checkpoints(storage, 1),
    }
    with Killer(faults) as killer:
        one = run_search(one_config, num_workers=1)
    two_config = _config(tmp_path, "two", epochs=1)  # a warm-up epoch, then one searching
    with Listeners() as listeners:
        two = run_search(two_config, num_workers=2)
    return {
        "tmp": tmp_path,
        "local": local,
        "expected": expected,
        "one": one,
        "two": two,
        "killed": killer.killed,
        "killed_at": killer.times,
        "listening": listeners.seen,
    }


@pytest.mark.slow
def test_one_worker_killed_before_its_first_checkpoint_reproduces_the_single_process_search(
    runs,
) -> None:
    assert set(runs["killed"]) == {"worker", "actor"}  # the faults really happened, mid-run
    first = min((runs["tmp"] / "one" / "ray" / "search").glob("checkpoint_*"))
    assert runs["killed_at"]["worker"] < first.stat().st_mtime  # before any checkpoint
    assert runs["killed_at"]["actor"] > first.stat().st_mtime  # after the first
    expected, result = runs["expected"], runs["one"]
    assert result.architecture == expected.architecture
    state = json.loads((runs["tmp"] / "one" / "arch_state.json").read_text())
    for a, b in zip(
        ArchState.from_config(state).alphas, runs["local"].net.arch_state.alphas, strict=True
    ):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-5, atol=1e-6)
    assert result.valid_accuracy == pytest.approx(expected.valid_accuracy)


@pytest.mark.slow
def test_two_workers_stay_identical_and_share_the_data(runs) -> None:
    history = _last_checkpoint(runs["tmp"] / "two")["history"]
    assert len(history) == 2
    for epoch in history:  # the ranks' weights and α agree at the end of every epoch
        assert epoch["sync/weights_spread"] == 0.0 and epoch["sync/alpha_spread"] == 0.0
    # batch sizes are global: each rank takes half of each batch from its half of the data,
    # so both make as many weight and α updates per epoch as one worker does
    per_epoch_two = _last_checkpoint(runs["tmp"] / "two")["step"] / 2
    per_epoch_one = _last_checkpoint(runs["tmp"] / "one")["step"] / 2
    assert per_epoch_two == per_epoch_one
    # each rank scored its own share of the valid split (with its batches' own BN statistics,
    # as the official search scores); the sums over the ranks make the whole split's score
    last = _last_checkpoint(runs["tmp"] / "two")
    net = SuperNet(runs["local"].space)
    net.load_state_dict(last["weights"])
    net.arch_state.load_state_dict(last["arch"])
    net.set_argmax()
    valid = build_datasets(runs["local"].config.data).valid
    shards = [mixed_shard(valid, rank, 2) for rank in (0, 1)]
    sums = sum(
        evaluate_sums(net, make_loader(s, 256, False), torch.device("cpu"), bn="batch")
        for s in shards
    )
    assert sums[2] == len(valid)
    assert history[-1]["valid/accuracy"] == pytest.approx(float(sums[1] / sums[2]), abs=1e-12)
    # only the sampled path's gradients cross the process group
    supernet_bytes = sum(p.numel() * 4 for p in runs["local"].net.parameters())
    for epoch in history:
        assert 0 < epoch["sync/grad_bytes_per_step"] < supernet_bytes / 2


@pytest.mark.slow
def test_a_local_search_listens_on_loopback_only(runs) -> None:
    """Every socket that any process of the local Ray listened on while two Train workers
    searched: GCS, raylet, agents, the workers, and the workers' process group."""
    import ipaddress

    def loopback(ip: str) -> bool:  # an IPv6 socket bound to ::ffff:127.0.0.1 is loopback too
        address = ipaddress.ip_address(ip)
        return address.is_loopback or (
            address.version == 6 and address.ipv4_mapped is not None
            and address.ipv4_mapped.is_loopback
        )  # fmt: skip

    listening = runs["listening"]
    assert any(t.startswith("ray::RayTrainWorker") for t in listening.values())  # sampled live
    outside = {a: t for a, t in listening.items() if not loopback(a[0])}
    assert not outside, outside


@pytest.mark.slow
def test_a_killed_actor_restarts_the_run_from_the_last_checkpoint(runs) -> None:
    last = _last_checkpoint(runs["tmp"] / "one")
    assert [h["epoch"] for h in last["history"]] == [0, 1]  # no epoch lost or repeated
    assert runs["one"].epochs == 2 and (runs["tmp"] / "one" / "architecture.json").exists()


@pytest.mark.slow
def test_a_user_error_in_a_worker_ends_the_run_at_once_as_that_error(tmp_path, local_ray) -> None:
    """λ₂ = 1e300 turns α NaN at the first arch step: every attempt would fail alike."""
    import threading

    import ray

    from cluster.search import actor_name, run_search
    from nas_core.errors import ProxylessError

    config = _config(tmp_path, "nan", epochs=1, warmup_epochs=0, lambda2=1e300)
    name = actor_name(str(Path(config.out_dir).resolve() / "ray"), "search")
    attempts: set[int] = set()
    done = threading.Event()

    def watch() -> None:  # every attempt the run's architecture actor serves
        while not done.is_set():
            with contextlib.suppress(ValueError, ray.exceptions.RayError):  # not up, or gone
                attempts.add(ray.get(ray.get_actor(name).attempt.remote(), timeout=5))
            done.wait(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        with pytest.raises(
            ProxylessError, match=r"^architecture parameters of layer .* not finite"
        ):
            run_search(config, num_workers=1, max_failures=2)
    finally:
        done.set()
        watcher.join(timeout=10)
    assert max(attempts) == 1  # the first attempt ran and none followed it


@pytest.mark.slow
def test_a_user_error_on_the_actor_reaches_the_caller_as_its_one_line(tmp_path, local_ray) -> None:
    """latency_loss mul on a table whose nets take 0.01 ms: the actor's first update finds
    E[latency] <= 1 ms, and the run ends with that error, not the actor's traceback."""
    from cluster.search import run_search
    from nas_core.errors import ProxylessError
    from nas_core.latency.table import DeviceMeta, LatencyEntry, LatencyTable

    space = SearchSpace.from_config({**SPACE, "num_classes": 10})
    keys = space.latency_layout().all_keys()
    fast = tmp_path / "fast.parquet"
    LatencyTable({k: LatencyEntry(3, 0.01, 0.0) for k in keys}, DeviceMeta(name="fast")).save(fast)
    config = _config(tmp_path, "fast", warmup_epochs=0, latency_loss="mul", target_ms=5.0)
    config = config.replace(lut=str(fast))
    with pytest.raises(ProxylessError) as failed:
        run_search(config, num_workers=1, max_failures=2)
    assert re.fullmatch(
        r"E\[latency\] fell to 0\.\d+ ms: latency_loss mul needs .*", str(failed.value)
    )


@pytest.mark.slow
def test_a_rank_that_stops_answering_fails_the_other_with_one_line(tmp_path, local_ray) -> None:
    """SIGSTOP one of two workers mid-search: the other gives up after sync_timeout_s."""
    import signal

    from ray.train import WorkerGroupError

    from cluster.search import actor_name, run_search
    from tests.outside import Killer

    config = _config(tmp_path, "stopped", epochs=3, warmup_epochs=0)
    name = actor_name(str(Path(config.out_dir).resolve() / "ray"), "search")
    since = time.time()
    stop = {"worker": lambda: _after_arch_steps(name, 2, since)}
    with Killer(stop, sig=signal.SIGSTOP) as stopper:
        started = time.time()
        with pytest.raises(WorkerGroupError) as failed:
            run_search(config, num_workers=2, max_failures=0, sync_timeout_s=5)
    assert set(stopper.killed) == {"worker"}  # the fault really happened
    assert time.time() - started < 120  # it failed; it did not hang
    gave_up = [e for e in failed.value.worker_failures.values() if isinstance(e, TimeoutError)]
    assert len(gave_up) == 1  # the rank still running
    assert re.fullmatch(
        r"rank [01], step \d+: the other ranks did not join a collective within 5 s \(.+\)",
        str(gave_up[0]),
    )


def test_only_a_user_error_skips_the_retries() -> None:
    from ray.train import FailureConfig, WorkerGroupError
    from ray.train.v2._internal.execution.failure_handling import FailureDecision

    from cluster.failures import UserErrorsEndTheRun, user_error
    from nas_core.errors import ProxylessError

    policy = UserErrorsEndTheRun(FailureConfig(max_failures=3))
    mine = ProxylessError("loss is not finite")
    both = WorkerGroupError("…", {1: ProxylessError("rank 1 too"), 0: mine, 2: RuntimeError("x")})
    assert policy.make_decision(both) is FailureDecision.RAISE
    assert user_error(both) is mine  # the lowest rank's
    crash = WorkerGroupError("…", {0: RuntimeError("connection reset by peer")})
    assert user_error(crash) is None
    assert policy.make_decision(crash) is FailureDecision.RETRY
