"""On-device latency profiling of every latency-table key a space needs.

CPU: batch 1 by default, a fixed thread count (recorded in the table), warm-up runs, then
repeats timed with `perf_counter`. CUDA: batch 8 by default (the paper's GPU setting), and each
module is captured as a CUDA graph of `GRAPH_FORWARDS` back-to-back forwards, replayed between
two CUDA events; a sample is the elapsed time over the forwards. Eager calls timed with events
measured Python's kernel launches instead of the GPU: at batch 1 an H100 runs an MBConv's
kernels faster than Python queues them, so all six MBConv candidates priced alike. Where capture
fails, timing falls back to eager forwards between events, with a warning naming the module.
Each entry keeps the fastest quarter of its runs (see `robust_entry`), and runs go round-robin
over a chunk of keys: on a CPU every key at once (`CHUNK`), because a shared CPU's speed
drifts by 10-20 % within seconds, and keys timed in separate chunks of 10 disagreed by 20 %
(relative s.d.) between two profiles, against 3-4 % when all share one round-robin.
Profiling is resumable: the output table is rewritten atomically after every chunk and a rerun
with the same device settings skips what it already holds.
"""

from __future__ import annotations

import ctypes
import math
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, field_validator, model_validator
from torch import nn

from nas_core.config import ConfigModel, DeviceName
from nas_core.device import resolve_device
from nas_core.errors import ProxylessError, first_line
from nas_core.latency.modules import module_for_key
from nas_core.latency.table import DeviceMeta, LatencyEntry, LatencyTable
from nas_core.logs import get_logger

log = get_logger(__name__)

GRAPH_FORWARDS = 10  # forwards per captured CUDA graph: the GPU never waits for the CPU
# keys timed in one round-robin and saved together. CPU: a whole space, in practice (a shared
# CPU drifts). CUDA: few, since each key's captured graph keeps its own memory pool alive
# until its chunk ends, and graph replays on a GPU do not drift like a shared CPU.
CHUNK = {"cpu": 256, "cuda": 10}
DEFAULT_BATCH = {"cuda": 8, "cpu": 1}


class ProfileConfig(ConfigModel):
    """How to measure: device, threads, batch size, warm-up, repeats and the CUDA timer."""

    device: DeviceName = "cpu"  # cpu, cuda or cuda:N (this machine must have it)
    threads: int | None = Field(None, ge=1)  # CPU threads; None = torch's current setting
    batch_size: int = Field(None, ge=1)  # unset: 8 on CUDA (the paper's GPU setting), 1 on CPU
    warmup: int = Field(10, ge=0)
    repeats: int = Field(50, ge=3)
    cuda_timing: Literal["graph", "events"] = "graph"  # replayed CUDA graphs or eager forwards

    @model_validator(mode="before")
    @classmethod
    def _batch_for_device(cls, values: Any) -> Any:
        if isinstance(values, Mapping) and values.get("batch_size") is None:
            cuda = str(values.get("device", "cpu")).startswith("cuda")
            values = {**values, "batch_size": DEFAULT_BATCH["cuda" if cuda else "cpu"]}
        return values

    @field_validator("device")
    @classmethod
    def _present(cls, device: str) -> str:
        resolve_device(device)  # one line when this machine lacks it
        return device

    @classmethod
    def for_search(cls, device: str) -> ProfileConfig:
        """What a search or sweep profiles with when it has no table: quick, 1 CPU thread."""
        kind = torch.device(device).type
        threads = 1 if kind == "cpu" else None
        return cls.from_config({"device": device, "threads": threads, "warmup": 3, "repeats": 15})

    @classmethod
    def matching(cls, meta: DeviceMeta, warmup: int = 10, repeats: int = 50) -> ProfileConfig:
        """Measures as the table of `meta` was measured (to fill it in or to validate it)."""
        return cls.from_config(
            {
                "device": meta.kind,
                "threads": meta.threads or None,
                "batch_size": meta.batch_size,
                "warmup": warmup,
                "repeats": repeats,
                "cuda_timing": "events" if _timing(meta) == "cuda_events" else "graph",
            }
        )

    @property
    def kind(self) -> str:
        return torch.device(self.device).type

    def resolved_threads(self) -> int:
        return self.threads or torch.get_num_threads()

    def meta(self, extra: dict | None = None) -> DeviceMeta:
        threads = self.resolved_threads() if self.kind == "cpu" else 0  # a GPU table's are moot
        with _on(self.device):
            meta = DeviceMeta.local(self.kind, threads, self.batch_size)
        extra = {**meta.extra, "timing": self.timing_name(), **(extra or {})}
        return DeviceMeta(**{**meta.to_config(), "extra": extra})

    def timing_name(self) -> str:
        if self.kind == "cpu":
            return "perf_counter"
        if self.cuda_timing == "graph":
            return f"cuda_graph x{GRAPH_FORWARDS}"
        return "cuda_events"


def _on(device: str) -> AbstractContextManager:
    """The CUDA device context of `device` (a no-op for the CPU)."""
    d = torch.device(device)
    return torch.cuda.device(d) if d.type == "cuda" else nullcontext()


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


