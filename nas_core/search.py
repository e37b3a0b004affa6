"""The single-process ProxylessNAS searcher: the reference semantics of the search.

Warm-up epochs train weights only, on paths sampled uniformly; then each epoch alternates weight
steps on the train split (one path sampled from softmax(α)) with one arch step every
`arch_every` batches on the held-out valid split. Every source of randomness is a pure function
of (seed, step) or (seed, epoch), and the end-of-epoch checkpoint holds everything else
(weights, α, both optimisers, the strategy's baseline, RNG state), so a resumed search follows
the same trajectory as one run straight through (bit for bit on the CPU; on a GPU cuDNN's
autotuned kernels are not deterministic, so only closely). A checkpoint resumes on any device.

There is one loop (`Searcher.loop`). What differs between a single process and a Ray Train
rank is injected: how α is updated from this rank's arch signal (`ArchSync`), how the ranks'
weights are kept equal (`WeightSync`) and what happens at the end of each epoch (callbacks:
checkpoint file and TensorBoard here, `ray.train.report` there). Data and the latency table
are built by the caller (`Searcher.from_config` for a single process).

On CUDA, weight steps may run in bf16/fp16 (`amp`), arch steps always in fp32
(`nas_core.precision`), and no step waits for the GPU: metrics stay on the device until the end
of the epoch, and the one host read per arch step goes through `nas_core.device.to_host`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from nas_core.arch_state import ArchState
from nas_core.batchnorm import mixed_shard
from nas_core.checkpoint import load_checkpoint
from nas_core.data import DataSplits, build_datasets
from nas_core.device import resolve_device
from nas_core.errors import ProxylessError
from nas_core.evaluation import evaluate_sums, mean_loss_and_accuracy
from nas_core.init import he_fout_
from nas_core.io import atomic_write_text
from nas_core.latency.predictor import LatencyModel, architecture_latency
from nas_core.latency.table import LatencyTable
from nas_core.loader import make_loader
from nas_core.metrics import NONFINITE_CHECK_EVERY, StepMetrics
from nas_core.precision import Amp, to_memory_format, training_speedups
from nas_core.ranks import RankGroup, SingleProcess
from nas_core.sampling import Stream, sample_paths, step_generator
from nas_core.search_config import SearchConfig, SearchSchedule
from nas_core.search_outputs import LocalOutputs
from nas_core.search_result import SearchResult, save_result, search_result
from nas_core.spaces import SearchSpace
from nas_core.strategy import create_strategy, make_arch_optimizer
from nas_core.supernet import SuperNet
from nas_core.training import cosine_lr, to_device, weight_step
from nas_core.weights import load_weights


def resolve_latency_table(
    config: SearchConfig, space: SearchSpace, device: torch.device | None = None
) -> LatencyTable:
    """The configured table, or one profiled on the search's own device (`device`, else
    `config.device`) into out_dir/latency.parquet: a GPU search is priced by GPU latency."""
    if config.lut is not None:
        return LatencyTable.load(config.lut)
    from nas_core.latency.profiler import ProfileConfig, profile_keys

    target = device if device is not None else resolve_device(config.device)
    keys = space.latency_layout().all_keys()
    return profile_keys(
        keys,
        ProfileConfig.for_search(str(target)),
        out=Path(config.out_dir) / "latency.parquet",
        progress=False,
        extra_meta={"space": space.to_config()},
    )


def initial_arch_state(space: SearchSpace, config: SearchSchedule) -> ArchState:
    """α of a new search: N(0, std²) from the seed's own stream (the official initialisation)."""
    specs = space.layer_specs()
    arch_state = ArchState([s.name for s in specs], [s.candidates for s in specs])
    return arch_state.init_normal_(
        step_generator(config.seed, 0, Stream.ALPHA_INIT), config.alpha_init_std
    )


class ArchSync(Protocol):
    """How an arch step turns the ranks' reduced signal into the new α (and its metrics)."""

    def update(self, searcher: Searcher, signal: Any) -> dict[str, float]: ...


class LocalArchSync:
    """A single process: apply its one signal with its own arch optimiser."""

    def update(self, searcher: Searcher, signal: Any) -> dict[str, float]:
        return searcher.strategy.apply(signal, searcher.net.arch_state, searcher.arch_opt)


class WeightSync(Protocol):
    """How K ranks keep their weights equal (a single process has none)."""

    def gradients(self, net: SuperNet, step: int) -> None:
        """Between the backward and the optimizer step."""

    def buffers(self, net: SuperNet) -> None:
        """After the optimizer step."""


class NoWeightSync:
    """A single process: its weights are the only copy, so there is nothing to exchange."""

    def gradients(self, net: SuperNet, step: int) -> None:
        pass

    def buffers(self, net: SuperNet) -> None:
        pass


