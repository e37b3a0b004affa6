"""Datasets for the search (train / valid splits) and for retraining (test split).

Four sources, all returning a `DataSplits` of map-style datasets that yield `(image, label)`
with images as normalised float tensors of shape (3, resolution, resolution):

- `digits`: scikit-learn's bundled 8×8 handwritten digits — the embedded default, no download.
  The whole set (1797 images) is resized once up front and kept as in-memory `TensorDataset`s;
  resizing per item would cost more than the tiny nets that train on it. The three channels are
  an `expand` view of one grey channel, so memory does not triple at large resolutions.
- `cifar10`: torchvision's CIFAR-10 under `data_dir`. Downloading is an explicit opt-in
  (`download=True`); by default a missing set is a one-line error, never a network access.
- `fashion_mnist`: Zalando's Fashion-MNIST from its four IDX files in `data_dir` (default
  `FASHION_MNIST_DIR`, where Debian's `dataset-fashion-mnist` puts them), never a download. The
  28-px grey images are resized once, bilinearly, to `resolution` and kept in memory as digits
  are; the grey channel is an `expand` view on three, since every space's stem takes RGB (a
  one-channel stem would change the published spaces) and a view costs no memory. Test = the
  official 10k.
- `imagefolder`: the ImageNet layout `data_dir/{train,val}/<class>/<image>`.

`train_subset: N` draws about N images of the training split (stratified, seeded by
`split_seed`, per-class rounding) before the valid split is held out of them. Augmentation is
named by `augment` (`nas_core.augment`; the default follows the dataset's images).

The valid split (the held-out data of the architecture steps) is carved out of the training
split, stratified per class, by a NumPy generator seeded from `split_seed`, so every run and
every DDP rank sees the same split. For cifar10 / imagefolder the source is decoded once and
shared: `TransformedSubset` gives train and valid different transforms (augmentation on train
only) without loading the data twice — two torchvision datasets would double CIFAR's memory
and scan an ImageNet tree twice.

`make_loader` shuffles with a generator seeded from (seed, epoch) and shards by rank itself
(`ShardSampler`), so one permutation serves every world size: the shards of K ranks are the
K-strided slices of the single-process order. A sample's random augmentation is seeded from
(seed, epoch, index) where it is fetched (`TransformedSubset.augment`), so it does not depend on
which process fetches it: the same images whatever the worker count or rank count, loader
workers that persist across epochs (`ShardSampler.set_epoch`, as with torch's
`DistributedSampler`), and a resumed run that repeats one run straight through. torch's
`DistributedSampler` was the other option, rejected: it seeds with `seed + epoch` (seed 1 /
epoch 2 repeats seed 2 / epoch 1) and its order differs from the single-process one, so a
K-worker run is harder to compare with a local run.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NamedTuple

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator
from torch.utils.data import DataLoader, Dataset, Sampler, Subset, TensorDataset

from nas_core.augment import Augment, ShiftFlip, default_augment, photo_transforms
from nas_core.config import ConfigModel
from nas_core.errors import ProxylessError
from nas_core.idx import read_images_and_labels
from nas_core.sampling import SplitStream, Stream, sample_seed, step_generator

if TYPE_CHECKING:  # torchvision is imported where CIFAR-10 and image folders need it: it
    # costs ~2.5 s per process (it loads torch._dynamo), and every Train worker, architecture
    # actor and trial process imports this module
    from torchvision.datasets import CIFAR10, ImageFolder

# Digits pixel statistics after scaling to [0, 1]: the mean is that of the raw 8×8 images (bilinear
# resizing keeps it); the std is that of the upsampled images (0.319–0.325 from 16 px up; 0.376
# at the native 8 px), so inputs are roughly zero-mean, unit-std at the usual resolutions.
DIGITS_MEAN = 0.305
DIGITS_STD = 0.32
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FASHION_MNIST_MEAN = 0.2860  # of the 60k training images' pixels in [0, 1]
FASHION_MNIST_STD = 0.3530
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist
IN_MEMORY = ("digits", "fashion_mnist")  # held as tensors: no photo augmentation


class DataConfig(ConfigModel):
    """Which dataset, where it lives, the input resolution and how the splits are drawn."""

    dataset: Literal["digits", "cifar10", "imagefolder", "fashion_mnist"] = "digits"
    # root for cifar10 / imagefolder / fashion_mnist (digits ships with sklearn; fashion_mnist
    # defaults to FASHION_MNIST_DIR)
    data_dir: Annotated[str, Field(min_length=1)] | None = None
    download: bool = False  # cifar10 only: allow torchvision to download (explicit opt-in)
    resolution: int = Field(32, ge=8)  # images are resized to resolution x resolution
    # share of the training split held out for architecture steps
    valid_fraction: float = Field(0.2, gt=0, lt=1)
    split_seed: int = Field(0, ge=0)  # fixes the train/valid split (and digits' test split)
    # about this many training images (stratified, seeded), the valid split held out of them
    train_subset: int | None = Field(None, ge=2)
    augment: Augment | None = None  # training-time recipe; None: the dataset's default

    @field_validator("data_dir", mode="before")
    @classmethod
    def _path_as_text(cls, value: Any) -> Any:
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    @model_validator(mode="after")
    def _source_fits_dataset(self) -> DataConfig:
        if self.dataset == "digits" and self.data_dir is not None:
            raise ValueError("data_dir: digits ships with scikit-learn and takes no folder")
        if self.dataset not in IN_MEMORY and self.data_dir is None:
            raise ValueError(f"data_dir is required for dataset {self.dataset}")
        if self.dataset in IN_MEMORY and self.augment == "imagenet":
            raise ValueError(
                f"augment: imagenet crops decoded photos; {self.dataset} is held as tensors "
                "(use small or none)"
            )
        if self.download and self.dataset != "cifar10":
            raise ValueError(f"download applies to cifar10 only, not {self.dataset}")
        return self


@dataclass(frozen=True)
class DataSplits:
    """The three splits of one dataset and what a net needs to know about its input."""

    train: Dataset  # weight steps
    valid: Dataset  # held-out split for architecture steps / search validation
    test: Dataset  # final evaluation (retraining)
    num_classes: int
    in_channels: int = 3


class TransformedSubset(Subset):
    """`dataset[indices[i]]` with `transform` applied to its image.

    Lets train and valid share one decoded dataset while only train is augmented. A random
    `transform` (`augment=True`) draws from torch's RNG seeded from (seed, epoch, i) of the
    fetching loader (`SampleKey`), never from the fetching process's own stream.
    """

    def __init__(
        self,
        dataset: Dataset,
        indices: Sequence[int],
        transform: Callable[[Any], Any],
        augment: bool = False,
    ) -> None:
        super().__init__(dataset, [int(i) for i in indices])
        self.transform, self.augment = transform, augment

    def __getitem__(self, idx: int | SampleKey) -> tuple[Any, Any]:
        if not isinstance(idx, SampleKey):
            idx = SampleKey(0, 0, int(idx))
        image, label = self.dataset[self.indices[idx.index]]
        if not self.augment:
            return self.transform(image), label
        with torch.random.fork_rng(devices=[]):  # the fetching process's own stream stays put
            # the CPU generator only: torch.manual_seed would reseed every CUDA device too
            torch.default_generator.manual_seed(sample_seed(idx.seed, idx.epoch, idx.index))
            return self.transform(image), label

    def __getitems__(self, indices: list[int | SampleKey]) -> list[tuple[Any, Any]]:
        # Subset's batched fetch would skip the transform; go item by item instead.
        return [self[i] for i in indices]


class SampleKey(NamedTuple):
    """What a loader asks a dataset for: sample `index` of `epoch` in a run seeded `seed`."""

    seed: int
    epoch: int
    index: int


class _Keyed(Dataset):
    """The dataset a loader fetches from: `SampleKey`s to a `TransformedSubset` (it seeds its
    augmentation from them), plain indices to any other dataset."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self.keyed = isinstance(dataset, TransformedSubset) and dataset.augment

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: SampleKey) -> Any:
        return self.dataset[key if self.keyed else key.index]

    def __getitems__(self, keys: list[SampleKey]) -> list[Any]:
        batch = keys if self.keyed else [k.index for k in keys]
        fetch = getattr(self.dataset, "__getitems__", None)
        return fetch(batch) if fetch is not None else [self.dataset[k] for k in batch]


