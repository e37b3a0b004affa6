"""Retraining a derived architecture from scratch, as its own job.

The standalone net is built fresh from the architecture file (no super-net weights), trained
with SGD Nesterov + cosine lr per batch, label smoothing and no weight decay on BN / biases
(official recipe), then evaluated on the test split, sized, priced by the latency table and
timed on this machine.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from nas_core.architecture import Architecture, build_net
from nas_core.checkpoint import save_checkpoint
from nas_core.data import DataConfig, build_datasets, make_loader
from nas_core.errors import ProxylessError
from nas_core.io import atomic_write_text
from nas_core.latency.predictor import architecture_latency
from nas_core.latency.profiler import ProfileConfig, time_module
from nas_core.latency.table import LatencyTable
from nas_core.search import cosine_lr, evaluate, weight_step
from nas_core.stats import net_stats


@dataclass(frozen=True)
class RetrainConfig:
    """Retraining recipe (official: 300 epochs, lr 0.05 cosine, wd 4e-5 not on BN)."""

    data: DataConfig = field(default_factory=DataConfig)
    epochs: int = 10
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 4e-5
    label_smoothing: float = 0.1
    batch_size: int = 64
    seed: int = 0
    device: str = "cpu"
    lut: str | None = None
    measure_latency: bool = True

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ProxylessError(f"{name} must be an integer >= 1, got {v!r}")
        if not (isinstance(self.lr, int | float) and self.lr > 0):
            raise ProxylessError(f"lr must be a number > 0, got {self.lr!r}")


@dataclass(frozen=True)
class RetrainResult:
    test_accuracy: float
    test_loss: float
    params: int
    macs: int
    latency_table_ms: float | None
    latency_measured_ms: float | None
    history: tuple[dict[str, float], ...]

    def summary(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("history")
        return d


def _param_groups(net: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on BN parameters and biases (1-D tensors)."""
    decay = [p for p in net.parameters() if p.ndim > 1]
    no_decay = [p for p in net.parameters() if p.ndim <= 1]
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def retrain(
    arch: Architecture,
    config: RetrainConfig,
    out_dir: str | Path | None = None,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
    table: LatencyTable | None = None,
) -> RetrainResult:
    """Train `arch` from scratch; `on_epoch_end(epoch, metrics)` sees every epoch's numbers."""
    data_config = replace(config.data, resolution=arch.space.resolution)
    data = build_datasets(data_config)
    classes = arch.space.config.num_classes
    if classes != data.num_classes:
        name = data_config.dataset
        raise ProxylessError(f"architecture has {classes} classes, {name} has {data.num_classes}")
    if table is None and config.lut:
        table = LatencyTable.load(config.lut)
    latency_table = architecture_latency(arch, table) if table is not None else None
    torch.manual_seed(config.seed)
    device = torch.device(config.device)
    net = build_net(arch).to(device)
    opt = torch.optim.SGD(
        _param_groups(net, config.weight_decay),
        lr=config.lr,
        momentum=config.momentum,
        nesterov=True,
    )
    per_epoch = len(
        make_loader(data.train, config.batch_size, True, seed=config.seed, drop_last=True)
    )
    total = config.epochs * per_epoch
    history = []
    step = 0
    for epoch in range(config.epochs):
        net.train()
        losses, accs = [], []
        for x, y in make_loader(
            data.train, config.batch_size, True, seed=config.seed, epoch=epoch, drop_last=True
        ):
            lr = cosine_lr(config.lr, step, total)
            loss, acc = weight_step(
                net, opt, x.to(device), y.to(device), lr, config.label_smoothing
            )
            losses.append(loss)
            accs.append(acc)
            step += 1
        v_loss, v_acc = evaluate(net, make_loader(data.valid, 256, False), device)
        train_loss, train_acc = sum(losses) / len(losses), sum(accs) / len(accs)
        history.append(
            {
                "epoch": epoch,
                "train/loss": train_loss,
                "train/accuracy": train_acc,
                "valid/loss": v_loss,
                "valid/accuracy": v_acc,
            }
        )
        if on_epoch_end is not None:
            on_epoch_end(epoch, history[-1])
    test_loss, test_acc = evaluate(net, make_loader(data.test, 256, False), device)
    stats = net_stats(net.cpu(), arch.space.resolution)
    measured = None
    if config.measure_latency:
        shape = (3, arch.space.resolution, arch.space.resolution)
        measured = time_module(net, shape, ProfileConfig(threads=1, warmup=5, repeats=30)).mean
    result = RetrainResult(
        test_acc, test_loss, stats.params, stats.macs, latency_table, measured, tuple(history)
    )
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        save_checkpoint(out / "weights.pt", net.state_dict())  # temp file + rename
        arch.save(out / "architecture.json")
        atomic_write_text(
            out / "retrain.json",
            json.dumps({**result.summary(), "history": list(history)}, indent=2) + "\n",
        )
    return result
