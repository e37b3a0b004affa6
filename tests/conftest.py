"""Shared test settings: tiny space variants and the official fixtures (skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"

# One tiny setting per registered space; test_spaces checks every space has one.
SMALL_SPACES: dict[str, dict] = {
    "mobilenet": {"B": 1, "F": 0.5, "resolution": 32, "num_classes": 10},
    "pyramid_tree": {"B": 1, "F": 64, "resolution": 32, "num_classes": 10},
}


@pytest.fixture
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.skip("../shared/fixtures is absent")
    return FIXTURES


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)


def toy_latency_table(space):
    """A deterministic table for `space`: MBConv cost grows with kernel × expand, rest 1 ms."""
    from nas_core.latency.keys import parse_key
    from nas_core.latency.table import DeviceMeta, LatencyEntry, LatencyTable

    def cost(key: str) -> float:
        f = parse_key(key)
        if f["kind"] == "expanded_conv":
            return int(f["kernel"]) * int(f["expand"]) / 10
        if f["kind"] == "tree_edge":
            return {"identity": 0.01, "3x3_AvgPool": 0.1, "3x3_MaxPool": 0.1}.get(f["op"], 0.5)
        return 1.0

    keys = space.latency_layout().all_keys()
    return LatencyTable({k: LatencyEntry(3, cost(k), 0.0) for k in keys}, DeviceMeta(name="toy"))
