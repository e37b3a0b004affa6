"""Peak memory of one training step: single-path super-net vs standalone net vs DARTS super-net.

ProxylessNAS's claim (§3.2) is that path binarisation makes a super-net weight step cost about
as much memory as training the derived net alone, whereas a DARTS-style relaxation runs and
keeps every candidate and so grows with the candidate count. This script checks that on the
paper's ImageNet space: it trains one step (forward, cross-entropy, backward, nesterov SGD) of
(a) the standalone derived net, (b) the super-net in single-path mode on exactly that net's
path and (c) the super-net in DARTS weighted-sum mode, with the same batch and resolution, and
reports peak-memory ratios (b)/(a) and (c)/(a). On CUDA it uses the allocator's peak counter;
on CPU each model runs in its own fresh process and the peak resident set size of the measured
step (after a warm-up step, so optimizer state exists) is read from VmHWM after resetting it
(or sampled every millisecond where the reset is unsupported). A second, deterministic measure
counts the bytes of tensors autograd saves for backward (activations, parameters excluded).
The last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from console import pick_device, print_summary, progress_log
from torch import nn

from nas_core.architecture import Architecture, build_net
from nas_core.spaces import SearchSpace, create_space
from nas_core.supernet import SuperNet

REPO_ROOT = Path(__file__).resolve().parent.parent
KINDS = ("standalone", "supernet", "darts")
SPACE, BLOCKS, WIDTH, NUM_CLASSES = "mobilenet", 4, 1.0, 1000
DEFAULT_OP = "5x5_MBConv6"
DEFAULT_RESOLUTION, DEFAULT_BATCH, DEFAULT_REPEATS = 224, 8, 2
SEED = 0
SAMPLE_INTERVAL_S = 0.001
TARGET_SUPERNET_RATIO = 1.15


@dataclass
class Bench:
    """One model ready to train: the module, its optimizer and a per-step mode setter."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    prepare: Callable[[], None]
    candidates: int


log = progress_log("memory")


def make_space(resolution: int) -> SearchSpace:
    return create_space(SPACE, B=BLOCKS, F=WIDTH, resolution=resolution, num_classes=NUM_CLASSES)


def derived_arch(space: SearchSpace, op: str) -> Architecture:
    """The same (non-Zero) op at every searchable layer, so all three nets do the same work."""
    return Architecture(space, tuple(op for _ in space.layer_specs()))


def path_indices(space: SearchSpace, arch: Architecture) -> list[int]:
    return [
        spec.candidates.index(op) for spec, op in zip(space.layer_specs(), arch.ops, strict=True)
    ]


def build_bench(kind: str, resolution: int, op: str, device: torch.device) -> Bench:
    """Build the model of `kind` with the same seed and an identical optimizer."""
    torch.manual_seed(SEED)
    space = make_space(resolution)
    arch = derived_arch(space, op)
    candidates = max(len(s.candidates) for s in space.layer_specs())
    if kind == "standalone":
        model: nn.Module = build_net(arch)
        prepare: Callable[[], None] = lambda: None  # noqa: E731
        candidates = 1
    else:
        sn = SuperNet(space)
        model = sn
        if kind == "supernet":
            indices = path_indices(space, arch)
            prepare = lambda: sn.set_paths(indices)  # noqa: E731
        else:

            def prepare() -> None:  # a fresh softmax(α) graph for every step's backward
                sn.arch_state.zero_grad()
                sn.set_weighted()

    model = model.to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    return Bench(model, optimizer, prepare, candidates)


