"""Weights that carry their facts: the record a retrain writes beside weights.pt, and export /
evaluate reading it instead of --dataset / --data / --resolution."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from nas_core.data import DIGITS_CLASSES, normalisation
from nas_core.errors import ProxylessError
from nas_core.retrain import retrain
from nas_core.retrain_config import RetrainConfig
from nas_core.weights_meta import WeightsMeta, meta_name
from orchestrator.cli import main
from tests.conftest import toy_latency_table
from tests.learned_cases import TINY_SPACE, first_ops

# digits at 16 px, its splits drawn with seed 1: a retrain's test images are not the ones that
# `evaluate --data digits` (seed 0) scores, so only the record gives evaluate the right ones
CONFIG = {"epochs": 2, "lr": 0.05, "measure_latency": False, "seed": 2,
          "data": {"resolution": 16, "split_seed": 1}}  # fmt: skip


@pytest.fixture(scope="module")
def retrained(tmp_path_factory) -> dict:
    """One tiny net retrained on digits into `out`, with a toy table pricing it."""
    root = tmp_path_factory.mktemp("retrained")
    arch = first_ops(TINY_SPACE)
    arch.save(root / "arch.json")
    table = toy_latency_table(arch.space)
    config = RetrainConfig.from_config(CONFIG)
    result = retrain(arch, config, out_dir=root / "out", table=table)
    bare = root / "bare"  # the same weights without their record, as ours were before it
    bare.mkdir()
    shutil.copy2(root / "out" / "weights.pt", bare / "weights.pt")
    return {"root": root, "arch": root / "arch.json", "weights": root / "out" / "weights.pt",
            "bare": bare / "weights.pt", "result": result, "table": table}  # fmt: skip


def _run(argv: list[str]) -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main([*argv, "--json"]) == 0
    return json.loads(out.getvalue().strip().splitlines()[-1])


def _refused(argv: list[str], capsys) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    return err


def test_retrain_records_what_its_weights_learned(retrained) -> None:
    result = retrained["result"]
    meta = WeightsMeta.beside(retrained["weights"])
    assert meta is not None and retrained["weights"].with_name("weights.meta.json").is_file()
    assert (meta.dataset, meta.resolution, meta.data.split_seed) == ("digits", 16, 1)
    assert (meta.num_classes, meta.class_names) == (10, DIGITS_CLASSES)
    assert (meta.mean, meta.std) == normalisation("digits")
    assert (meta.recipe.epochs, meta.recipe.lr, meta.run.seed, meta.run.device) == (
        2,
        0.05,
        2,
        "cpu",
    )
    assert meta.metrics.test_accuracy == result.test_accuracy
    assert meta.metrics.test_samples == result.test_samples and meta.metrics.params > 0
    assert meta.metrics.latency_table_ms == result.latency_table_ms is not None
    assert meta.latency_device == retrained["table"].meta.device == "toy"
    # retrain.json, the run's report, is as it was: the summary and the history
    report = json.loads((retrained["weights"].parent / "retrain.json").read_text())
    assert set(report) == {*result.summary(), "history"}


def test_the_record_round_trips_and_reads_back_from_its_file(retrained, tmp_path: Path) -> None:
    meta = WeightsMeta.beside(retrained["weights"])
    config = meta.to_config()
    kept = copy.deepcopy(config)
    assert WeightsMeta.from_config(config).to_config() == config
    assert config == kept  # from_config does not mutate its input
    assert json.loads(json.dumps(config)) == config  # JSON-safe
    meta.save(tmp_path / "w.meta.json")
    assert WeightsMeta.load(tmp_path / "w.meta.json") == meta
    assert (
        meta_name("weights.pt") == "weights.meta.json" and meta_name("a.b.pth") == "a.b.meta.json"
    )


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"format": "other/1"}, "not a weights record (format 'other/1'"),
        ({"class_names": ["0", "1"]}, "class_names: 2 names for 10 classes"),
        ({"std": [0.3, 0.0, 0.3]}, "std: must be > 0"),
        ({"resolution": 16}, "resolution: unknown key"),
        ({"recipe": {"epochs": 0}}, "recipe.epochs: must be >= 1"),
    ],
)
def test_a_bad_record_is_one_line_naming_its_file(
    retrained, tmp_path: Path, capsys, change: dict, match: str
) -> None:
    config = WeightsMeta.beside(retrained["weights"]).to_config()
    for key, value in change.items():  # a mapping changes the section's keys it names
        config[key] = {**config[key], **value} if isinstance(value, dict) else value
    (tmp_path / "weights.meta.json").write_text(json.dumps(config))
    shutil.copy2(retrained["weights"], tmp_path / "weights.pt")
    with pytest.raises(ProxylessError, match=re.escape(f"{tmp_path / 'weights.meta.json'}: ")) as e:
        WeightsMeta.load(tmp_path / "weights.meta.json")
    assert match in str(e.value) and len(str(e.value).splitlines()) == 1
    # evaluate reads the record beside the weights it is given: the same line, exit 2
    err = _refused(
        ["evaluate", str(retrained["arch"]), "--weights", str(tmp_path / "weights.pt")], capsys
    )
    assert match in err and str(tmp_path / "weights.meta.json") in err
    assert "move the record aside" in err  # the way around a record this version cannot read


def test_evaluate_scores_the_test_split_the_record_names(retrained) -> None:
    """No --data, no --resolution: the record's dataset, resolution and split seed, so
    evaluate scores exactly the images the retrain tested on (a path, and a storage URI)."""
    meta = WeightsMeta.beside(retrained["weights"])
    for weights in (str(retrained["weights"]), retrained["weights"].as_uri()):
        got = _run(["evaluate", str(retrained["arch"]), "--weights", weights])
        assert (got["data"], got["resolution"]) == ("digits", 16)
        assert got["images"] == meta.metrics.test_samples
        assert got["top1"] == pytest.approx(meta.metrics.test_accuracy, abs=1e-9)
        assert got["loss"] == pytest.approx(meta.metrics.test_loss, rel=1e-5)
    # the same weights without the record score digits' seed-0 test images, as before
    bare = _run(["evaluate", str(retrained["arch"]), "--weights", str(retrained["bare"])])
    assert bare["data"] == "digits" and bare["loss"] != pytest.approx(meta.metrics.test_loss)
    # flags that agree with the record are taken
    agreeing = ["--data", "digits", "--resolution", "16"]
    again = _run(
        ["evaluate", str(retrained["arch"]), "--weights", str(retrained["weights"]), *agreeing]
    )
    assert again["loss"] == pytest.approx(meta.metrics.test_loss, rel=1e-5)


def test_export_takes_resolution_and_facts_from_the_record(retrained, tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    meta = WeightsMeta.beside(retrained["weights"])
    base = ["export", str(retrained["arch"]), "--weights", str(retrained["weights"])]
    _run([*base, "--format", "onnx", "--out", str(tmp_path / "net.onnx")])
    facts = {p.key: p.value for p in onnx.load(str(tmp_path / "net.onnx")).metadata_props}
    assert (facts["dataset"], facts["resolution"], facts["classes"]) == ("digits", "16", "10")
    assert (
        tuple(json.loads(facts["mean"])) == meta.mean
        and tuple(json.loads(facts["std"])) == meta.std
    )
    assert json.loads(facts["class_names"]) == list(DIGITS_CLASSES)
    assert json.loads(facts["metrics"])["test_accuracy"] == meta.metrics.test_accuracy
    assert json.loads(facts["recipe"])["epochs"] == 2
    assert float(facts["latency_ms"]) == pytest.approx(meta.metrics.latency_table_ms, abs=1e-4)
    assert facts["latency_device"] == "toy"
    got = _run([*base, "--format", "net-config", "--out", str(tmp_path / "net.config")])
    assert got["resolution"] == 16
    assert json.loads((tmp_path / "net.config").read_text())["resolution"] == 16


@pytest.mark.parametrize(
    ("command", "flags", "flag"),
    [
        ("export", ["--format", "onnx", "--dataset", "cifar10"], "--dataset cifar10"),
        ("export", ["--format", "torchscript", "--resolution", "32"], "--resolution 32"),
        ("evaluate", ["--resolution", "32"], "--resolution 32"),
        ("evaluate", ["--data", "fashion_mnist"], "--data fashion_mnist"),
    ],
)
def test_a_flag_that_contradicts_the_record_is_one_line(
    retrained, tmp_path: Path, capsys, command: str, flags: list[str], flag: str
) -> None:
    out = ["--out", str(tmp_path / "net")] if command == "export" else []
    argv = [command, str(retrained["arch"]), "--weights", str(retrained["weights"]), *out]
    err = _refused([*argv, *flags], capsys)
    assert f"{flag} contradicts the weights {retrained['weights']}" in err
    assert not (tmp_path / "net").exists()


def test_weights_without_a_record_take_the_flags_as_before(retrained, tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    base = ["export", str(retrained["arch"]), "--weights", str(retrained["bare"])]
    _run([*base, "--format", "onnx", "--out", str(tmp_path / "n.onnx"), "--dataset", "digits"])
    facts = {p.key: p.value for p in onnx.load(str(tmp_path / "n.onnx")).metadata_props}
    assert tuple(json.loads(facts["mean"])) == normalisation("digits")[0]
    assert "class_names" not in facts and "metrics" not in facts
    # --resolution 24 contradicts the record; without one it lays the net out at 24 px
    got = _run(
        [
            "evaluate",
            str(retrained["arch"]),
            "--weights",
            str(retrained["bare"]),
            "--resolution",
            "24",
        ]
    )
    assert got["resolution"] == 24 and got["data"] == "digits"


def test_a_sweep_copies_the_record_with_its_net(retrained, tmp_path: Path) -> None:
    """The driver copies a retrain trial's final checkpoint (the retrain's out dir) into
    nets/<trial>/: the record goes with the weights; a checkpoint from before the record still
    copies its net."""
    from pyarrow import fs

    from orchestrator.storage import RunStorage
    from orchestrator.sweep import _save_net

    store = RunStorage(str(tmp_path / "runs"), "demo")
    old = tmp_path / "old-checkpoint"
    shutil.copytree(retrained["weights"].parent, old)
    (old / "weights.meta.json").unlink()
    for trial, folder in (("t1", retrained["weights"].parent), ("t0", old)):
        # what Tune hands the driver: a result whose checkpoint lives on a pyarrow filesystem
        checkpoint = SimpleNamespace(filesystem=fs.LocalFileSystem(), path=str(folder))
        row = {"status": "done", "trial_id": trial}
        _save_net(store, SimpleNamespace(checkpoint=checkpoint), row)
        assert Path(row["weights"]) == store.work_dir / "nets" / trial / "weights.pt"
    new = WeightsMeta.beside(store.work_dir / "nets" / "t1" / "weights.pt")
    assert new == WeightsMeta.beside(retrained["weights"])
    assert WeightsMeta.beside(store.work_dir / "nets" / "t0" / "weights.pt") is None
    copied = torch.load(store.work_dir / "nets" / "t1" / "weights.pt", weights_only=True)
    trained = torch.load(retrained["weights"], weights_only=True)
    assert all(torch.equal(copied[k], v) for k, v in trained.items())


def test_a_record_normalised_otherwise_than_this_version_warns(
    retrained, tmp_path: Path, capsys
) -> None:
    """evaluate normalises with this version's constants; a record that says other ones
    (the constants changed since the training) is said on stderr, not scored in silence."""
    meta = WeightsMeta.beside(retrained["weights"])
    meta.replace(mean=(0.5, 0.5, 0.5)).save(tmp_path / "weights.meta.json")
    shutil.copy2(retrained["weights"], tmp_path / "weights.pt")
    got = _run(["evaluate", str(retrained["arch"]), "--weights", str(tmp_path / "weights.pt")])
    assert got["images"] == meta.metrics.test_samples
    assert "normalises digits by [0.305, 0.305, 0.305]" in capsys.readouterr().err
