"""Score a trained network on a dataset's evaluation split: top-1, top-5, loss, images/s.

What `proxyless evaluate` runs, for our nets and the published ones alike. The images/s are
end to end (decoding and copies included), so they say how long an evaluation takes, not how
fast the net alone is (`latency validate` measures that).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from nas_core.batchnorm import batch_statistics, eval_mode, no_single_batches
from nas_core.data import DataConfig, evaluation_split
from nas_core.device import to_host
from nas_core.errors import ProxylessError
from nas_core.loader import make_loader
from nas_core.training import to_device


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


@torch.no_grad()
def evaluate_sums(
    net: nn.Module,
    loader: torch.utils.data.DataLoader,
    device: torch.device,
    channels_last: bool = False,
    bn: Literal["running", "batch"] = "running",
) -> torch.Tensor:
    """(Σ CE loss, top-1 correct, samples, top-5 correct) over a loader, without gradients, in
    fp32, left on the device (sums, so shards evaluated on several ranks add up).

    `bn="running"` scores in eval mode; `bn="batch"` normalises with each batch's own statistics
    and leaves the running ones as they were (`batch_statistics`), as the official search
    scores super-net paths: give it a loader whose batches mix the classes (`mixed_shard`).
    """
    sums = torch.zeros(4, dtype=torch.float64, device=device)
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]] = loader
    with contextlib.ExitStack() as stack:
        if bn == "batch":
            stack.enter_context(batch_statistics(net))
            batches = no_single_batches(loader)  # BN in train mode needs two values a channel
        else:
            stack.enter_context(eval_mode(net))
        for x, y in batches:
            x, y = to_device(x, device, channels_last), y.to(device, non_blocking=True)
            logits = net(x).float()
            k = min(5, logits.shape[1])
            sums[0] += F.cross_entropy(logits, y, reduction="sum")
            sums[1] += (logits.argmax(1) == y).sum()
            sums[2] += len(y)
            sums[3] += (logits.topk(k, 1).indices == y[:, None]).any(1).sum()
    return sums


def evaluate(
    net: nn.Module,
    loader: torch.utils.data.DataLoader,
    device: torch.device,
    channels_last: bool = False,
) -> tuple[float, float]:
    """Mean CE loss and accuracy over a loader, in eval mode and fp32; one host read."""
    return mean_loss_and_accuracy(evaluate_sums(net, loader, device, channels_last))


def mean_loss_and_accuracy(sums: torch.Tensor) -> tuple[float, float]:
    loss, right, total = to_host(sums).tolist()[:3]
    return loss / max(total, 1), right / max(total, 1)
