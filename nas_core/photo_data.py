"""The datasets decoded from files: CIFAR-10 and ImageNet-style image folders.

The source is decoded once and shared: `TransformedSubset` gives train and valid different
transforms (augmentation on train only) without loading the data twice; two torchvision
datasets would double CIFAR's memory and scan an ImageNet tree twice. torchvision is imported
in the functions: it costs ~2.5 s per process (it loads torch._dynamo), and every Train worker,
architecture actor and trial process imports `nas_core.data`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from nas_core.augment import default_augment, photo_transforms
from nas_core.data import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    DataConfig,
    DataSplits,
    train_valid,
)
from nas_core.errors import ProxylessError
from nas_core.loader import TransformedSubset

if TYPE_CHECKING:
    from torchvision.datasets import CIFAR10, ImageFolder

Transforms = tuple[Callable[[Any], torch.Tensor], Callable[[Any], torch.Tensor]]  # train, eval


def cifar10(config: DataConfig) -> DataSplits:
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
    transforms = photo_transforms(recipe, config.resolution, CIFAR10_MEAN, CIFAR10_STD)
    return _splits(train_set, test_set, transforms, config, f"cifar10: {where}")


def imagefolder(config: DataConfig) -> DataSplits:
    root = Path(config.data_dir or "")
    train_dir, val_dir = root / "train", root / "val"
    train_set, val_set = image_folder(train_dir), image_folder(val_dir)
    if train_set.classes != val_set.classes:
        only_train = sorted(set(train_set.classes) - set(val_set.classes))
        only_val = sorted(set(val_set.classes) - set(train_set.classes))
        raise ProxylessError(
            f"imagefolder: class folders of {train_dir} and {val_dir} differ "
            f"(only in train: {_short(only_train)}; only in val: {_short(only_val)})"
        )
    transforms = folder_transforms(config, train_set)
    return _splits(train_set, val_set, transforms, config, f"imagefolder: {train_dir}")


def _splits(
    train_set: CIFAR10 | ImageFolder,
    test_set: CIFAR10 | ImageFolder,
    transforms: Transforms,
    config: DataConfig,
    where: str,
) -> DataSplits:
    """Train and valid drawn from `train_set` (`train_valid`), the whole `test_set` as test;
    `transforms` (augmenting, plain): train is augmented, valid and test are not."""
    augment, plain = transforms
    train, valid = train_valid(train_set.targets, config, where)
    return DataSplits(
        train=TransformedSubset(train_set, train, augment, augment=True),
        valid=TransformedSubset(train_set, valid, plain),
        test=TransformedSubset(test_set, range(len(test_set)), plain),
        num_classes=len(train_set.classes),
        class_names=tuple(train_set.classes),
    )


def folder_transforms(config: DataConfig, folder: ImageFolder) -> Transforms:
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


def image_folder(path: Path) -> ImageFolder:
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
