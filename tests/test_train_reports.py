"""Rank 0's Train reports forwarded to the Tune trial: every one, in order, before the trial's
own report, with the Train checkpoint's path; a report Tune refuses fails the trial."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _trial(config: dict) -> None:
    """A search trial's shape: the Train run's rounds of reports (here the callback is called
    as the Train controller calls it), then the trial's own report."""
    import torch
    from ray import train, tune

    from orchestrator.train_reports import forwarded_train_reports

    with forwarded_train_reports() as forward:
        for epoch in range(4):
            ranks = [{"epoch": epoch, "rank": 0}, {"epoch": epoch, "rank": 1}]
            checkpoint = train.Checkpoint(config["checkpoint"]) if epoch == 3 else None
            forward.after_report(None, ranks, checkpoint)
        if config["refused"]:  # Tune refuses tensors in metrics
            forward.after_report(None, [{"epoch": 4, "bad": torch.zeros(1)}], None)
    tune.report({"final": 1.0, "latest_epoch": forward.latest["epoch"]})


def test_every_report_reaches_tune_in_order_before_the_trials_own(local_ray, tmp_path) -> None:
    from ray import tune

    checkpoint = tmp_path / "checkpoint_000003"
    checkpoint.mkdir()
    tuner = tune.Tuner(
        _trial,
        param_space={"refused": tune.grid_search([False, True]), "checkpoint": str(checkpoint)},
        run_config=tune.RunConfig(storage_path=str(tmp_path / "runs"), name="forward"),
    )
    grid = tuner.fit()
    by_case = {r.config["refused"]: r for r in grid}
    history = by_case[False].metrics_dataframe
    assert list(history["epoch"].iloc[:4]) == [0, 1, 2, 3]
    assert set(history["rank"].iloc[:4]) == {0}  # rank 0's metrics only
    assert history["final"].iloc[4] == 1.0 and len(history) == 5
    assert history["latest_epoch"].iloc[4] == 3  # the trial knows rank 0's last report
    assert Path(history["checkpoint_path"].iloc[3]) == checkpoint
    assert by_case[False].error is None
    refused = by_case[True]
    assert refused.error is not None and "tensor" in str(refused.error).lower()
    assert "final" not in refused.metrics  # the trial did not go on as if all had arrived


def _resumed_trial(config: dict) -> None:
    """A rerun trial whose earlier attempt got epoch 0 to Tune and died with its node after
    rank 0's checkpoint of epoch 1: the resumed Train run reports epochs 2 and 3, its first
    report with a checkpoint whose history holds epochs 0-2."""
    from ray import train, tune

    from orchestrator.train_reports import forwarded_train_reports

    with forwarded_train_reports(had=0) as forward:
        for epoch in (2, 3):
            checkpoint = train.Checkpoint(config["checkpoint"])
            forward.after_report(None, [{"epoch": epoch, "rank": 0}], checkpoint)
    tune.report({"final": 1.0})


def test_a_rerun_reports_late_once_the_epochs_tune_never_got(local_ray, tmp_path) -> None:
    from ray import tune

    from cluster.worker import HISTORY_FILE

    checkpoint = tmp_path / "checkpoint_000002"
    checkpoint.mkdir()
    history = [{"epoch": e, "valid/accuracy": 0.5 + e / 10} for e in range(3)]
    (checkpoint / HISTORY_FILE).write_text(json.dumps(history))
    tuner = tune.Tuner(
        _resumed_trial,
        param_space={"checkpoint": str(checkpoint)},
        run_config=tune.RunConfig(storage_path=str(tmp_path / "runs"), name="resumed"),
    )
    (result,) = tuner.fit()
    assert result.error is None
    epochs = result.metrics_dataframe["epoch"].dropna().tolist()
    assert epochs == [1, 2, 3]  # epoch 0 Tune had; 1 late, in order; none twice
    assert result.metrics_dataframe["valid/accuracy"].iloc[0] == 0.6  # epoch 1's own metrics