def make_batch(batch: int, resolution: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(SEED)
    images = torch.randn(batch, 3, resolution, resolution, generator=g)
    labels = torch.randint(0, NUM_CLASSES, (batch,), generator=g)
    return images.to(device), labels.to(device)


def train_step(bench: Bench, images: torch.Tensor, labels: torch.Tensor) -> None:
    """One weight step; only parameters on the run path(s) get gradients and momentum."""
    bench.optimizer.zero_grad(set_to_none=True)
    bench.prepare()
    loss = F.cross_entropy(bench.model(images), labels)
    loss.backward()
    bench.optimizer.step()


def step_saving_activations(bench: Bench, images: torch.Tensor, labels: torch.Tensor) -> int:
    """Run a step and return the bytes autograd saved for backward (deduplicated storages).

    Parameters are excluded: what remains is the activation memory the step must hold.
    """
    params = {p.untyped_storage().data_ptr() for p in bench.model.parameters()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        try:
            storage = t.untyped_storage()
        except (RuntimeError, NotImplementedError):  # sparse / opaque tensors: count their size
            saved[id(t)] = t.numel() * t.element_size()
            return t
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        train_step(bench, images, labels)
    return sum(saved.values())


def param_counts(bench: Bench) -> tuple[int, int]:
    """(all parameters, parameters that have optimizer state, i.e. were trained)."""
    total = sum(p.numel() for p in bench.model.parameters())
    trained = sum(p.numel() for p in bench.model.parameters() if p in bench.optimizer.state)
    return total, trained


# --- CPU: resident set size of a fresh child process ----------------------------------------


def status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def reset_hwm() -> bool:
    """Reset VmHWM to the current RSS (Linux clear_refs "5"); False where that does not work."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return status_kib("VmHWM") <= status_kib("VmRSS") + 1024


class RssSampler:
    """Fallback peak-RSS probe: a thread reading /proc/self/statm every millisecond."""

    def __init__(self) -> None:
        self.peak = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL_S):
            self.peak = max(self.peak, rss_bytes())

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


def measure_cpu_child(kind: str, batch: int, resolution: int, op: str) -> dict[str, Any]:
    """In a fresh process: baseline RSS, build, warm-up step, then the peak RSS of one step."""
    device = torch.device("cpu")
    images, labels = make_batch(batch, resolution, device)
    torch.mm(torch.ones(64, 64), torch.ones(64, 64))  # start the thread pool before the baseline
    gc.collect()
    baseline = rss_bytes()
    baseline_anon = status_kib("RssAnon") * 1024
    bench = build_bench(kind, resolution, op, device)
    t0 = time.perf_counter()
    activation_bytes = step_saving_activations(bench, images, labels)  # the warm-up step
    warmup_s = time.perf_counter() - t0
    gc.collect()
    before = rss_bytes()
    t0 = time.perf_counter()
    if reset_hwm():
        method = "VmHWM after clear_refs reset"
        train_step(bench, images, labels)
        peak = status_kib("VmHWM") * 1024
    else:
        method = f"VmRSS sampled every {SAMPLE_INTERVAL_S * 1e3:g} ms"
        with RssSampler() as sampler:
            train_step(bench, images, labels)
        peak = sampler.peak
    # Library code pages are all touched by the warm-up step, so file-backed RSS is flat during
    # the measured one: peak - file pages is the anonymous (heap) peak.
    peak_anon = peak - (status_kib("RssFile") + status_kib("RssShmem")) * 1024
    total, trained = param_counts(bench)
    return {
        "kind": kind,
        "peak_bytes": peak,
        "baseline_bytes": baseline,
        "net_peak_bytes": peak_anon - baseline_anon,
        "before_step_bytes": before,
        "activation_bytes": activation_bytes,
        "params": total,
        "trained_params": trained,
        "candidates": bench.candidates,
        "method": method,
        "warmup_s": round(warmup_s, 2),
        "step_s": round(time.perf_counter() - t0, 2),
    }


def run_cpu_child(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind]
    cmd += ["--batch", str(args.batch), "--resolution", str(args.resolution), "--op", args.op]
    done = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- CUDA: the caching allocator's peak counter, in process ---------------------------------


def measure_cuda(kind: str, batch: int, resolution: int, op: str) -> dict[str, Any]:
    device = torch.device("cuda")
    images, labels = make_batch(batch, resolution, device)
    torch.cuda.synchronize()
    baseline = torch.cuda.memory_allocated()
    bench = build_bench(kind, resolution, op, device)
    t0 = time.perf_counter()
    activation_bytes = step_saving_activations(bench, images, labels)
    torch.cuda.synchronize()
    warmup_s = time.perf_counter() - t0
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    train_step(bench, images, labels)
    torch.cuda.synchronize()
    step_s = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated()
    total, trained = param_counts(bench)
    candidates = bench.candidates
    del bench
    gc.collect()
    torch.cuda.empty_cache()
    return {
        "kind": kind,
        "peak_bytes": peak,
        "baseline_bytes": baseline,
        "net_peak_bytes": peak - baseline,
        "before_step_bytes": before,
        "activation_bytes": activation_bytes,
        "params": total,
        "trained_params": trained,
        "candidates": candidates,
        "method": "torch.cuda.max_memory_allocated after reset_peak_memory_stats",
        "warmup_s": round(warmup_s, 2),
        "step_s": round(step_s, 2),
    }


# --- driver ---------------------------------------------------------------------------------


def measure_all(args: argparse.Namespace, device: str) -> dict[str, list[dict[str, Any]]]:
    """Every kind once per repeat, interleaved so drift affects all kinds alike."""
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in KINDS}
    for r in range(args.repeats):
        for kind in KINDS:
            t0 = time.perf_counter()
            if device == "cuda":
                res = measure_cuda(kind, args.batch, args.resolution, args.op)
            else:
                res = run_cpu_child(kind, args)
            runs[kind].append(res)
            log(
                f"repeat {r + 1}/{args.repeats} {kind:10s} peak {mib(res['peak_bytes'])} MiB,"
                f" net {mib(res['net_peak_bytes'])} MiB, activations"
                f" {mib(res['activation_bytes'])} MiB; steps {res['warmup_s']} + {res['step_s']} s,"
                f" total {time.perf_counter() - t0:.1f} s"
            )
    return runs


def mib(n: int) -> str:
    return f"{n / 2**20:.1f}"


def ratio(a: float, b: float) -> float:
    return round(a / b, 4)


def summarise(
    runs: dict[str, list[dict[str, Any]]], args: argparse.Namespace, device: str
) -> dict[str, Any]:
    """Minimum peak per kind over repeats; ratios against the standalone net."""
    best = {k: min(rs, key=lambda r: r["peak_bytes"]) for k, rs in runs.items()}
    peak = {k: best[k]["peak_bytes"] for k in KINDS}
    net = {k: min(r["net_peak_bytes"] for r in runs[k]) for k in KINDS}
    act = {k: runs[k][0]["activation_bytes"] for k in KINDS}
    s = "standalone"
    return {
        "supernet_over_standalone": ratio(peak["supernet"], peak[s]),
        "darts_over_standalone": ratio(peak["darts"], peak[s]),
        "net_supernet_over_standalone": ratio(net["supernet"], net[s]),
        "net_darts_over_standalone": ratio(net["darts"], net[s]),
        "activation_supernet_over_standalone": ratio(act["supernet"], act[s]),
        "activation_darts_over_standalone": ratio(act["darts"], act[s]),
        "target_supernet_over_standalone": TARGET_SUPERNET_RATIO,
        "peak_bytes": peak,
        "baseline_bytes": {k: best[k]["baseline_bytes"] for k in KINDS},
        "net_peak_bytes": net,
        "before_step_bytes": {k: best[k]["before_step_bytes"] for k in KINDS},
        "activation_bytes": act,
        "params": {k: best[k]["params"] for k in KINDS},
        "trained_params": {k: best[k]["trained_params"] for k in KINDS},
        "all_peak_bytes": {k: [r["peak_bytes"] for r in rs] for k, rs in runs.items()},
        "space": SPACE,
        "derived_op": args.op,
        "candidates": best["darts"]["candidates"],
        "batch": args.batch,
        "resolution": args.resolution,
        "repeats": args.repeats,
        "device": device,
        "threads": torch.get_num_threads(),
        "method": best["standalone"]["method"]
        + ("" if device == "cuda" else "; one fresh process per measurement")
        + "; min over repeats; net_* = the step's own footprint: "
        + (
            "peak minus memory allocated before the model was built"
            if device == "cuda"
            else "peak RSS minus file-backed pages (library code) minus the anonymous RSS"
            " before the model was built"
        )
        + "; activation_* = bytes saved for backward, deduplicated by storage, parameters excluded",
        "torch": torch.__version__,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--resolution", type=int, default=DEFAULT_RESOLUTION)
    p.add_argument("--batch", type=int, default=DEFAULT_BATCH)
    p.add_argument("--repeats", type=int, default=DEFAULT_REPEATS)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--op", default=DEFAULT_OP, help="op of every layer of the derived net")
    p.add_argument("--child", choices=KINDS, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    if args.child:
        result = measure_cpu_child(args.child, args.batch, args.resolution, args.op)
        print_summary(result)
        return
    if args.op == "zero" or args.repeats < 1:
        raise SystemExit("--op must be a non-Zero candidate and --repeats at least 1")
    device = pick_device(args.device)
    log(f"device {device}, batch {args.batch}, resolution {args.resolution}, op {args.op}")
    t0 = time.perf_counter()
    summary = summarise(measure_all(args, device), args, device)
    log(f"done in {time.perf_counter() - t0:.1f} s")
    print_summary(summary)


if __name__ == "__main__":
    main()
