"""Datasets and loaders: digits splits, fake CIFAR-10 and ImageFolder trees, loader determinism.

Nothing here touches the network: CIFAR-10 is a tiny tree in torchvision's own pickle format
written to tmp_path, and every download entry point is patched to fail loudly.
"""

from __future__ import annotations

import pickle
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets.cifar as tv_cifar
import torchvision.datasets.utils as tv_utils
from PIL import Image
from torch.utils.data import TensorDataset

from nas_core.data import (
    DIGITS_MEAN,
    DIGITS_STD,
    DataConfig,
    DataSplits,
    build_datasets,
    stratified_split,
)
from nas_core.errors import ProxylessError
from nas_core.loader import ShardSampler, make_loader

DIGITS_TOTAL = 1797  # images in scikit-learn's digits


# --- digits --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits32() -> DataSplits:
    return build_datasets(DataConfig(resolution=32))


def _labels(ds: TensorDataset) -> torch.Tensor:
    return ds.tensors[1]


def test_digits_sizes_classes_and_shapes(digits32: DataSplits) -> None:
    s = digits32
    assert (s.num_classes, s.in_channels) == (10, 3)
    assert s.class_names == tuple("0123456789")  # label i is the digit i
    sizes = [len(s.train), len(s.valid), len(s.test)]
    assert sum(sizes) == DIGITS_TOTAL
    assert abs(len(s.test) - 0.2 * DIGITS_TOTAL) <= 10
    assert abs(len(s.valid) - 0.2 * (DIGITS_TOTAL - len(s.test))) <= 10
    for ds in (s.train, s.valid, s.test):
        assert sorted(_labels(ds).unique().tolist()) == list(range(10))
        image, label = ds[0]
        assert image.shape == (3, 32, 32) and image.dtype == torch.float32
        assert 0 <= int(label) <= 9
    x = s.train.tensors[0]
    assert abs(x.mean().item()) < 0.1 and 0.8 < x.std().item() < 1.2
    assert torch.equal(x[:, 0], x[:, 2])  # grey replicated to three channels


@pytest.mark.parametrize("resolution", [8, 16])
def test_digits_resolution(resolution: int) -> None:
    s = build_datasets(DataConfig(resolution=resolution))
    for ds in (s.train, s.valid, s.test):
        assert ds[0][0].shape == (3, resolution, resolution)


def test_digits_splits_partition_the_data() -> None:
    """At the native 8 px nothing is interpolated, so the splits are a multiset partition."""
    from sklearn.datasets import load_digits

    def key(image: torch.Tensor, label: int) -> tuple[bytes, int]:
        return np.round(image.numpy(), 3).tobytes(), int(label)

    s = build_datasets(DataConfig(resolution=8))
    seen: Counter = Counter()
    for ds in (s.train, s.valid, s.test):
        seen.update(key(image[0], label) for image, label in zip(*ds.tensors, strict=True))
    digits = load_digits()
    grey = (torch.as_tensor(digits.images, dtype=torch.float32) / 16.0 - DIGITS_MEAN) / DIGITS_STD
    assert seen == Counter(key(x, y) for x, y in zip(grey, digits.target, strict=True))


def test_digits_split_is_fixed_by_seed(digits32: DataSplits) -> None:
    again = build_datasets(DataConfig(resolution=32))
    other = build_datasets(DataConfig(resolution=32, split_seed=1))
    for a, b in ((digits32.train, again.train), (digits32.valid, again.valid)):
        assert torch.equal(a.tensors[0], b.tensors[0]) and torch.equal(a.tensors[1], b.tensors[1])
    assert torch.equal(digits32.test.tensors[0], again.test.tensors[0])
    assert not torch.equal(digits32.valid.tensors[1], other.valid.tensors[1])
    assert not torch.equal(digits32.test.tensors[1], other.test.tensors[1])


def test_stratified_split_disjoint_and_covering() -> None:
    y = np.repeat(np.arange(5), [2, 3, 10, 40, 1])
    kept, held = stratified_split(y, 0.25, seed=3, stream=0)
    assert set(kept).isdisjoint(held) and sorted([*kept, *held]) == list(range(len(y)))
    assert set(y[held]) == {0, 1, 2, 3}  # classes with >= 2 members appear in both parts
    assert set(y[kept]) == {0, 1, 2, 3, 4}
    assert (y[held] == 3).sum() == 10
    again = stratified_split(y, 0.25, seed=3, stream=0)
    assert all(np.array_equal(a, b) for a, b in zip((kept, held), again, strict=True))
    assert not np.array_equal(held, stratified_split(y, 0.25, seed=3, stream=1)[1])


