"""Weights that carry their facts: the record a retrain writes beside weights.pt."""

from __future__ import annotations

import copy
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
    retrained, tmp_path: Path, change: dict, match: str
) -> None:
    config = WeightsMeta.beside(retrained["weights"]).to_config()
    for key, value in change.items():  # a mapping changes the section's keys it names
        config[key] = {**config[key], **value} if isinstance(value, dict) else value
    (tmp_path / "weights.meta.json").write_text(json.dumps(config))
    with pytest.raises(ProxylessError, match=re.escape(f"{tmp_path / 'weights.meta.json'}: ")) as e:
        WeightsMeta.load(tmp_path / "weights.meta.json")
    assert match in str(e.value) and len(str(e.value).splitlines()) == 1


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
