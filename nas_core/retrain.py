"""Retraining a derived architecture from scratch, as its own job.

The standalone net is built fresh from the architecture file (no super-net weights), trained
with SGD Nesterov + cosine lr per batch, label smoothing and no weight decay on BN / biases
(official recipe), then evaluated on the test split, sized, priced by the latency table and
timed on the device it trained on (a GPU net's measured latency is a GPU latency). Its out
dir holds weights.pt, the record of what those weights learned and scored beside it
(weights.meta.json, `nas_core.weights_meta`), architecture.json and retrain.json (the history).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from nas_core.architecture import Architecture, build_net
from nas_core.checkpoint import save_checkpoint
from nas_core.config import RunSettings
from nas_core.data import DataConfig, DataSplits, build_datasets, normalisation
from nas_core.device import resolve_device
from nas_core.errors import ProxylessError
from nas_core.evaluation import evaluate
from nas_core.io import atomic_write_text
from nas_core.latency.predictor import architecture_latency
from nas_core.latency.profiler import ProfileConfig, time_module
from nas_core.latency.table import LatencyTable
from nas_core.loader import make_loader
from nas_core.metrics import NONFINITE_CHECK_EVERY, StepMetrics
from nas_core.precision import Amp, to_memory_format, training_speedups
from nas_core.retrain_config import RetrainConfig, RetrainRecipe
from nas_core.stats import net_stats
from nas_core.training import cosine_lr, to_device, weight_step
from nas_core.weights import load_weights
from nas_core.weights_meta import RetrainMetrics, WeightsMeta, meta_name


@dataclass(frozen=True)
class RetrainResult:
    test_accuracy: float
    test_loss: float
    test_samples: int  # the test split's size: how far one image moves the accuracy
    params: int
    macs: int
    latency_table_ms: float | None
    latency_measured_ms: float | None
    history: tuple[dict[str, float], ...]

    def summary(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("history")
        d["images_per_s"] = (
            self.history[-1].get("throughput/images_per_s") if self.history else None
        )
        return d


def _param_groups(net: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on BN parameters and biases (1-D tensors)."""
    decay = [p for p in net.parameters() if p.ndim > 1]
    no_decay = [p for p in net.parameters() if p.ndim <= 1]
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


STATE_FORMAT = "proxyless-tune/retrain/1"
WEIGHTS = "weights.pt"  # the trained net in `out_dir`; its record is meta_name(WEIGHTS) beside it


@dataclass(frozen=True)
class _Training:
    """What one retrain's epochs work on: the net (stepped through `train_net`, its compiled
    form under `compile`), its optimiser and loss scaler, the device and the config."""

    config: RetrainConfig
    device: torch.device
    net: torch.nn.Module
    train_net: torch.nn.Module
    opt: torch.optim.Optimizer
    amp: Amp

    @classmethod
    def start(cls, arch: Architecture, config: RetrainConfig, device: torch.device) -> _Training:
        """A fresh net from `config.seed`, SGD Nesterov without decay on BN / biases."""
        torch.manual_seed(config.seed)
        net = to_memory_format(build_net(arch), config.channels_last).to(device)
        # compiled for training only: weights are saved and latency is measured on `net` itself
        train_net = torch.compile(net) if config.compile else net
        opt = torch.optim.SGD(
            _param_groups(net, config.weight_decay),
            lr=config.lr,
            momentum=config.momentum,
            nesterov=True,
        )
        return cls(config, device, net, train_net, opt, Amp(config.amp, device))

    def loader(self, dataset: Any, epoch: int = 0, train: bool = True) -> Any:
        """Training: seeded shuffled whole batches of `epoch`; scoring: 256 a batch, in order."""
        pinned = self.device.type == "cuda"
        if not train:
            return make_loader(dataset, 256, False, pin_memory=pinned)
        return make_loader(
            dataset,
            self.config.batch_size,
            True,
            seed=self.config.seed,
            epoch=epoch,
            drop_last=True,
            pin_memory=pinned,
        )

    def state(self, epoch: int, step: int, history: list[dict[str, float]]) -> dict[str, Any]:
        """What `retrain(resume=…)` needs to continue after `epoch`."""
        return {
            "format": STATE_FORMAT,
            "epoch": epoch + 1,  # the next epoch to run
            "step": step,
            "history": list(history),
            "net": {k: v.cpu() for k, v in self.net.state_dict().items()},
            "optimizer": self.opt.state_dict(),
            "amp": self.amp.state_dict(),
            "torch_rng": torch.get_rng_state(),
        }

    def load(self, state: Mapping[str, Any]) -> tuple[int, int, list[dict[str, float]]]:
        """Put a retrain state into the net, optimiser and scaler; (step, next epoch, history)."""
        if state.get("format") != STATE_FORMAT:
            raise ProxylessError(f"not a retrain checkpoint (format {state.get('format')!r})")
        load_weights(self.net, state["net"], "retrain checkpoint")
        self.opt.load_state_dict(state["optimizer"])
        self.amp.load_state_dict(state["amp"])
        torch.set_rng_state(state["torch_rng"])
        return int(state["step"]), int(state["epoch"]), list(state["history"])


