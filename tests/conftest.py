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
    """A deterministic table for `space` (see nas_core.latency.synthetic)."""
    from nas_core.latency.synthetic import synthetic_table

    return synthetic_table(space)


@pytest.fixture(scope="session")
def local_ray():
    """One local Ray (2 CPUs, bound to 127.0.0.1) shared by every Ray test of the session."""
    import ray

    from cluster.connect import ensure_ray

    ensure_ray(num_cpus=2)
    yield
    ray.shutdown()