@contextmanager
def quiet_allocator() -> Iterator[None]:
    """Inside: glibc keeps freed blocks in its heap (no mmap / trim per call).

    Otherwise every large activation is a fresh mmap whose page faults cost more than the
    conv itself, and glibc's adaptive threshold makes that cost depend on history. glibc can
    neither report its settings nor turn adaptation back on, so on exit the trim threshold goes
    back to where adaptation leaves it once large tensors were freed (twice the mmap threshold,
    32 MiB on 64-bit, the value used here too); its start-up 128 KiB would make every later
    activation of a training run a fresh mmap.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to tune
        yield
        return
    m_trim_threshold, m_mmap_threshold, mmap_max = -1, -3, 32 * 1024 * 1024
    libc.mallopt(m_mmap_threshold, mmap_max)
    libc.mallopt(m_trim_threshold, 1 << 30)
    try:
        yield
    finally:
        libc.mallopt(m_trim_threshold, 2 * mmap_max)


def time_modules(
    items: Sequence[tuple[nn.Module, Sequence[int]]],
    config: ProfileConfig,
    on_round: Callable[[float], None] | None = None,
) -> list[LatencyEntry]:
    """Latency (ms) of one forward pass of each module, measured round-robin.

    Each round times every module once, so slow drifts of the machine spread over all of them
    instead of biasing whichever ran during a bad minute. `on_round(share)` is called after
    each round with the share of the rounds it was.
    """
    device = torch.device(config.device)
    if device.type == "cuda":
        with torch.inference_mode(), torch.cuda.device(device):
            timers = [_cuda_timer(m.to(device).eval(), shape, config) for m, shape in items]
            return _round_robin(timers, config, on_round)
    mods = [m.to(device).eval() for m, _ in items]
    inputs = [torch.randn(config.batch_size, *shape, device=device) for _, shape in items]

    def cpu_timer(m: nn.Module, x0: torch.Tensor) -> Callable[[], float]:
        def sample() -> float:
            x = x0.clone()  # a fresh, cache-hot input, as a layer gets inside a net
            t0 = time.perf_counter()
            m(x)
            return (time.perf_counter() - t0) * 1e3

        return sample

    with quiet_allocator(), torch.inference_mode(), cpu_threads(config.resolved_threads()):
        timers = [cpu_timer(m, x) for m, x in zip(mods, inputs, strict=True)]
        return _round_robin(timers, config, on_round)


def _round_robin(
    timers: Sequence[Callable[[], float]],
    config: ProfileConfig,
    on_round: Callable[[float], None] | None = None,
) -> list[LatencyEntry]:
    samples: list[list[float]] = [[] for _ in timers]
    rounds = config.warmup + config.repeats
    for rnd in range(rounds):
        for timer, out in zip(timers, samples, strict=True):
            dt = timer()
            if rnd >= config.warmup:
                out.append(dt)
        if on_round is not None:
            on_round(1 / rounds)
    return [robust_entry(s) for s in samples]


def _cuda_timer(module: nn.Module, shape: Sequence[int], config: ProfileConfig):
    """A function returning one sample (ms per forward) of `module` on the current GPU."""
    x = torch.randn(config.batch_size, *shape, device="cuda")
    run: Callable[[], object]
    forwards = 1
    if config.cuda_timing == "graph":
        try:
            graph = capture_graph(module, x, GRAPH_FORWARDS)
            run, forwards = graph.replay, GRAPH_FORWARDS
        except RuntimeError as e:
            first = first_line(e)
            log.warning(
                "CUDA graph capture of %s failed (%s); timing eager forwards with events, "
                "which measures kernel launches more than the GPU for small modules",
                type(module).__name__,
                first[:200],
            )
    if forwards == 1:

        def run() -> object:
            return module(x)

    def sample() -> float:
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / forwards

    return sample


def capture_graph(module: nn.Module, x: torch.Tensor, forwards: int) -> torch.cuda.CUDAGraph:
    """`forwards` back-to-back forwards of `module` on the static input `x`, as one graph."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up off the capture stream (cuDNN picks its kernels)
        for _ in range(3):
            module(x)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(forwards):
            module(x)
    return graph


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


def _timing(meta: DeviceMeta) -> str:
    """How a table was timed (tables from before this was recorded: the only way there was)."""
    return str(meta.extra.get("timing", "perf_counter" if meta.kind == "cpu" else "cuda_events"))


def _same_device(a: DeviceMeta, b: DeviceMeta) -> bool:
    same = (a.name, a.kind, a.threads, a.batch_size) == (b.name, b.kind, b.threads, b.batch_size)
    return same and _timing(a) == _timing(b)


def profile_keys(
    keys: Sequence[str],
    config: ProfileConfig,
    out: str | Path | None = None,
    table: LatencyTable | None = None,
    extra_meta: dict | None = None,
    save_every: int | None = None,
    progress: bool = True,
    on_entry: Callable[[str, LatencyEntry], None] | None = None,
) -> LatencyTable:
    """Measure every key not yet in the table; resume from `out` when it exists. Keys share a
    round-robin, and are saved, in chunks of `save_every` (default: `CHUNK` of the device): an
    interrupted CPU profile of one space starts over, the price of timing it in one piece."""
    meta = config.meta(extra_meta)
    if save_every is None:
        save_every = CHUNK[config.kind]
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
        entries = time_modules(
            [module_for_key(k) for k in chunk], config, _advance(bar, len(chunk))
        )
        for key, entry in zip(chunk, entries, strict=True):
            table.add(key, entry)
            if on_entry is not None:
                on_entry(key, entry)
        if out is not None:
            table.save(out)  # atomic: an interrupted run resumes from here
    if bar is not None:
        bar.close()
    return table


def _advance(bar: Any, ops: int) -> Callable[[float], None] | None:
    """Moves `bar` by a round's share of a chunk's `ops` (None without a bar)."""
    return None if bar is None else (lambda share: bar.update(share * ops))


def _progress(total: int, done: int):
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=0,
        desc=f"profiling (resumed past {done})" if done else "profiling",
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total} ops [{elapsed}<{remaining}]",
        file=sys.stderr,
        leave=False,
    )
