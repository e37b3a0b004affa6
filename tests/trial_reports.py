"""Finished trials' reports, as Tune hands them back, for tests of what the driver makes of
them: each test names the fields it checks; the others are filled in with values no such test
reads (device "unknown" is what a front calls a row without one)."""

from __future__ import annotations

import json
from typing import Any

from orchestrator.trial_report import RetrainReport, SearchReport


def searched(architecture: str, **fields: Any) -> dict[str, Any]:
    """A search trial's last report: its net `architecture` (JSON), in that net's space."""
    space = json.dumps(json.loads(architecture)["space"])
    base = {"space": space, "strategy": "gradient", "device": "unknown", "valid_accuracy": 0.5,
            "params": 1, "macs": 1, "epochs": 1}  # fmt: skip
    return SearchReport(**{**base, "architecture": architecture, **fields}).to_metrics()


def retrained(test_accuracy: float, **fields: Any) -> dict[str, Any]:
    """A retrain trial's last report; without `latency_table_ms`, its row takes the search's."""
    base = {"epochs": 1, "test_loss": 1.0, "params": 1, "macs": 1}
    return RetrainReport(**{**base, "test_accuracy": test_accuracy, **fields}).to_metrics()
