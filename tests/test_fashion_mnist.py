"""Fashion-MNIST from IDX files, `train_subset`, and the augmentation recipes.

The IDX files are tiny ones written here (CI has no Debian package); one test reads the real
files where `dataset-fashion-mnist` is installed and skips elsewhere.
"""

from __future__ import annotations

import gzip
import re
import struct
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import TensorDataset

from nas_core.data import (
    FASHION_MNIST_DIR,
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    DataConfig,
    build_datasets,
    evaluation_split,
)
from nas_core.errors import ProxylessError
from nas_core.loader import SampleKey, TransformedSubset
from orchestrator.cli import main

TRAIN_PER_CLASS, TEST_PER_CLASS = 6, 2
NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write(folder: Path, name: str, data: bytes, gz: bool) -> None:
    if gz:
        (folder / f"{name}.gz").write_bytes(gzip.compress(data))
    else:
        (folder / name).write_bytes(data)


@pytest.fixture
def idx_dir(tmp_path: Path) -> Path:
    """Ten classes; train gzipped as Debian ships it, test unpacked."""
    rng = np.random.default_rng(0)
    for part, per_class in (("train", TRAIN_PER_CLASS), ("test", TEST_PER_CLASS)):
        labels = np.repeat(np.arange(10), per_class)  # sorted by class, the hard case
        images = rng.integers(0, 256, (len(labels), 28, 28))
        images_name, labels_name = NAMES[part]
        _write(tmp_path, images_name, _idx(images), gz=part == "train")
        _write(tmp_path, labels_name, _idx(labels), gz=part == "train")
    return tmp_path


def _config(folder: Path, **kw) -> DataConfig:
    return DataConfig.from_config(
        {"dataset": "fashion_mnist", "data_dir": str(folder), "resolution": 28, **kw}
    )


def test_builds_splits_from_idx_files(idx_dir: Path) -> None:
    s = build_datasets(_config(idx_dir, augment="none"))
    assert (len(s.train) + len(s.valid), len(s.test), s.num_classes) == (60, 20, 10)
    assert (s.class_names[0], s.class_names[9]) == ("T-shirt/top", "Ankle boot")
    assert Counter(int(s.valid[i][1]) for i in range(len(s.valid))) == Counter(range(10))
    image, _ = s.test[3]
    assert image.shape == (3, 28, 28)
    raw = np.frombuffer((idx_dir / NAMES["test"][0]).read_bytes()[16:], np.uint8).copy()
    want = (torch.as_tensor(raw[3 * 784 : 4 * 784].reshape(28, 28), dtype=torch.float32) / 255.0
            - FASHION_MNIST_MEAN) / FASHION_MNIST_STD  # fmt: skip
    torch.testing.assert_close(image[0], want)
    assert torch.equal(image[0], image[2])  # grey on three channels
    assert build_datasets(_config(idx_dir, resolution=32)).test[0][0].shape == (3, 32, 32)


def test_train_subset_is_stratified_seeded_and_holds_the_valid_split(idx_dir: Path) -> None:
    s = build_datasets(_config(idx_dir, train_subset=30, augment="none"))
    labels = [int(d[i][1]) for d in (s.train, s.valid) for i in range(len(d))]
    assert Counter(labels) == {c: 3 for c in range(10)}
    assert len(s.test) == 20  # the official test split, whole
    again = build_datasets(_config(idx_dir, train_subset=30, augment="none"))
    assert torch.equal(s.train.tensors[0], again.train.tensors[0])
    other = build_datasets(_config(idx_dir, train_subset=30, augment="none", split_seed=1))
    assert not torch.equal(s.train.tensors[0], other.train.tensors[0])


def test_small_augmentation_shifts_and_flips_train_images_by_seed(idx_dir: Path) -> None:
    s = build_datasets(_config(idx_dir))  # fashion_mnist's default: small
    assert isinstance(s.train, TransformedSubset) and s.train.augment
    assert isinstance(s.valid, TensorDataset) and isinstance(s.test, TensorDataset)
    key = SampleKey(seed=0, epoch=0, index=1)
    first = s.train[key][0]
    assert torch.equal(first, s.train[key][0])  # a function of (seed, epoch, sample)
    plain = s.train.dataset[s.train.indices[1]][0]
    views = [s.train[SampleKey(0, e, 1)][0] for e in range(12)]
    assert any(not torch.equal(v, plain) for v in views)
    # the ones that moved are shifts (with black borders) or mirror images of the plain one
    black = -FASHION_MNIST_MEAN / FASHION_MNIST_STD
    assert all(v.shape == plain.shape and float(v.min()) >= black - 1e-6 for v in views)
    assert build_datasets(_config(idx_dir, augment="none")).train.__class__ is TensorDataset