# --- cifar10 -------------------------------------------------------------------------------


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("tried to download")

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", refuse)
    monkeypatch.setattr(tv_utils, "download_url", refuse)
    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", refuse)


def _write_fake_cifar(root: Path, per_class: int = 4, test_per_class: int = 1) -> None:
    """torchvision's layout: pickled dicts of uint8 (N, 3072) data and label lists."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    train_labels = np.repeat(np.arange(10), per_class)
    rng.shuffle(train_labels)
    for i, labels in enumerate(np.array_split(train_labels, 5), start=1):
        batch = {"data": rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8)}
        batch["labels"] = labels.tolist()
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch))
    test_labels = np.repeat(np.arange(10), test_per_class)
    test = {
        "data": rng.integers(0, 256, (len(test_labels), 3072), dtype=np.uint8),
        "labels": test_labels.tolist(),
    }
    (folder / "test_batch").write_bytes(pickle.dumps(test))
    meta = {"label_names": [f"class{i}" for i in range(10)]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))


@pytest.fixture
def fake_cifar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: None) -> Path:
    _write_fake_cifar(tmp_path)
    # The md5 sums of the real files cannot be matched; trust the fake tree instead.
    monkeypatch.setattr(tv_cifar.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *args, **kwargs: True)
    return tmp_path


def test_cifar10_builds(fake_cifar: Path) -> None:
    s = build_datasets(DataConfig(dataset="cifar10", data_dir=str(fake_cifar)))
    assert (s.num_classes, s.in_channels) == (10, 3)
    assert s.class_names == tuple(f"class{i}" for i in range(10))  # batches.meta's label names
    assert (len(s.train), len(s.valid), len(s.test)) == (30, 10, 10)
    assert set(s.train.indices).isdisjoint(s.valid.indices)
    assert sorted([*s.train.indices, *s.valid.indices]) == list(range(40))
    for ds in (s.train, s.valid, s.test):
        image, label = ds[0]
        assert image.shape == (3, 32, 32) and image.dtype == torch.float32
        assert 0 <= label <= 9
    # The batched fetch of a loader must apply the transform too.
    images, labels = next(iter(make_loader(s.valid, batch_size=4, shuffle=False)))
    assert images.shape == (4, 3, 32, 32) and labels.shape == (4,)
    assert torch.equal(images[0], s.valid[0][0])


def test_cifar10_workers_and_pickling(fake_cifar: Path) -> None:
    """Ray ships datasets to workers by pickling; loader workers must see the same data."""
    s = build_datasets(DataConfig(dataset="cifar10", data_dir=str(fake_cifar)))
    valid = pickle.loads(pickle.dumps(s.valid))
    serial = [x for x, _ in make_loader(s.valid, 4, shuffle=True, seed=2)]
    forked = [x for x, _ in make_loader(valid, 4, shuffle=True, seed=2, num_workers=2)]
    assert len(serial) == len(forked) == 3
    assert all(torch.equal(a, b) for a, b in zip(serial, forked, strict=True))


def test_augmentation_is_a_function_of_seed_epoch_and_sample(fake_cifar: Path) -> None:
    """The same augmented batches from the main process and from two loader workers that
    persist across epochs; each epoch draws new ones; fetching leaves the caller's RNG alone."""
    s = build_datasets(DataConfig(dataset="cifar10", data_dir=str(fake_cifar)))

    pids: list[list[int]] = []

    def epochs(loader) -> list[list[torch.Tensor]]:
        out = []
        for epoch in (0, 1, 0):
            loader.sampler.set_epoch(epoch)
            out.append([x for x, _ in loader])
            pids.append([w.pid for w in getattr(loader._iterator, "_workers", [])])
        return out

    torch.manual_seed(5)
    caller = torch.get_rng_state()
    serial = epochs(make_loader(s.train, 8, shuffle=True, seed=3))
    assert torch.equal(torch.get_rng_state(), caller)  # augmentation drew from its own seeds
    persistent = make_loader(s.train, 8, shuffle=True, seed=3, num_workers=2, persistent=True)
    forked = epochs(persistent)
    assert len(pids[-1]) == 2 and pids[-3:] == [pids[-1]] * 3  # the same two workers throughout
    for a, b in zip(serial, forked, strict=True):
        assert len(a) == len(b) == 4 and all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert torch.equal(serial[2][0], serial[0][0])  # epoch 0 again: the same images
    # epoch 1 shuffles again; its augmentation is new even for the images epoch 0 drew
    again = make_loader(s.train, 30, shuffle=False, seed=3)
    again.sampler.set_epoch(1)
    one = next(iter(again))[0]
    again.sampler.set_epoch(0)
    zero = next(iter(again))[0]
    assert not torch.equal(one, zero)