def build_datasets(config: DataConfig) -> DataSplits:
    """The train / valid / test splits that `config` describes."""
    builders = {
        "digits": _digits,
        "cifar10": _cifar10,
        "imagefolder": _imagefolder,
        "fashion_mnist": _fashion_mnist,
    }
    return builders[config.dataset](config)


def stratified_split(
    targets: Sequence[int] | np.ndarray, fraction: float, seed: int, stream: int
) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held) sorted index arrays, holding out `fraction` of every class.

    Each class with at least two members keeps at least one and holds out at least one, so small
    sets still put every class in both parts. The draw is a pure function of (seed, stream).
    """
    y = np.asarray(targets, dtype=np.int64)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(stream)]))
    kept, held = [], []
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        n = len(members)
        k = min(max(round(n * fraction), 1), n - 1) if n >= 2 else 0
        held.append(members[:k])
        kept.append(members[k:])
    if not y.size:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(held))


def _train_valid(
    targets: Sequence[int] | np.ndarray, config: DataConfig, where: str
) -> tuple[np.ndarray, np.ndarray]:
    """(train, valid) indices into `targets`: `train_subset` of them first, where set."""
    y = np.asarray(targets, dtype=np.int64)
    pool = np.arange(len(y))
    n = config.train_subset
    if n is not None and n > len(y):
        raise ProxylessError(f"{where}: data.train_subset: {n} is more than its {len(y)} images")
    if n is not None and n < len(y):
        _, pool = stratified_split(y, n / len(y), config.split_seed, SplitStream.SUBSET)
    kept, held = stratified_split(
        y[pool], config.valid_fraction, config.split_seed, SplitStream.VALID
    )
    train_idx, valid_idx = pool[kept], pool[held]
    if not len(train_idx) or not len(valid_idx):
        raise ProxylessError(
            f"{where}: {len(targets)} training images are too few to hold out a valid split"
        )
    return train_idx, valid_idx


def normalisation(dataset: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (mean, std) a dataset's images are normalised with, after scaling pixels
    to [0, 1]: what a deployment must apply before the net."""
    return {
        "digits": ((DIGITS_MEAN,) * 3, (DIGITS_STD,) * 3),
        "cifar10": (CIFAR10_MEAN, CIFAR10_STD),
        "imagefolder": (IMAGENET_MEAN, IMAGENET_STD),
        "fashion_mnist": ((FASHION_MNIST_MEAN,) * 3, (FASHION_MNIST_STD,) * 3),
    }[dataset]


