"""The datasets held as tensors: digits and Fashion-MNIST, resized once and kept in memory.

Resizing per item would cost more than the tiny nets that train on them. The grey channel is an
`expand` view on three, since every space's stem takes RGB (a one-channel stem would change the
published spaces) and a view costs no memory. Their only augmentation is `small` (`ShiftFlip`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from nas_core.augment import ShiftFlip, default_augment
from nas_core.data import (
    DIGITS_CLASSES,
    DIGITS_MEAN,
    DIGITS_STD,
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DIR,
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    DataConfig,
    DataSplits,
    stratified_split,
    train_valid,
)
from nas_core.idx import read_images_and_labels
from nas_core.loader import TransformedSubset
from nas_core.sampling import SplitStream


def digits(config: DataConfig) -> DataSplits:
    from sklearn.datasets import load_digits  # here: importing sklearn takes a second

    digits = load_digits()
    grey = torch.as_tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.as_tensor(digits.target, dtype=torch.int64)
    rest, test = stratified_split(labels.numpy(), 0.2, config.split_seed, SplitStream.TEST)
    train, valid = (rest[i] for i in train_valid(labels[rest].numpy(), config, "digits"))
    parts = (train, valid, test)
    return _in_memory(grey, labels, parts, config, (DIGITS_MEAN, DIGITS_STD), DIGITS_CLASSES)


def fashion_mnist(config: DataConfig) -> DataSplits:
    root = Path(config.data_dir or FASHION_MNIST_DIR)
    x, y = read_images_and_labels(root, "train-images-idx3-ubyte", "train-labels-idx1-ubyte")
    tx, ty = read_images_and_labels(root, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    train, valid = train_valid(y, config, f"fashion_mnist: {root}")
    keep = np.concatenate([train, valid])  # only these images are resized and kept
    grey = torch.as_tensor(np.concatenate([x[keep], tx]), dtype=torch.float32).unsqueeze(1)
    labels = torch.as_tensor(np.concatenate([y[keep], ty]), dtype=torch.int64)
    parts = (
        np.arange(len(train)),
        np.arange(len(train), len(keep)),
        len(keep) + np.arange(len(tx)),
    )
    norm = (FASHION_MNIST_MEAN, FASHION_MNIST_STD)
    return _in_memory(grey / 255.0, labels, parts, config, norm, FASHION_MNIST_CLASSES)


def _in_memory(
    grey: torch.Tensor,
    labels: torch.Tensor,
    parts: tuple[np.ndarray, np.ndarray, np.ndarray],
    config: DataConfig,
    normalise: tuple[float, float],
    class_names: tuple[str, ...],
) -> DataSplits:
    """Splits of N × 1 × H × W grey images in [0, 1]: resized once to `resolution`, normalised
    by (mean, std), three channels as a view; the train part augmented per `config.augment`."""
    mean, std = normalise
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
    return DataSplits(train, valid, test, len(class_names), class_names=class_names)
