"""Distributed search on a local Ray (num_cpus=2, bound to 127.0.0.1)."""

from __future__ import annotations

import json
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


@pytest.mark.slow
def test_one_worker_reproduces_the_single_process_search(tmp_path: Path, local_ray) -> None:
    from cluster.search import run_search

    def config(out: str) -> SearchConfig:
        return _config(tmp_path, out)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # Ray workers run one thread; float sums must match exactly
    try:
        local = Searcher(config("local"))
        expected = local.run()
    finally:
        torch.set_num_threads(threads)
    result = run_search(config("ray"), num_workers=1)
    assert result.architecture == expected.architecture
    alphas = ArchState.from_config(json.loads((tmp_path / "ray" / "arch_state.json").read_text()))
    for a, b in zip(alphas.alphas, local.net.arch.alphas, strict=True):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-5, atol=1e-6)
    assert result.valid_accuracy == pytest.approx(expected.valid_accuracy)


@pytest.mark.slow
def test_two_workers_stay_identical_every_step(tmp_path: Path, local_ray) -> None:
    from cluster.search import run_search

    result = run_search(_config(tmp_path, "two"), num_workers=2, debug={"check_sync": True})
    metrics = result.history[-1]
    assert metrics["sync/weights_spread"] == 0.0  # averaged over steps, all spreads are >= 0
    assert metrics["sync/alpha_spread"] == 0.0
    assert metrics["sync/actor_mean_error"] < 1e-6  # the actor applied the mean of both signals
    assert result.epochs == 2
    # each rank trained on its own half of the data: half the steps of one worker
    from nas_core.checkpoint import load_checkpoint

    run_search(_config(tmp_path, "one"), num_workers=1)

    def steps(out: str) -> int:
        ckpts = sorted(
            p for p in (tmp_path / out / "ray" / "search").glob("checkpoint_*") if p.is_dir()
        )
        return load_checkpoint(ckpts[-1] / "checkpoint.pt")["step"]

    assert steps("two") * 2 == pytest.approx(steps("one"), abs=2)


@pytest.mark.slow
def test_a_killed_worker_restarts_from_the_last_checkpoint(tmp_path: Path, local_ray) -> None:
    from cluster.search import run_search
    from nas_core.checkpoint import load_checkpoint

    config = _config(tmp_path, "crash", epochs=2)
    result = run_search(config, num_workers=2, debug={"crash_once_at_epoch": 1})
    out = Path(config.out_dir)
    assert (out / "crashed-once").exists()  # the fault really happened
    checkpoints = sorted(p for p in (out / "ray" / "search").glob("checkpoint_*") if p.is_dir())
    last = load_checkpoint(checkpoints[-1] / "checkpoint.pt")
    assert [h["epoch"] for h in last["history"]] == [0, 1, 2]  # no epoch lost or repeated
    assert result.epochs == 3 and (out / "architecture.json").exists()