def _digits(config: DataConfig) -> DataSplits:
    from sklearn.datasets import load_digits  # here: importing sklearn takes a second

    digits = load_digits()
    grey = torch.as_tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.as_tensor(digits.target, dtype=torch.int64)
    rest, test = stratified_split(labels.numpy(), 0.2, config.split_seed, SplitStream.TEST)
    train, valid = (rest[i] for i in _train_valid(labels[rest].numpy(), config, "digits"))
    return _in_memory(grey, labels, (train, valid, test), config, DIGITS_MEAN, DIGITS_STD)


def _fashion_mnist(config: DataConfig) -> DataSplits:
    root = Path(config.data_dir or FASHION_MNIST_DIR)
    x, y = read_images_and_labels(root, "train-images-idx3-ubyte", "train-labels-idx1-ubyte")
    tx, ty = read_images_and_labels(root, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    train, valid = _train_valid(y, config, f"fashion_mnist: {root}")
    keep = np.concatenate([train, valid])  # only these images are resized and kept
    grey = torch.as_tensor(np.concatenate([x[keep], tx]), dtype=torch.float32).unsqueeze(1)
    labels = torch.as_tensor(np.concatenate([y[keep], ty]), dtype=torch.int64)
    parts = (
        np.arange(len(train)),
        np.arange(len(train), len(keep)),
        len(keep) + np.arange(len(tx)),
    )
    return _in_memory(grey / 255.0, labels, parts, config, FASHION_MNIST_MEAN, FASHION_MNIST_STD)


def _in_memory(
    grey: torch.Tensor,
    labels: torch.Tensor,
    parts: tuple[np.ndarray, np.ndarray, np.ndarray],
    config: DataConfig,
    mean: float,
    std: float,
) -> DataSplits:
    """Splits of N × 1 × H × W grey images in [0, 1]: resized once to `resolution`, normalised,
    three channels as a view; the train part augmented per `config.augment`."""
    if config.resolution != grey.shape[-1]:
        size = (config.resolution, config.resolution)
        grey = torch.nn.functional.interpolate(
            grey, size=size, mode="bilinear", align_corners=False
        )
    grey = (grey - mean) / std

    def part(idx: np.ndarray) -> TensorDataset:
        t = torch.as_tensor(idx)
        return TensorDataset(grey[t].expand(-1, 3, -1, -1), labels[t])

    train, valid, test = (part(p) for p in parts)
    if (config.augment or default_augment(config.dataset)) == "small":
        shift = ShiftFlip(config.resolution, fill=-mean / std)
        train = TransformedSubset(train, range(len(train)), shift, augment=True)
    return DataSplits(train, valid, test, num_classes=10)


def _cifar10(config: DataConfig) -> DataSplits:
    from torchvision.datasets import CIFAR10

    root = Path(config.data_dir or "")
    where = root / CIFAR10.base_folder

    def load(train: bool) -> CIFAR10:
        try:
            return CIFAR10(root=str(root), train=train, download=config.download)
        except RuntimeError:
            hint = "pass --download on a connected machine, or copy cifar-10-batches-py there"
            if config.download:
                hint = "the download did not complete"
            raise ProxylessError(f"cifar10: {where}: missing or corrupted; {hint}") from None
        except OSError as e:
            raise ProxylessError(f"cifar10: cannot read or download {where}: {e}") from None

    train_set, test_set = load(True), load(False)
    recipe = config.augment or default_augment("cifar10")
    augment, plain = photo_transforms(recipe, config.resolution, CIFAR10_MEAN, CIFAR10_STD)
    train, valid = _train_valid(train_set.targets, config, f"cifar10: {where}")
    return DataSplits(
        train=TransformedSubset(train_set, train, augment, augment=True),
        valid=TransformedSubset(train_set, valid, plain),
        test=TransformedSubset(test_set, range(len(test_set)), plain),
        num_classes=len(train_set.classes),
    )


def _imagefolder(config: DataConfig) -> DataSplits:
    root = Path(config.data_dir or "")
    train_dir, val_dir = root / "train", root / "val"
    train_set, val_set = _image_folder(train_dir), _image_folder(val_dir)
    if train_set.classes != val_set.classes:
        only_train = sorted(set(train_set.classes) - set(val_set.classes))
        only_val = sorted(set(val_set.classes) - set(train_set.classes))
        raise ProxylessError(
            f"imagefolder: class folders of {train_dir} and {val_dir} differ "
            f"(only in train: {_short(only_train)}; only in val: {_short(only_val)})"
        )
    augment, plain = _folder_transforms(config, train_set)
    train, valid = _train_valid(train_set.targets, config, f"imagefolder: {train_dir}")
    return DataSplits(
        train=TransformedSubset(train_set, train, augment, augment=True),
        valid=TransformedSubset(train_set, valid, plain),
        test=TransformedSubset(val_set, range(len(val_set)), plain),
        num_classes=len(train_set.classes),
    )


def _folder_transforms(
    config: DataConfig, folder: ImageFolder
) -> tuple[Callable[[Any], torch.Tensor], Callable[[Any], torch.Tensor]]:
    """(train, evaluation) transforms of an image folder: `config.augment`, else the recipe its
    first image's size calls for."""
    recipe = config.augment
    if recipe is None:
        from PIL import Image

        with Image.open(folder.samples[0][0]) as first:
            recipe = default_augment("imagefolder", min(first.size))
    return photo_transforms(recipe, config.resolution, IMAGENET_MEAN, IMAGENET_STD)


def imagenet_eval_transform(resolution: int) -> Callable[[Any], torch.Tensor]:
    """The official ImageNet evaluation: resize the short side to ⌈r / 0.875⌉ (256 for 224),
    centre-crop r × r, ImageNet mean / std."""
    return photo_transforms("imagenet", resolution, IMAGENET_MEAN, IMAGENET_STD)[1]


def evaluation_split(config: DataConfig) -> tuple[Dataset, int]:
    """The split a trained net is scored on, and its class count: the test split of digits,
    CIFAR-10 and Fashion-MNIST; for imagefolder `data_dir/val` (or `data_dir` itself when it
    holds the class folders), with its recipe's evaluation transform (`nas_core.augment`) and
    no train tree to scan."""
    if config.dataset != "imagefolder":
        splits = build_datasets(config)
        return splits.test, splits.num_classes
    root = Path(config.data_dir or "")
    folder = _image_folder(root / "val" if (root / "val").is_dir() else root)
    transform = _folder_transforms(config, folder)[1]
    return TransformedSubset(folder, range(len(folder)), transform), len(folder.classes)


def _image_folder(path: Path) -> ImageFolder:
    """An untransformed ImageFolder of `path`; a missing or empty tree is a ProxylessError."""
    from torchvision.datasets import ImageFolder

    if not path.is_dir():
        raise ProxylessError(f"imagefolder: {path}: no such folder (expected <class>/<image>)")
    try:
        return ImageFolder(str(path))
    except FileNotFoundError as e:
        detail = " ".join(str(e).split())
        raise ProxylessError(f"imagefolder: {path}: {detail}") from None


def _short(names: Sequence[str], limit: int = 5) -> str:
    if not names:
        return "none"
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


class ShardSampler(Sampler[int]):
    """Rank `rank`'s share of one permutation of `range(n)` seeded from (seed, epoch).

    With `world_size` > 1 every rank gets the same number of samples (DDP steps in lockstep):
    the permutation is cut to a multiple of `world_size` (`drop_last`) or padded by wrapping
    around, then rank r takes positions r, r + world_size, ... `set_epoch` moves a loader (and
    its persistent workers) on to another epoch.
    """

    def __init__(
        self,
        n: int,
        shuffle: bool,
        seed: int = 0,
        epoch: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.n, self.shuffle, self.seed, self.epoch = n, shuffle, seed, epoch
        self.drop_last, self.rank, self.world_size = drop_last, rank, world_size

    def _order(self) -> list[int]:
        if self.shuffle:
            g = step_generator(self.seed, self.epoch, Stream.SHUFFLE)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        if self.world_size > 1:
            if self.drop_last:
                order = order[: self.n - self.n % self.world_size]
            elif order and self.n % self.world_size:
                pad = self.world_size - self.n % self.world_size
                order += (order * math.ceil(pad / len(order)))[:pad]
        return order[self.rank :: self.world_size]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        return iter(self._order())

    def __len__(self) -> int:
        if self.world_size == 1:
            return self.n
        if self.drop_last:
            return self.n // self.world_size
        return math.ceil(self.n / self.world_size) if self.n else 0


class _KeySampler(Sampler[SampleKey]):
    """A `ShardSampler`'s indices as `SampleKey`s of its (seed, epoch)."""

    def __init__(self, shard: ShardSampler) -> None:
        self.shard = shard

    def set_epoch(self, epoch: int) -> None:
        self.shard.set_epoch(epoch)

    def __iter__(self) -> Iterator[SampleKey]:
        seed, epoch = self.shard.seed, self.shard.epoch  # fixed for this pass
        return (SampleKey(seed, epoch, i) for i in self.shard)

    def __len__(self) -> int:
        return len(self.shard)


def make_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    epoch: int = 0,
    drop_last: bool = False,
    num_workers: int = 0,
    rank: int = 0,
    world_size: int = 1,
    pin_memory: bool = False,
    persistent: bool = False,
) -> DataLoader:
    """A loader whose batches are a pure function of (dataset, seed, epoch, rank, world_size).

    `drop_last` drops both the samples that do not split evenly over the ranks and the last
    incomplete batch. Random augmentation is seeded per sample from (seed, epoch, index), in the
    main process and in workers alike. `persistent` keeps the `num_workers` processes for the
    loader's life: move it to another epoch with `loader.sampler.set_epoch(epoch)`.
    `pin_memory` (for a CUDA consumer) lets `.to(device, non_blocking=True)` copy without a wait.
    """
    if batch_size < 1 or num_workers < 0 or not 0 <= rank < world_size:  # a caller's bug
        raise ValueError(f"make_loader({batch_size=}, {num_workers=}, {rank=}, {world_size=})")
    shard = ShardSampler(len(dataset), shuffle, seed, epoch, drop_last, rank, world_size)
    return DataLoader(
        _Keyed(dataset),
        batch_size=batch_size,
        sampler=_KeySampler(shard),
        drop_last=drop_last,
        num_workers=num_workers,
        generator=step_generator(seed, epoch, Stream.LOADER_WORKERS + rank),
        pin_memory=pin_memory,
        persistent_workers=persistent and num_workers > 0,
    )
