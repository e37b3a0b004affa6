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
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator
from torch.utils.data import Dataset

from nas_core.augment import Augment
from nas_core.config import ConfigModel
from nas_core.errors import ProxylessError
from nas_core.loader import TransformedSubset
from nas_core.sampling import SplitStream

if TYPE_CHECKING:  # torchvision is imported where CIFAR-10 and image folders need it: it
    # costs ~2.5 s per process (it loads torch._dynamo), and every Train worker, architecture
    # actor and trial process imports this module
    pass

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
# label i's name, as Zalando's README lists them
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot")  # fmt: skip
DIGITS_CLASSES = tuple(str(d) for d in range(10))
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
    class_names: tuple[str, ...] | None = None  # label i's name, where the dataset names them


def build_datasets(config: DataConfig) -> DataSplits:
    """The train / valid / test splits that `config` describes."""
    from nas_core import in_memory_data, photo_data  # they build on this module's pieces

    builders = {
        "digits": in_memory_data.digits,
        "fashion_mnist": in_memory_data.fashion_mnist,
        "cifar10": photo_data.cifar10,
        "imagefolder": photo_data.imagefolder,
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


def train_valid(
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


def evaluation_split(config: DataConfig) -> tuple[Dataset, int]:
    """The split a trained net is scored on, and its class count: the test split of digits,
    CIFAR-10 and Fashion-MNIST; for imagefolder `data_dir/val` (or `data_dir` itself when it
    holds the class folders), with its recipe's evaluation transform (`nas_core.augment`) and
    no train tree to scan."""
    if config.dataset != "imagefolder":
        splits = build_datasets(config)
        return splits.test, splits.num_classes
    from nas_core.photo_data import folder_transforms, image_folder

    root = Path(config.data_dir or "")
    folder = image_folder(root / "val" if (root / "val").is_dir() else root)
    transform = folder_transforms(config, folder)[1]
    return TransformedSubset(folder, range(len(folder)), transform), len(folder.classes)
