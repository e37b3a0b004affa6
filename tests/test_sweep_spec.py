"""SweepSpec: YAML → validated spec, grid expansion, one-line errors for bad sweeps."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from nas_core.errors import ProxylessError
from orchestrator.cli import main
from orchestrator.sweep_spec import DEMO_SPEC, SweepSpec, demo_spec, load_sweep_spec


def test_round_trip_keeps_every_field() -> None:
    spec = demo_spec()
    again = SweepSpec.from_config(spec.to_config())
    assert again == spec
    fixed = SweepSpec.from_config(
        {**DEMO_SPEC, "pareto_reference": {"pixel1": {"accuracy": 0.5, "latency_ms": 80}}}
    )
    assert SweepSpec.from_config(fixed.to_config()) == fixed
    assert fixed.pareto_reference["pixel1"].latency_ms == 80
    assert yaml.safe_load(yaml.safe_dump(spec.to_config())) == spec.to_config()


def test_grid_points_are_the_product_of_the_axes() -> None:
    spec = demo_spec()
    points = spec.grid_points()
    assert len(points) == 3 * 2 * 1
    assert {(p["lambda2"], p["B"]) for p in points} == {
        (lam, b) for lam in DEMO_SPEC["grid"]["lambda2"] for b in (2, 3)
    }


def test_a_trial_config_takes_its_knobs_from_the_grid_point() -> None:
    spec = demo_spec()
    config = spec.search_config({"lambda2": 0.7, "B": 3, "F": 0.75}, out_dir="x")
    assert config.strategy.lambda2 == 0.7
    assert config.space["B"] == 3 and config.space["F"] == 0.75
    assert config.epochs == spec.search.epochs and config.seed == spec.seed
    assert config.out_dir == "x" and config.tensorboard is False


def test_a_seed_axis_repeats_search_and_retrain_with_that_seed() -> None:
    spec = SweepSpec.from_config({**DEMO_SPEC, "seed": 7, "grid": {"seed": [0, 1, 2]}})
    assert [p["seed"] for p in spec.grid_points()] == [0, 1, 2]
    assert spec.search_config({"seed": 2}, out_dir="x").seed == 2
    assert spec.search_config({}, out_dir="x").seed == 7  # no axis: the spec's own seed
    assert spec.retrain_config(2).seed == 2 and spec.retrain_config().seed == 7
    assert SweepSpec.from_config(spec.to_config()) == spec


def test_a_distribution_axis_becomes_a_tune_domain() -> None:
    from ray.tune.search.sample import Float

    spec = SweepSpec.from_config({**DEMO_SPEC, "grid": {"lambda2": {"loguniform": [0.01, 2]}}})
    assert isinstance(spec.param_space()["lambda2"], Float)
    assert spec.to_config()["grid"]["lambda2"] == {"loguniform": [0.01, 2]}


def test_relative_paths_resolve_against_the_current_folder(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    spec = SweepSpec.from_config({**DEMO_SPEC, "grid": {"lut": ["tables/t.parquet", None]}})
    assert spec.tables() == [str(tmp_path / "tables" / "t.parquet"), None]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"colour": "red"}, "colour: unknown key"),
        ({"grid": {"depth": [1]}}, "grid.depth: must be one of 'lambda2'"),
        ({"grid": {"lambda2": []}}, "grid.lambda2: needs at least one value"),
        ({"grid": {"lambda2": [-1.0]}}, "strategy.lambda2"),
        ({"grid": {"lambda2": ["fast"]}}, "strategy.lambda2"),
        ({"grid": {"B": {"uniform": [1, 4]}}}, "only lambda2 and target_ms"),
        ({"grid": {"lambda2": {"gauss": [0, 1]}}}, "unknown distribution"),
        ({"grid": {"lambda2": {"uniform": [2, 1]}}}, "low must be < high"),
        ({"grid": {"lambda2": {"loguniform": [0, 1]}}}, "low must be > 0"),
        ({"grid": {"target_ms": [0]}}, "strategy.target_ms"),
        ({"grid": {"F": [0]}}, "F"),
        ({"grid": {"lut": [""]}}, "lut: expected table paths"),
        ({"grid": {"seed": [0, 0]}}, "seed: expected distinct integers"),
        ({"grid": {"seed": [1.5]}}, "seed: expected distinct integers"),
        ({"grid": {"seed": [-1]}}, "seed: expected distinct integers"),
        ({"grid": {"seed": {"randint": [0, 9]}}}, "only lambda2 and target_ms"),
        ({"resources": {"workers": -1}}, "resources.workers"),
        ({"resources": {"workers": 1.5}}, "resources.workers"),
        ({"resources": {"gpus_per_worker": 1}}, "but device is cpu"),
        ({"resources": {"max_concurrent_trials": 0}}, "max_concurrent_trials"),
        ({"retrain": {"epochs": 0}}, "retrain.epochs"),
        ({"retrain": {"optimizer": "adam"}}, "retrain.optimizer: unknown key"),
        ({"search": {"epochs": 0}}, "epochs"),
        ({"search": {"lr": 0.1}}, "search.lr: unknown key"),
        ({"num_samples": 0}, "num_samples"),
        ({"name": "a/b"}, "name"),
        ({"pareto_latency": "fastest"}, "pareto_latency"),
        ({"pareto_reference": {"pixel1": {"latency_ms": 0}}}, "pareto_reference.pixel1.latency_ms"),
        ({"pareto_reference": {"pixel1": {"accuracy": 2, "latency_ms": 80}}}, "accuracy"),
        ({"data": {"dataset": "mnist"}}, "data.dataset"),
        ({"space": {"name": "resnet"}}, "resnet"),
        ({"space": [1, 2]}, "space: must be a mapping"),
        ({"strategy": {"name": "evolution"}}, "strategy.name"),
    ],
)
def test_bad_sweeps_fail_with_one_line(change: dict, message: str) -> None:
    with pytest.raises(ProxylessError) as err:
        SweepSpec.from_config({**DEMO_SPEC, **change})
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_the_cli_names_the_file_and_exits_2(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "sweep.yaml"
    bad.write_text(yaml.safe_dump({**DEMO_SPEC, "grid": {"lambda2": [-0.5]}}))
    assert main(["sweep", "--config", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("proxyless: error: ") and str(bad) in err
    assert len(err.splitlines()) == 1
    assert main(["sweep", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_resume_needs_a_run_folder(tmp_path: Path, capsys) -> None:
    assert main(["sweep", "--resume", str(tmp_path / "nothing")]) == 2
    assert "sweep.yaml" in capsys.readouterr().err


def test_a_run_folder_refuses_a_different_sweep(tmp_path: Path) -> None:
    from orchestrator.sweep import prepare_run_dir

    spec = demo_spec().with_name("x", str(tmp_path))
    assert prepare_run_dir(spec, resume=False) == spec
    assert load_sweep_spec(tmp_path / "x" / "sweep.yaml") == spec
    assert prepare_run_dir(spec, resume=False) == spec  # the same sweep again: continue it
    other = SweepSpec.from_config({**spec.to_config(), "seed": 1})
    with pytest.raises(ProxylessError, match="holds a different sweep"):
        prepare_run_dir(other, resume=False)


def test_two_tables_of_one_device_are_refused(tmp_path: Path) -> None:
    """A device has one front: two tables of it would mix their milliseconds on it."""
    import dataclasses

    from nas_core.latency.synthetic import synthetic_table
    from nas_core.latency.table import LatencyTable
    from orchestrator.sweep import prepare_tables

    spec = SweepSpec.from_config({**DEMO_SPEC, "grid": {"B": [2]}})
    base = synthetic_table(spec.search_config({}, out_dir="x").build_space(10))
    paths = []
    for threads in (1, 2, 2):
        meta = dataclasses.replace(base.meta, name="EPYC", kind="cpu", threads=threads)
        paths.append(tmp_path / f"t{len(paths)}.yaml")
        LatencyTable(base.entries, meta).save(paths[-1])
    assert LatencyTable.load(paths[1]).meta.device == "EPYC, 2 threads"
    assert LatencyTable.load(paths[0]).meta.device == "EPYC, 1 thread"
    two = SweepSpec.from_config({**spec.to_config(), "grid": {"lut": [str(p) for p in paths[:2]]}})
    assert set(t.meta.device for t in prepare_tables(two, tmp_path).values()) == {
        "EPYC, 1 thread",
        "EPYC, 2 threads",
    }
    same = SweepSpec.from_config({**spec.to_config(), "grid": {"lut": [str(p) for p in paths[1:]]}})
    with pytest.raises(ProxylessError, match="are both tables of 'EPYC, 2 threads'"):
        prepare_tables(same, tmp_path)