def test_image_folders_of_small_images_default_to_the_small_recipe(tmp_path: Path) -> None:
    from torchvision import transforms as T

    for split, n in (("train", 4), ("val", 2)):
        for c in ("a", "b"):
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(np.full((20, 20, 3), 40 * i, np.uint8)).save(
                    tmp_path / split / c / f"{i}.png"
                )
    config = {"dataset": "imagefolder", "data_dir": str(tmp_path), "resolution": 16}
    kinds = {}
    for augment, kw in (("default", {}), ("imagenet", {"augment": "imagenet"})):
        train = build_datasets(DataConfig(**config, **kw)).train
        kinds[augment] = [type(t) for t in train.transform.transforms]
    assert T.RandomCrop in kinds["default"] and T.RandomResizedCrop not in kinds["default"]
    assert T.RandomResizedCrop in kinds["imagenet"]
    test, _ = evaluation_split(DataConfig(**config))  # the whole 20-px image, at 16
    assert T.CenterCrop in [type(t) for t in test.transform.transforms]
    assert test[0][0].shape == (3, 16, 16)


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        ("missing", "no such file"),
        ("magic", "not an IDX file"),
        ("truncated", "bytes of data"),
        ("counts", "labels"),
        ("gzip", "cannot be read"),
    ],
)
def test_bad_idx_files_are_one_line_naming_the_file(
    idx_dir: Path, spoil: str, message: str, capsys
) -> None:
    images, labels = NAMES["train"]
    target = idx_dir / f"{images}.gz"
    data = gzip.decompress(target.read_bytes())
    if spoil == "missing":
        target.unlink()
    elif spoil == "magic":
        target.write_bytes(gzip.compress(b"\0\0\x0d\x03" + data[4:]))
    elif spoil == "truncated":
        target.write_bytes(gzip.compress(data[:-100]))
    elif spoil == "counts":
        (idx_dir / f"{labels}.gz").write_bytes(gzip.compress(_idx(np.zeros(59, np.uint8))))
    else:
        target.write_bytes(gzip.compress(data)[:-20])
    with pytest.raises(ProxylessError, match=message) as err:
        build_datasets(_config(idx_dir))
    assert str(idx_dir / images) in str(err.value)
    config = idx_dir / "search.yaml"
    config.write_text(f"data: {{dataset: fashion_mnist, data_dir: '{idx_dir}'}}\nepochs: 1\n")
    assert main(["search", "--config", str(config), "--out", str(idx_dir / "out")]) == 2
    err_lines = capsys.readouterr().err.strip().splitlines()
    assert len(err_lines) == 1 and str(idx_dir / images) in err_lines[0], err_lines


def test_a_subset_larger_than_the_data_and_photo_crops_of_tensors_are_refused(
    idx_dir: Path,
) -> None:
    with pytest.raises(ProxylessError, match=r"train_subset: 61 is more than its 60 images"):
        build_datasets(_config(idx_dir, train_subset=61))
    for dataset in ("digits", "fashion_mnist"):
        with pytest.raises(ProxylessError, match=re.escape("augment: imagenet crops")):
            DataConfig.from_config({"dataset": dataset, "augment": "imagenet"})
    assert _config(idx_dir, train_subset=60, augment="small").to_config()["train_subset"] == 60
    c = _config(idx_dir, train_subset=40, augment="small")
    assert DataConfig.from_config(c.to_config()) == c


@pytest.mark.skipif(
    not (Path(FASHION_MNIST_DIR) / "t10k-labels-idx1-ubyte.gz").is_file(),
    reason="dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)",
)
def test_the_real_files_where_debian_installed_them() -> None:
    s = build_datasets(DataConfig(dataset="fashion_mnist", train_subset=1000, resolution=32))
    assert (len(s.train) + len(s.valid), len(s.valid), len(s.test)) == (1000, 200, 10000)
    assert Counter(int(s.valid[i][1]) for i in range(len(s.valid))) == {c: 20 for c in range(10)}
    x = torch.stack([s.test[i][0] for i in range(0, 10000, 20)])
    assert abs(float(x.mean())) < 0.1 and 0.85 < float(x.std()) < 1.1  # normalised
