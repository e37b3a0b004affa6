"""Shipped configuration files stay loadable and safe."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from nas_core.search_config import load_search_config
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


def test_paper_configs_run_the_official_search_settings() -> None:
    """The values of mit-han-lab/ProxylessNAS search/imagenet_arch_search.py (see the files)."""
    sweep = load_sweep_spec(ROOT / "configs" / "sweep_imagenet.yaml")
    grad = load_search_config(ROOT / "configs" / "search_imagenet.yaml")
    rl = load_search_config(ROOT / "configs" / "search_imagenet_reinforce.yaml")
    for c in (grad, rl, sweep):
        w = c.weights
        assert (w.lr, w.warmup_lr, w.batch_size, w.init) == (0.025, 0.05, 256, "he_fout")
        assert not w.zero_init_residual  # our remedy, off for the paper's setting
        assert (w.momentum, w.nesterov, w.weight_decay, w.label_smoothing) == (0.9, True, 4e-5, 0.1)
        schedule = c.search if c is sweep else c
        assert (schedule.epochs, schedule.warmup_epochs, schedule.arch_start_epoch) == (120, 40, 1)
        assert c.strategy.arch_lr == 0.001 and tuple(c.strategy.arch_betas) == (0.0, 0.999)
    for c in (grad, sweep):
        s = c.strategy
        assert (s.name, s.grad_mode, s.latency_loss) == ("gradient", "full", "mul")
        schedule = c.search if c is sweep else c
        assert (schedule.arch_every, schedule.arch_batch_size) == (5, 256)
    assert grad.strategy.lambda2 == 0.3  # β of mul#log
    s = rl.strategy
    assert (s.name, s.samples, s.eval_batch_size, s.updates_per_epoch) == (
        "reinforce",
        10,
        1000,
        300,
    )
    assert (s.baseline, s.baseline_decay, s.lambda2) == ("official", 0.99, 0.1)


def test_the_shipped_digits_sweep_is_the_embedded_demo() -> None:
    assert load_sweep_spec(ROOT / "configs" / "sweep_digits.yaml") == demo_spec()


def test_make_demo_runs_the_default_sweep() -> None:
    recipe = (ROOT / "Makefile").read_text().split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    assert "proxyless sweep" in recipe and "--config" not in recipe


LAUNCHER_CONFIGS = sorted((ROOT / "cluster" / "configs").glob("*.yaml"))


def test_ray_schema_validation_rejects_a_broken_config() -> None:
    import jsonschema

    config = yaml.safe_load(LAUNCHER_CONFIGS[0].read_text())
    config["head_start_ray_commands"] = "ray start --head"  # a string where a list belongs
    with pytest.raises(jsonschema.ValidationError):
        _launcher_config(config)


def _launcher_config(config: dict) -> dict:
    """The config as `ray up` sees it: Ray's own defaults filled in, then its schema checked."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = prepare_config(config)
    validate_config(config)
    return config


@pytest.mark.parametrize("path", LAUNCHER_CONFIGS, ids=lambda p: p.name)
def test_cluster_launcher_configs_bring_up_a_private_token_cluster(path: Path) -> None:
    import ray

    config = _launcher_config(yaml.safe_load(path.read_text()))
    head = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head and "--head" in head
    assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in head  # or workers never join
    assert "--num-cpus=0" in head  # trial drivers and actors run on the workers
    for command in config["head_start_ray_commands"] + config["worker_start_ray_commands"]:
        if "ray start" in command:
            assert command.startswith("RAY_AUTH_MODE=token ray start"), command
    mounts = config["file_mounts"]
    assert mounts["~/.ray/auth_token"] == "~/.ray/auth_token"  # one token on every node
    assert mounts["~/proxyless-tune"] == "."  # the code the setup installs
    setup = " ".join(config["setup_commands"])
    assert f"'ray[default,tune]=={ray.__version__}'" in setup  # the client's Ray, and jobs
    assert "pip install -e ~/proxyless-tune" in setup
    assert "mount -t nfs" in setup  # shared storage for storage_path


def test_the_cluster_extra_pins_the_clients_ray() -> None:
    import ray
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert f"ray[default,tune]=={ray.__version__}" in project["optional-dependencies"]["cluster"]