class SearchCallback(Protocol):
    """Called on every rank after each epoch, with that epoch's metrics (which it may extend)."""

    def on_epoch_end(self, searcher: Searcher, metrics: dict[str, float]) -> None: ...


class Searcher:
    """The search's state and its one loop: super-net, strategy, optimisers, epoch and step.

    One weight step on Ray Train rank r, file by file: the path is drawn from (seed, step)
    (`nas_core.sampling`), so every rank draws the same one; `nas_core.training.weight_step`
    runs forward and backward on the rank's shard (`nas_core.loader.make_loader`); its
    `before_step` is `cluster.path_sync.PathSync.gradients`, one all-reduce of that path's
    gradients only; the optimiser steps; `PathSync.buffers` hands every rank rank 0's BN
    statistics of the path.

    One arch step: the strategy's signal on the rank's held-out batch
    (`nas_core.strategy.gradient` / `reinforce`), reduced over the process group
    (`Signal.reduce`, `nas_core.ranks`); rank 0 sends it to the architecture actor
    (`cluster.worker.ActorArchSync` → `cluster.arch_actor.ArchitectureActor.step`), which applies
    it with its optimiser and replies with α, broadcast to every rank. A single process runs
    the same loop with `LocalArchSync` and `NoWeightSync`.
    """

    def __init__(
        self,
        config: SearchConfig,
        data: DataSplits,
        table: LatencyTable | None,
        ranks: RankGroup | None = None,
        device: torch.device | None = None,
        arch_sync: ArchSync | None = None,
        weight_sync: WeightSync | None = None,
        loader_workers: int = 0,
    ) -> None:
        """`table` None searches without latency; `ranks` and the syncs are what K ranks
        inject; `loader_workers` processes decode each loader's batches."""
        self.config = config
        self.ranks = ranks if ranks is not None else SingleProcess()
        self.rank, self.world_size = self.ranks.rank, self.ranks.world_size
        self.batches = config.rank_batches(self.world_size)  # (weight, arch) batch of this rank
        self.loader_workers = loader_workers
        self.out = Path(config.out_dir)
        # a Ray Train worker passes the device Ray assigned it; else the config's
        self.device = device if device is not None else resolve_device(config.device)
        self.data = data
        self.space = config.build_space(self.data.num_classes)
        with torch.random.fork_rng(devices=[]):  # the weights' init, not the caller's RNG
            torch.manual_seed(config.seed)
            supernet = SuperNet(self.space, initial_arch_state(self.space, config))
            if config.weights.init == "he_fout":
                he_fout_(supernet)
            self._rng = torch.get_rng_state()  # the loop's own RNG (dropout, path drop)
        self.net = to_memory_format(supernet, config.channels_last).to(self.device)
        if config.weights.zero_init_residual:
            self.net.zero_init_residual_()
        self.table = table
        self.latency = LatencyModel(self.space, self.table) if self.table is not None else None
        self.strategy = create_strategy(config.strategy, self.latency)
        self.arch_opt = make_arch_optimizer(self.net.arch_state, config.strategy)
        self.arch_sync = arch_sync if arch_sync is not None else LocalArchSync()
        self.amp = Amp(config.amp, self.device)
        w = config.weights
        self.weight_opt = torch.optim.SGD(
            self.net.parameters(),
            lr=w.lr,
            momentum=w.momentum,
            nesterov=w.nesterov,
            weight_decay=w.weight_decay,
        )
        self.epoch, self.step = 0, 0
        self.history: list[dict[str, float]] = []
        self.weight_sync = weight_sync if weight_sync is not None else NoWeightSync()
        self._train = self._valid = self._eval = None  # made on first use, kept (`_loader`)

    @classmethod
    def from_config(cls, config: SearchConfig) -> Searcher:
        """A single-process search: its data, and its table (profiled on its device if the
        config names none)."""
        data = build_datasets(config.data)
        space = config.build_space(data.num_classes)
        device = resolve_device(config.device)
        return cls(config, data, resolve_latency_table(config, space, device), device=device)

    # ---- set-up ----

    @property
    def total_epochs(self) -> int:
        return self.config.warmup_epochs + self.config.epochs

    def _loader(self, dataset: Any, batch_size: int, seed: int, shuffle: bool = True) -> Any:
        """One loader per split for the whole run (its workers persist; `set_epoch` moves it)."""
        return make_loader(
            dataset,
            batch_size,
            shuffle,
            seed=seed,
            drop_last=shuffle,
            num_workers=self.loader_workers,
            rank=self.rank if shuffle else 0,
            world_size=self.world_size if shuffle else 1,
            pin_memory=self.device.type == "cuda",
            persistent=True,
        )

    def _train_loader(self, epoch: int) -> torch.utils.data.DataLoader:
        if self._train is None:
            self._train = self._loader(self.data.train, self.batches[0], self.config.seed)
        self._train.sampler.set_epoch(epoch)
        return self._train

    def _valid_batches(self, epoch: int):
        """Endless arch batches: pass k over the valid split in `epoch` is loader epoch
        epoch·1000 + k."""
        if self._valid is None:
            self._valid = self._loader(self.data.valid, self.batches[1], self.config.seed + 1)
        k = 0
        while True:
            self._valid.sampler.set_epoch(epoch * 1000 + k)
            yield from self._valid
            k += 1

    def _eval_loader(self) -> torch.utils.data.DataLoader:
        """This rank's share of the valid split in class-mixed order (scored with batch
        statistics; its sums are added over the ranks)."""
        if self._eval is None:
            shard = mixed_shard(self.data.valid, self.rank, self.world_size)
            self._eval = self._loader(shard, 256, 0, shuffle=False)
        return self._eval

    # ---- state ----

    def state_dict(self) -> dict[str, Any]:
        return {
            "format": "proxyless-tune/search/1",
            "config": self.config.to_config(),
            "epoch": self.epoch,
            "step": self.step,
            "weights": self.net.state_dict(),
            "arch": self.net.arch_state.state_dict(),
            "weight_opt": self.weight_opt.state_dict(),
            "arch_opt": self.arch_opt.state_dict(),
            "strategy": self.strategy.state_dict(),
            "amp": self.amp.state_dict(),
            "torch_rng": self._rng,
            "history": list(self.history),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from `state`, whichever device wrote it: tensors are copied onto ours."""
        ignored = {"out_dir": None, "epochs": None, "device": None}  # may change on resume
        mine = {**self.config.to_config(), **ignored}
        theirs = {**state.get("config", {}), **ignored}
        if mine != theirs:
            raise ProxylessError(
                "checkpoint was written by a search with another config; use a new out_dir"
            )
        load_weights(self.net, state["weights"], "search checkpoint")
        self.net.arch_state.load_state_dict(state["arch"])
        self.weight_opt.load_state_dict(state["weight_opt"])  # moves momenta to our device
        self.arch_opt.load_state_dict(state["arch_opt"])
        self.strategy.load_state_dict(state["strategy"])
        self.amp.load_state_dict(state.get("amp", {}))
        self._rng = state["torch_rng"].cpu()
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.history = list(state["history"])

    @property
    def checkpoint_path(self) -> Path:
        return self.out / "checkpoint.pt"

    # ---- the loop ----

    def lr_at(self, epoch: int, batch: int, per_epoch: int) -> float:
        """Cosine per batch from `weights.warmup_lr` over the warm-up, restarted from
        `weights.lr` for the search (as the official code does)."""
        c = self.config
        if epoch < c.warmup_epochs:
            peak = c.weights.warmup_lr or c.weights.lr
            return cosine_lr(peak, epoch * per_epoch + batch, c.warmup_epochs * per_epoch)
        e = epoch - c.warmup_epochs
        return cosine_lr(c.weights.lr, e * per_epoch + batch, c.epochs * per_epoch)

    def arch_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """One α update: this rank's signal, reduced over the ranks, turned into the new α by
        the `ArchSync`."""
        gen = step_generator(self.config.seed, self.step, Stream.ARCH)
        signal = self.strategy.signal(self.net, x, y, gen).reduce(self.ranks)
        metrics = self.arch_sync.update(self, signal)
        self.net.arch_state.check_finite(self.step)
        return metrics

    def train_step(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        lr: float,
        warm: bool,
        arch_batch: tuple[torch.Tensor, torch.Tensor] | None,
        metrics: StepMetrics,
    ) -> None:
        """One weight step on a sampled path, then the arch step when `arch_batch` is given.

        Nothing here waits for the GPU except the arch step's one read of its signal: metrics
        are added on the device and read once per epoch (see `nas_core.device`).
        """
        c = self.config
        gen = step_generator(c.seed, self.step, Stream.WEIGHT_PATHS)
        self.net.set_paths(sample_paths(self.net.arch_state, gen, uniform=warm))
        x = to_device(x, self.device, c.channels_last)
        y = y.to(self.device, non_blocking=True)
        sync, step = self.weight_sync, self.step
        loss, acc = weight_step(
            self.net, self.weight_opt, x, y, lr, c.weights.label_smoothing, self.amp,
            lambda: sync.gradients(self.net, step),
        )  # fmt: skip
        sync.buffers(self.net)
        metrics.watch_finite(loss)
        metrics.add({"train/loss": loss, "train/accuracy": acc, "lr/weights": lr})
        if arch_batch is not None:
            vx = to_device(arch_batch[0], self.device, c.channels_last)
            metrics.add(self.arch_step(vx, arch_batch[1].to(self.device, non_blocking=True)))

    def run_epoch(self) -> dict[str, float]:
        c, epoch = self.config, self.epoch
        warm = epoch < c.warmup_epochs
        loader = self._train_loader(epoch)
        per_epoch = len(loader)
        searching = epoch >= c.warmup_epochs + c.arch_start_epoch
        valid = self._valid_batches(epoch) if searching else None
        self.net.train()
        chosen = self.net.arch_state.argmax()  # the derived net as the epoch starts
        metrics = StepMetrics(self.step)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        started, images = time.perf_counter(), 0
        try:
            for b, (x, y) in enumerate(loader):
                due = valid is not None and c.arch_steps_in(b, per_epoch)
                arch_batch = next(valid) if due else None
                self.train_step(x, y, self.lr_at(epoch, b, per_epoch), warm, arch_batch, metrics)
                self.step += 1
                images += len(y)
                if self.step % NONFINITE_CHECK_EVERY == 0:
                    metrics.raise_if_nonfinite(self.step)
        finally:
            if valid is not None:  # this epoch's arch batches end here, whatever was prefetched
                valid.close()
        metrics.raise_if_nonfinite(self.step)
        out = metrics.means()  # waits for the epoch's last step
        out["throughput/images_per_s"] = images * self.world_size / (time.perf_counter() - started)
        if self.device.type == "cuda":  # this rank's peak over the epoch's steps
            out["memory/peak_gib"] = torch.cuda.max_memory_allocated(self.device) / 2**30
        out.update(self.evaluate_derived())
        now = self.net.arch_state.argmax()
        out["arch/changed_layers"] = float(sum(a != b for a, b in zip(chosen, now, strict=True)))
        out["epoch"] = epoch
        out["warmup"] = float(warm)
        return out

    def evaluate_derived(self) -> dict[str, float]:
        """Valid loss / accuracy of the argmax path, its table latency, E[latency], entropy and
        Zero's share of the layers that may skip."""
        self.net.set_argmax()
        sums = evaluate_sums(  # scored as the official search does: batch statistics
            self.net, self._eval_loader(), self.device, self.config.channels_last, bn="batch"
        )
        loss, acc = mean_loss_and_accuracy(self.ranks.sum(sums))
        ent = self.net.arch_state.entropy()
        out = {"valid/loss": loss, "valid/accuracy": acc, "arch/entropy_mean": float(ent.mean())}
        if (zero := self.net.arch_state.zero_share()) is not None:
            out["arch/zero_share"] = zero
        if self.latency is not None:
            out["latency/expected_ms"] = float(self.latency.expected(self.net.arch_state).detach())
            out["latency/derived_ms"] = architecture_latency(self.net.derive(), self.table)
        return out

    def loop(self, callbacks: Sequence[SearchCallback] = ()) -> None:
        """The search loop: epochs to the end, `callbacks` after each (on every rank)."""
        with torch.random.fork_rng(devices=[]), training_speedups(self.device):
            torch.set_rng_state(self._rng)
            while self.epoch < self.total_epochs:
                metrics = self.run_epoch()
                self.history.append(metrics)
                self.epoch += 1
                self._rng = torch.get_rng_state()
                for callback in callbacks:
                    callback.on_epoch_end(self, metrics)

    def run(
        self,
        resume: bool = False,
        on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
    ) -> SearchResult:
        """A single-process search to the end, outputs in out_dir (resuming from its checkpoint
        when asked): the loop with `LocalOutputs`, then the result saved."""
        self.out.mkdir(parents=True, exist_ok=True)
        if resume and self.checkpoint_path.exists():
            self.load_state_dict(load_checkpoint(self.checkpoint_path))
        atomic_write_text(
            self.out / "config.json", json.dumps(self.config.to_config(), indent=2) + "\n"
        )
        callbacks: list[SearchCallback] = [LocalOutputs(self.out, self.config.tensorboard)]
        if on_epoch_end is not None:
            callbacks.append(_EpochFunction(on_epoch_end))
        try:
            self.loop(callbacks)
        finally:
            callbacks[0].close()
        result = self.result()
        save_result(result, self.net.arch_state, self.out)
        return result

    def result(self) -> SearchResult:
        return search_result(self.net.arch_state, self.space, self.table, self.history)


@dataclass(frozen=True)
class _EpochFunction:
    """A plain `f(epoch, metrics)` as a callback (progress lines, Tune reports)."""

    function: Callable[[int, dict[str, float]], None]

    def on_epoch_end(self, searcher: Searcher, metrics: dict[str, float]) -> None:
        self.function(searcher.epoch - 1, metrics)