def test_cifar10_resizes(fake_cifar: Path) -> None:
    s = build_datasets(DataConfig(dataset="cifar10", data_dir=str(fake_cifar), resolution=16))
    assert s.train[0][0].shape == s.test[0][0].shape == (3, 16, 16)


def test_cifar10_missing_without_download(tmp_path: Path, no_network: None) -> None:
    where = tmp_path / "nowhere"
    with pytest.raises(ProxylessError, match=r"--download") as info:
        build_datasets(DataConfig(dataset="cifar10", data_dir=str(where)))
    assert str(where) in str(info.value) and "\n" not in str(info.value)


# --- imagefolder ---------------------------------------------------------------------------


def _write_tree(root: Path, split: str, classes: dict[str, int]) -> None:
    rng = np.random.default_rng(len(split))
    for name, count in classes.items():
        folder = root / split / name
        folder.mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 256, (12, 14, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")


@pytest.fixture
def image_tree(tmp_path: Path) -> Path:
    _write_tree(tmp_path, "train", {"cat": 5, "dog": 5, "fox": 5})
    _write_tree(tmp_path, "val", {"cat": 2, "dog": 2, "fox": 2})
    return tmp_path


def test_imagefolder_builds(image_tree: Path) -> None:
    s = build_datasets(DataConfig(dataset="imagefolder", data_dir=str(image_tree), resolution=16))
    assert (s.num_classes, s.in_channels) == (3, 3)
    assert s.class_names == ("cat", "dog", "fox")  # the class folders, in label order
    assert (len(s.train), len(s.valid), len(s.test)) == (12, 3, 6)
    assert set(s.train.indices).isdisjoint(s.valid.indices)
    assert sorted(s.valid[i][1] for i in range(len(s.valid))) == [0, 1, 2]
    for ds in (s.train, s.valid, s.test):
        image, label = ds[0]
        assert image.shape == (3, 16, 16) and image.dtype == torch.float32
        assert 0 <= label < 3
    images, _ = next(iter(make_loader(s.train, batch_size=5, shuffle=True)))
    assert images.shape == (5, 3, 16, 16)


def test_imagefolder_mismatched_classes(tmp_path: Path) -> None:
    _write_tree(tmp_path, "train", {"cat": 3, "dog": 3})
    _write_tree(tmp_path, "val", {"cat": 1, "eel": 1})
    with pytest.raises(ProxylessError, match=r"only in train: dog; only in val: eel"):
        build_datasets(DataConfig(dataset="imagefolder", data_dir=str(tmp_path)))


def test_imagefolder_missing_folder(tmp_path: Path) -> None:
    _write_tree(tmp_path, "train", {"cat": 3, "dog": 3})
    with pytest.raises(ProxylessError, match=re.escape(str(tmp_path / "val"))):
        build_datasets(DataConfig(dataset="imagefolder", data_dir=str(tmp_path)))


def test_imagefolder_empty_trees(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    (tmp_path / "val").mkdir()
    with pytest.raises(ProxylessError, match=re.escape(str(tmp_path / "train"))):
        build_datasets(DataConfig(dataset="imagefolder", data_dir=str(tmp_path)))
    (tmp_path / "train" / "cat").mkdir()  # a class folder without images
    with pytest.raises(ProxylessError, match="cat"):
        build_datasets(DataConfig(dataset="imagefolder", data_dir=str(tmp_path)))


def test_imagefolder_too_few_images_for_valid(tmp_path: Path) -> None:
    _write_tree(tmp_path, "train", {"cat": 1, "dog": 1})
    _write_tree(tmp_path, "val", {"cat": 1, "dog": 1})
    with pytest.raises(ProxylessError, match="too few"):
        build_datasets(DataConfig(dataset="imagefolder", data_dir=str(tmp_path)))


# --- make_loader ---------------------------------------------------------------------------


def _order(loader: torch.utils.data.DataLoader) -> list[int]:
    return [int(i) for (batch,) in loader for i in batch]


def _indices(n: int) -> TensorDataset:
    return TensorDataset(torch.arange(n))


def test_loader_same_seed_and_epoch_same_batches() -> None:
    ds = _indices(20)
    a = [b.tolist() for (b,) in make_loader(ds, 6, shuffle=True, seed=4, epoch=2)]
    b = [b.tolist() for (b,) in make_loader(ds, 6, shuffle=True, seed=4, epoch=2)]
    assert a == b and [len(x) for x in a] == [6, 6, 6, 2]
    order = [i for batch in a for i in batch]
    assert sorted(order) == list(range(20))
    assert _order(make_loader(ds, 6, shuffle=True, seed=4, epoch=3)) != order
    assert _order(make_loader(ds, 6, shuffle=True, seed=5, epoch=2)) != order
    assert _order(make_loader(ds, 6, shuffle=False, seed=4, epoch=2)) == list(range(20))
    assert [len(b) for (b,) in make_loader(ds, 6, True, drop_last=True)] == [6, 6, 6]


def test_loader_shards_are_disjoint_and_cover() -> None:
    ds = _indices(10)
    shards = [
        _order(make_loader(ds, 3, True, seed=1, epoch=1, rank=r, world_size=2)) for r in (0, 1)
    ]
    assert len(shards[0]) == len(shards[1]) == 5
    assert set(shards[0]).isdisjoint(shards[1])
    assert sorted(shards[0] + shards[1]) == list(range(10))
    # The shards interleave the single-process order of the same (seed, epoch).
    whole = _order(make_loader(ds, 3, True, seed=1, epoch=1))
    assert whole[0::2] == shards[0] and whole[1::2] == shards[1]


@pytest.mark.parametrize(("drop_last", "per_rank"), [(False, 3), (True, 2)])
def test_loader_uneven_shards_have_equal_length(drop_last: bool, per_rank: int) -> None:
    """11 samples over 4 ranks: padded to 12 by wrapping around, or cut to 8 with drop_last."""
    n, world = 11, 4
    samplers = [
        ShardSampler(n, True, drop_last=drop_last, rank=r, world_size=world) for r in range(world)
    ]
    shards = [list(s) for s in samplers]
    assert [len(s) for s in shards] == [len(s) for s in samplers] == [per_rank] * world
    flat = [i for shard in shards for i in shard]
    if drop_last:
        assert len(set(flat)) == len(flat) == 8
    else:
        assert set(flat) == set(range(n)) and len(flat) == 12
    loader = make_loader(_indices(n), 2, True, rank=3, world_size=world, drop_last=drop_last)
    assert len(_order(loader)) == per_rank  # 3 in batches 2 + 1; 2 in one full batch


def test_loader_rejects_bad_arguments() -> None:
    ds = _indices(4)
    for kwargs in ({"batch_size": 0}, {"rank": 2, "world_size": 2}, {"world_size": 0}):
        with pytest.raises(ValueError, match="make_loader"):
            make_loader(ds, **{"batch_size": 2, "shuffle": True, **kwargs})


# --- DataConfig ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        DataConfig(),
        DataConfig(resolution=16, valid_fraction=0.1, split_seed=7),
        DataConfig(dataset="cifar10", data_dir="/data/cifar", download=True),
        DataConfig(dataset="imagefolder", data_dir="/data/imagenet", resolution=224),
    ],
)
def test_config_round_trip(config: DataConfig) -> None:
    d = config.to_config()
    frozen = dict(d)
    assert DataConfig.from_config(d) == config
    assert d == frozen
    assert DataConfig.from_config(d).to_config() == d


