"""The sweep's progress lines: which trial of how many, and the time left."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from ray.tune.experiment import Trial

from orchestrator.sweep import SweepLog


def test_progress_lines_say_trial_k_of_n_and_the_time_left(tmp_path: Path, caplog) -> None:
    trials = [Trial("search", stub=True, config={"lambda2": x}) for x in (0.0, 0.1, 1.0, 2.0)]
    progress = SweepLog(str(tmp_path), "search")
    for t in trials:
        progress.on_trial_start(0, trials, t)
    with caplog.at_level(logging.INFO, logger="proxyless"):
        result = {"epoch": 0, "valid/accuracy": 0.5, "latency/expected_ms": 2.0}
        progress.on_trial_result(0, trials, trials[1], result)
        trials[0].set_status(Trial.TERMINATED)
        progress.on_trial_complete(0, trials, trials[2])
    lines = [r.getMessage() for r in caplog.records]
    assert f"search trial 2 of 4 ({trials[1].trial_id}) epoch 1: valid acc 0.500" in lines[0]
    assert f"search trial 3 of 4 ({trials[2].trial_id}) finished, 2 of 4 done" in lines[1]
    assert lines[1].endswith("min left")
    state = progress.__getstate__()  # a resumed driver times its own pace
    assert state["_started"] is None and state["_writers"] == {}


@pytest.fixture(autouse=True)
def _propagate():
    """`cli_logging` may have stopped the proxyless logger propagating to caplog's handler."""
    logger = logging.getLogger("proxyless")
    saved = logger.propagate
    logger.propagate = True
    yield
    logger.propagate = saved
