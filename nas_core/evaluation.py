"""Score a trained network on a dataset's evaluation split: top-1, top-5, loss, images/s.

What `proxyless evaluate` runs, for our nets and the published ones alike. The images/s are
end to end (decoding and copies included), so they say how long an evaluation takes, not how
fast the net alone is (`latency validate` measures that).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from nas_core.data import DataConfig, evaluation_split, make_loader
from nas_core.device import to_host
from nas_core.errors import ProxylessError
from nas_core.search import evaluate_sums


@dataclass(frozen=True)
class Evaluation:
    """Mean scores over `images` images and the wall time they took."""

    top1: float
    top5: float
    loss: float
    images: int
    seconds: float

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")

    def to_config(self) -> dict[str, Any]:
        return {**asdict(self), "images_per_s": self.images_per_s}


def parse_data(text: str, resolution: int) -> DataConfig:
    """`digits`, `fashion_mnist[:DIR]`, `cifar10:DIR` or `imagefolder:DIR` (the `--data`
    flag) as a data config."""
    dataset, _, folder = text.partition(":")
    needs_folder = {"digits": False, "cifar10": True, "imagefolder": True}
    if dataset not in (*needs_folder, "fashion_mnist") or (
        dataset in needs_folder and needs_folder[dataset] != bool(folder)
    ):
        raise ProxylessError(
            "--data must be digits, fashion_mnist[:DIR], cifar10:DIR or imagefolder:DIR, "
            f"got {text!r}"
        )
    return DataConfig.from_config(
        {"dataset": dataset, "data_dir": folder or None, "resolution": resolution}
    )


def num_outputs(net: nn.Module) -> int:
    """The classes a classifier net predicts: its last linear layer's outputs."""
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ProxylessError("the network has no linear classifier to score")
    return linears[-1].out_features


def evaluate_net(
    net: nn.Module,
    data: DataConfig,
    device: torch.device,
    batch_size: int = 100,
    workers: int | None = None,
) -> Evaluation:
    """Score `net` (eval mode, fp32, running BN statistics) on `data`'s evaluation split."""
    dataset, classes = evaluation_split(data)
    outputs = num_outputs(net)
    if outputs != classes:
        raise ProxylessError(
            f"the network predicts {outputs} classes, {data.dataset} has {classes}"
        )
    if workers is None:  # in-memory digits gain nothing from workers; decoding images does
        workers = 0 if data.dataset == "digits" else min(8, os.cpu_count() or 1)
    loader = make_loader(
        dataset, batch_size, shuffle=False, num_workers=workers, pin_memory=device.type == "cuda"
    )
    net = net.to(device)
    started = time.perf_counter()
    sums = to_host(evaluate_sums(net, loader, device)).tolist()
    seconds = time.perf_counter() - started
    loss, top1, images, top5 = sums
    n = max(images, 1)
    return Evaluation(top1 / n, top5 / n, loss / n, int(images), seconds)