def test_config_path_data_dir_becomes_str(tmp_path: Path) -> None:
    c = DataConfig(dataset="imagefolder", data_dir=tmp_path)  # type: ignore[arg-type]
    assert c.data_dir == str(tmp_path) and c.to_config()["data_dir"] == str(tmp_path)


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"resolution": 0}, "resolution"),
        ({"resolution": 7}, "resolution"),
        ({"resolution": 32.0}, "resolution"),
        ({"resolution": True}, "resolution"),
        ({"valid_fraction": 1.5}, "valid_fraction"),
        ({"valid_fraction": 0}, "valid_fraction"),
        ({"valid_fraction": 1.0}, "valid_fraction"),
        ({"valid_fraction": float("nan")}, "valid_fraction"),
        ({"valid_fraction": "0.2"}, "valid_fraction"),
        ({"dataset": "mnist"}, "dataset"),
        ({"dataset": "cifar10"}, "data_dir"),
        ({"dataset": "imagefolder"}, "data_dir"),
        ({"dataset": "cifar10", "data_dir": ""}, "data_dir"),
        ({"data_dir": "/data"}, "data_dir"),
        ({"download": True}, "download"),
        ({"dataset": "cifar10", "data_dir": "/d", "download": "yes"}, "download"),
        ({"split_seed": -1}, "split_seed"),
        ({"batch_size": 8}, "batch_size"),
    ],
)
def test_config_rejects_bad_values(config: dict, field: str) -> None:
    with pytest.raises(ProxylessError, match=field):
        DataConfig.from_config(config)


def test_config_rejects_non_mapping() -> None:
    with pytest.raises(ProxylessError, match="must be a mapping"):
        DataConfig.from_config(["digits"])  # type: ignore[arg-type]
