"""Shipped configuration files stay loadable and safe."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from nas_core.search import load_search_config
from orchestrator.sweep_spec import demo_spec, load_sweep_spec

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "path", sorted((ROOT / "configs").glob("search_*.yaml")), ids=lambda p: p.name
)
def test_search_configs_load(path: Path) -> None:
    config = load_search_config(path)
    assert config.epochs >= 1 and config.space["name"] in ("mobilenet", "pyramid_tree")


@pytest.mark.parametrize(
    "path", sorted((ROOT / "configs").glob("sweep_*.yaml")), ids=lambda p: p.name
)
def test_sweep_specs_load(path: Path) -> None:
    spec = load_sweep_spec(path)
    assert spec.grid_points() and spec.search.epochs >= 1


def test_the_shipped_digits_sweep_is_the_embedded_demo() -> None:
    assert load_sweep_spec(ROOT / "configs" / "sweep_digits.yaml") == demo_spec()


def test_make_demo_runs_the_default_sweep() -> None:
    recipe = (ROOT / "Makefile").read_text().split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    assert "proxyless sweep" in recipe and "--config" not in recipe


@pytest.mark.parametrize(
    "path", sorted((ROOT / "cluster" / "configs").glob("*.yaml")), ids=lambda p: p.name
)
def test_cluster_launcher_configs_keep_the_dashboard_private(path: Path) -> None:
    config = yaml.safe_load(path.read_text())
    assert config["cluster_name"]
    head = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head and "--head" in head
    assert config["worker_start_ray_commands"]
