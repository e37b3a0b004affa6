"""Training-time augmentation, by name (`data.augment`), and the evaluation transform it implies.

- `imagenet`: `RandomResizedCrop(r)` (8–100 % of the area, aspect 3/4–4/3) and a horizontal
  flip, the official ImageNet recipe; evaluation resizes to ⌈r / 0.875⌉ and centre-crops r.
  Made for photos of hundreds of pixels: on a 28-px image it can keep a 8 × 8 patch.
- `small`: the CIFAR recipe: pad r/8 (4 at 32 px), a random r × r crop and a horizontal flip;
  evaluation sees the whole image at r × r.
- `none`: the evaluation transform on training images too.

A dataset's default follows its images (`default_augment`): an image folder of small images
(under 64 px on the short side) gets `small`, of larger ones `imagenet`; CIFAR-10 and
Fashion-MNIST `small`; digits `none` (a mirrored 2 or 7 is no digit, and the images are 8 px).
A spec's search and its retrain build their data from one `DataConfig`, so both see the same
recipe. Random draws come from torch's RNG, which `data.TransformedSubset` seeds per sample.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F

Augment = Literal["imagenet", "small", "none"]
SMALL_IMAGE = 64  # px on the short side: below it an image folder defaults to `small`
DEFAULTS: dict[str, Augment] = {"digits": "none", "cifar10": "small", "fashion_mnist": "small"}


def default_augment(dataset: str, image_size: int | None = None) -> Augment:
    """The recipe `dataset` trains with when `data.augment` is not given; an image folder's
    follows the short side of its images (`image_size`)."""
    if dataset == "imagefolder":
        return "small" if image_size is not None and image_size < SMALL_IMAGE else "imagenet"
    return DEFAULTS[dataset]


def photo_transforms(
    augment: Augment, resolution: int, mean: Sequence[float], std: Sequence[float]
) -> tuple[Callable[[Any], torch.Tensor], Callable[[Any], torch.Tensor]]:
    """(train, evaluation) transforms of decoded PIL images under `augment`."""
    import math

    from torchvision import transforms as T

    tensor = [T.ToTensor(), T.Normalize(mean, std)]
    r = resolution
    if augment == "imagenet":
        plain = T.Compose([T.Resize(math.ceil(r / 0.875)), T.CenterCrop(r), *tensor])
        train = T.Compose([T.RandomResizedCrop(r), T.RandomHorizontalFlip(), *tensor])
        return train, plain
    whole = [T.Resize(r), T.CenterCrop(r)]
    plain = T.Compose([*whole, *tensor])
    if augment == "none":
        return plain, plain
    crop = [T.RandomCrop(r, padding=max(r // 8, 1)), T.RandomHorizontalFlip()]
    return T.Compose([*whole, *crop, *tensor]), plain


class ShiftFlip:
    """`small` on an in-memory (C, r, r) tensor: pad r/8 with `fill` (a black pixel after
    normalisation), a random r × r crop and a horizontal flip half the time."""

    def __init__(self, resolution: int, fill: float) -> None:
        self.pad, self.fill = max(resolution // 8, 1), fill

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        p = self.pad
        padded = F.pad(image, (p, p, p, p), value=self.fill)
        dy, dx = (int(v) for v in torch.randint(0, 2 * p + 1, (2,)))
        out = padded[:, dy : dy + image.shape[1], dx : dx + image.shape[2]]
        return out.flip(-1) if bool(torch.rand(()) < 0.5) else out.contiguous()
