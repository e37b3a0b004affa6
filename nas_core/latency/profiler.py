"""On-device latency profiling of every latency-table key a space needs.

CPU: batch 1 by default, a fixed thread count (recorded in the table), warm-up runs, then
repeats timed with `perf_counter`; CUDA: CUDA events around each run, synchronised. Each
entry keeps the fastest quarter of its runs (see `robust_entry`), and runs go round-robin over
a chunk of keys so the machine's drifts spread evenly.
Profiling is resumable: the output table is rewritten atomically every few entries and a rerun
with the same device settings skips what it already holds.
"""

from __future__ import annotations

import ctypes
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from nas_core.errors import ProxylessError
from nas_core.latency.modules import module_for_key
from nas_core.latency.table import DeviceMeta, LatencyEntry, LatencyTable


@dataclass(frozen=True)
class ProfileConfig:
    """How to measure: device, threads, batch size, warm-up and repeats."""

    device: str = "cpu"  # cpu or cuda
    threads: int | None = None  # CPU threads; None = torch's current setting
    batch_size: int = 1
    warmup: int = 10
    repeats: int = 50

    def __post_init__(self) -> None:
        if self.device not in ("cpu", "cuda"):
            raise ProxylessError(f"device must be cpu or cuda, got {self.device!r}")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ProxylessError("device cuda asked for, but torch sees no CUDA device here")
        for name, low in (("batch_size", 1), ("warmup", 0), ("repeats", 3)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ProxylessError(f"{name} must be an integer >= {low}, got {v!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ProxylessError(f"threads must be an integer >= 1, got {self.threads!r}")

    def resolved_threads(self) -> int:
        return self.threads or torch.get_num_threads()

    def meta(self, extra: dict | None = None) -> DeviceMeta:
        meta = DeviceMeta.local(self.device, self.resolved_threads(), self.batch_size)
        return DeviceMeta(**{**meta.to_config(), "extra": {**meta.extra, **(extra or {})}})


def robust_entry(samples_ms: Sequence[float], keep: float = 0.25) -> LatencyEntry:
    """count / mean / var of the fastest `keep` share of the samples (at least 3).

    On a shared machine interference (other tenants, page faults, frequency dips) only ever
    adds time, so the fastest runs are the ones that measure the op itself; a trimmed mean of
    them is stable where the plain mean of all runs moved by 20-30 % between two profiles.
    """
    kept = sorted(samples_ms)[: max(3, math.ceil(len(samples_ms) * keep))]
    mean = statistics.fmean(kept)
    var = statistics.pvariance(kept, mean) if len(kept) > 1 else 0.0
    return LatencyEntry(len(kept), mean, var)


def quiet_allocator() -> None:
    """Keep freed blocks in glibc's heap (no mmap / trim per call).

    Otherwise every large activation is a fresh mmap whose page faults cost more than the
    conv itself, and glibc's adaptive threshold makes that cost depend on history.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to tune
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 32 * 1024 * 1024)
    libc.mallopt(m_trim_threshold, 1 << 30)


def time_modules(
    items: Sequence[tuple[nn.Module, Sequence[int]]], config: ProfileConfig
) -> list[LatencyEntry]:
    """Latency (ms) of one forward pass of each module, measured round-robin.

    Each round times every module once, so slow drifts of the machine spread over all of them
    instead of biasing whichever ran during a bad minute.
    """
    device = torch.device(config.device)
    mods = [m.to(device).eval() for m, _ in items]
    inputs = [torch.randn(config.batch_size, *shape, device=device) for _, shape in items]
    samples: list[list[float]] = [[] for _ in items]
    cuda = config.device == "cuda"
    quiet_allocator()
    with torch.inference_mode(), cpu_threads(config.resolved_threads()):
        for rnd in range(config.warmup + config.repeats):
            for m, x0, out in zip(mods, inputs, samples, strict=True):
                x = x0.clone()  # a fresh, cache-hot input, as a layer gets inside a net
                if cuda:
                    start = torch.cuda.Event(enable_timing=True)
                    end = torch.cuda.Event(enable_timing=True)
                    start.record()
                    m(x)
                    end.record()
                    end.synchronize()
                    dt = start.elapsed_time(end)
                else:
                    t0 = time.perf_counter()
                    m(x)
                    dt = (time.perf_counter() - t0) * 1e3
                if rnd >= config.warmup:
                    out.append(dt)
    return [robust_entry(s) for s in samples]


def time_module(module: nn.Module, shape: Sequence[int], config: ProfileConfig) -> LatencyEntry:
    """Latency (ms) of one forward pass of `module` on a batch of `shape` inputs."""
    return time_modules([(module, shape)], config)[0]


class cpu_threads:  # noqa: N801  (used as a context manager)
    """Set torch's CPU thread count for a block, then restore it."""

    def __init__(self, n: int) -> None:
        self.n, self.old = n, torch.get_num_threads()

    def __enter__(self) -> None:
        torch.set_num_threads(self.n)

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self.old)


def _same_device(a: DeviceMeta, b: DeviceMeta) -> bool:
    return (a.name, a.kind, a.threads, a.batch_size) == (b.name, b.kind, b.threads, b.batch_size)


def profile_keys(
    keys: Sequence[str],
    config: ProfileConfig,
    out: str | Path | None = None,
    table: LatencyTable | None = None,
    extra_meta: dict | None = None,
    save_every: int = 10,
    progress: bool = True,
    on_entry: Callable[[str, LatencyEntry], None] | None = None,
) -> LatencyTable:
    """Measure every key not yet in the table; resume from `out` when it exists."""
    meta = config.meta(extra_meta)
    if table is None and out is not None and Path(out).exists():
        table = LatencyTable.load(out)
        if not _same_device(table.meta, meta):
            raise ProxylessError(
                f"{out} was measured on {table.meta.name} ({table.meta.kind}, "
                f"{table.meta.threads} threads, batch {table.meta.batch_size}); refusing to mix "
                "devices in one table — choose another --out"
            )
    table = table or LatencyTable(meta=meta)
    todo = [k for k in dict.fromkeys(keys) if k not in table]
    bar = _progress(len(todo), len(keys) - len(todo)) if progress and todo else None
    for i in range(0, len(todo), save_every):
        chunk = todo[i : i + save_every]
        entries = time_modules([module_for_key(k) for k in chunk], config)
        for key, entry in zip(chunk, entries, strict=True):
            table.add(key, entry)
            if on_entry is not None:
                on_entry(key, entry)
        if out is not None:
            table.save(out)  # atomic: an interrupted run resumes from here
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    return table


def _progress(total: int, done: int):
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=0,
        desc=f"profiling (resumed past {done})" if done else "profiling",
        unit="op",
        file=sys.stderr,
        leave=False,
    )