def retrain(
    arch: Architecture,
    config: RetrainConfig,
    out_dir: str | Path | None = None,
    on_epoch_end: Callable[[int, dict[str, float], dict[str, Any]], None] | None = None,
    table: LatencyTable | None = None,
    resume: Mapping[str, Any] | None = None,
) -> RetrainResult:
    """Train `arch` from scratch, or continue from `resume` (a state `on_epoch_end` was given).

    `on_epoch_end(epoch, metrics, state)` sees every epoch's numbers and the state to checkpoint
    (weights, optimiser, loss scaler, step, history and RNG); passing that state back as
    `resume` continues with the next epoch exactly where it stopped.
    """
    device = resolve_device(config.device)  # before any data is read
    data_config, data = _datasets(arch, config)
    if table is None and config.lut:
        table = LatencyTable.load(config.lut)
    latency_table = architecture_latency(arch, table) if table is not None else None
    t = _Training.start(arch, config, device)
    total = config.epochs * len(t.loader(data.train))
    history: list[dict[str, float]] = []
    step, first_epoch = 0, 0
    if resume is not None:
        step, first_epoch, history = t.load(resume)
    with training_speedups(device):
        for epoch in range(first_epoch, config.epochs):
            step, row = _epoch(t, data, epoch, step, total)
            history.append(row)
            if on_epoch_end is not None:
                on_epoch_end(epoch, row, t.state(epoch, step, history))
    result = _tested(t, arch, data, latency_table, history)
    if out_dir is not None:
        meta = _weights_meta(config.replace(data=data_config), data, result, table)
        _write_outputs(Path(out_dir), t.net, arch, result, meta)
    return result


def _datasets(arch: Architecture, config: RetrainConfig) -> tuple[DataConfig, DataSplits]:
    """`config`'s data at the net's resolution, and its splits; their classes must be the net's."""
    data_config = config.data.replace(resolution=arch.space.resolution)
    data = build_datasets(data_config)
    classes = arch.space.config.num_classes
    if classes != data.num_classes:
        name = data_config.dataset
        raise ProxylessError(f"architecture has {classes} classes, {name} has {data.num_classes}")
    return data_config, data


def _epoch(
    t: _Training, data: DataSplits, epoch: int, step: int, total: int
) -> tuple[int, dict[str, float]]:
    """One epoch of weight steps (cosine lr per step of `total`), then the valid split's score;
    (the next step, the epoch's history row)."""
    config = t.config
    t.net.train()
    metrics = StepMetrics(step)
    started = time.perf_counter()
    batches = t.loader(data.train, epoch)
    images = len(batches) * config.batch_size
    for x, y in batches:
        lr = cosine_lr(config.lr, step, total)
        x = to_device(x, t.device, config.channels_last)
        y = y.to(t.device, non_blocking=True)
        loss, acc = weight_step(t.train_net, t.opt, x, y, lr, config.label_smoothing, t.amp)
        metrics.watch_finite(loss)
        metrics.add({"train/loss": loss, "train/accuracy": acc})
        step += 1
        if step % NONFINITE_CHECK_EVERY == 0:
            metrics.raise_if_nonfinite(step)
    metrics.raise_if_nonfinite(step)
    means = metrics.means()
    throughput = images / (time.perf_counter() - started)
    valid = t.loader(data.valid, train=False)
    v_loss, v_acc = evaluate(t.net, valid, t.device, config.channels_last)
    return step, {
        "epoch": epoch,
        "train/loss": means["train/loss"],
        "train/accuracy": means["train/accuracy"],
        "valid/loss": v_loss,
        "valid/accuracy": v_acc,
        "throughput/images_per_s": throughput,
    }


def _tested(
    t: _Training,
    arch: Architecture,
    data: DataSplits,
    latency_table: float | None,
    history: list[dict[str, float]],
) -> RetrainResult:
    """The trained net scored on the test split, sized, and timed where it trained."""
    test = t.loader(data.test, train=False)
    test_loss, test_acc = evaluate(t.net, test, t.device, t.config.channels_last)
    stats = net_stats(t.net, arch.space.resolution)
    measured = None
    if t.config.measure_latency:  # on the device it trained on, as its table was profiled
        shape = (3, arch.space.resolution, arch.space.resolution)
        threads = 1 if t.device.type == "cpu" else None
        profile = ProfileConfig.from_config(
            {"device": t.config.device, "threads": threads, "warmup": 5, "repeats": 30}
        )
        measured = time_module(t.net, shape, profile).mean
    return RetrainResult(
        test_acc,
        test_loss,
        len(data.test),
        stats.params,
        stats.macs,
        latency_table,
        measured,
        tuple(history),
    )


def _weights_meta(
    config: RetrainConfig, data: DataSplits, result: RetrainResult, table: LatencyTable | None
) -> WeightsMeta:
    """The record beside the weights: what they learned (`config.data`, at the net's
    resolution), how, what they scored and which device's table priced them."""
    mean, std = normalisation(config.data.dataset)
    learned = config.data
    if learned.data_dir is not None:  # read back from any working directory
        learned = learned.replace(data_dir=str(Path(learned.data_dir).resolve()))
    return WeightsMeta(
        data=learned,
        num_classes=data.num_classes,
        class_names=data.class_names,
        mean=mean,
        std=std,
        recipe=RetrainRecipe.from_config(
            config.model_dump(include=set(RetrainRecipe.model_fields))
        ),
        run=RunSettings.from_config(config.model_dump(include=set(RunSettings.model_fields))),
        metrics=RetrainMetrics.from_config(result.summary()),
        latency_device=table.meta.device if table is not None else None,
    )


def _write_outputs(
    out: Path, net: torch.nn.Module, arch: Architecture, result: RetrainResult, meta: WeightsMeta
) -> None:
    """weights.pt (CPU tensors) and its record, architecture.json and retrain.json, each
    written atomically."""
    out.mkdir(parents=True, exist_ok=True)
    weights = {k: v.cpu() for k, v in net.state_dict().items()}  # loadable on any device
    save_checkpoint(out / WEIGHTS, weights)  # temp file + rename
    meta.save(out / meta_name(WEIGHTS))
    arch.save(out / "architecture.json")
    atomic_write_text(
        out / "retrain.json",
        json.dumps({**result.summary(), "history": list(result.history)}, indent=2) + "\n",
    )
