"""Distributed search on a local Ray (num_cpus=2, bound to 127.0.0.1)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from nas_core.arch_state import ArchState
from nas_core.data import DataConfig
from nas_core.search import SearchConfig, Searcher, WeightConfig
from nas_core.spaces import SearchSpace
from nas_core.strategy import StrategyConfig
from tests.conftest import toy_latency_table

SPACE = {"name": "mobilenet", "B": 2, "F": 0.25, "resolution": 16, "transition_op": "3x3_MBConv6"}


def _config(tmp_path: Path, out: str, epochs: int = 1, **strategy) -> SearchConfig:
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
        warmup_epochs=1,
        arch_every=2,
        out_dir=str(tmp_path / out),
        tensorboard=False,
    )


def _train_worker(storage: Path, since: float) -> int | None:
    """A Ray Train worker started after `since`, once the run's first checkpoint is in `storage`."""
    import psutil

    if not any(storage.glob("checkpoint_*")):
        return None
    for p in psutil.process_iter(["cmdline", "create_time"]):
        title = (p.info["cmdline"] or [""])[0]
        # create_time is derived from the boot time: up to a second early
        if title.startswith("ray::RayTrainWorker") and p.info["create_time"] >= since - 2:
            return p.pid
    return None


def _last_checkpoint(out: Path) -> dict:
    from nas_core.checkpoint import load_checkpoint

    checkpoints = sorted(p for p in (out / "ray" / "search").glob("checkpoint_*") if p.is_dir())
    return load_checkpoint(checkpoints[-1] / "checkpoint.pt")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, local_ray) -> dict:
    """The single-process search, the same on 1 Train worker, and 2 workers, one killed."""
    from cluster.search import run_search
    from tests.outside import Killer

    tmp_path = tmp_path_factory.mktemp("cluster")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # Ray workers run one thread; float sums must match exactly
    try:
        local = Searcher(_config(tmp_path, "local"))
        expected = local.run()
    finally:
        torch.set_num_threads(threads)
    one = run_search(_config(tmp_path, "one"), num_workers=1)
    two_config = _config(tmp_path, "two", epochs=2)
    storage = Path(two_config.out_dir) / "ray" / "search"
    since = time.time()
    with Killer({"worker": lambda: _train_worker(storage, since)}) as killer:
        two = run_search(two_config, num_workers=2)
    return {
        "tmp": tmp_path,
        "local": local,
        "expected": expected,
        "one": one,
        "two": two,
        "killed": killer.killed,
    }


@pytest.mark.slow
def test_one_worker_reproduces_the_single_process_search(runs) -> None:
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
    assert len(history) == 3
    for epoch in history:  # the ranks' weights and α agree at the end of every epoch
        assert epoch["sync/weights_spread"] == 0.0 and epoch["sync/alpha_spread"] == 0.0
    # each rank trained on its own half of the data: half the steps per epoch of one worker
    per_epoch_two = _last_checkpoint(runs["tmp"] / "two")["step"] / 3
    per_epoch_one = _last_checkpoint(runs["tmp"] / "one")["step"] / 2
    assert per_epoch_two * 2 == pytest.approx(per_epoch_one, abs=2)


@pytest.mark.slow
def test_a_killed_worker_restarts_from_the_last_checkpoint(runs) -> None:
    assert set(runs["killed"]) == {"worker"}  # the fault really happened, mid-run
    last = _last_checkpoint(runs["tmp"] / "two")
    assert [h["epoch"] for h in last["history"]] == [0, 1, 2]  # no epoch lost or repeated
    assert runs["two"].epochs == 3 and (runs["tmp"] / "two" / "architecture.json").exists()
