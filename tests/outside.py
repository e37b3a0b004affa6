"""Faults injected from outside the code under test, and ranks started from outside.

The packages under test carry no fault hooks; a test names what to kill (or stop) and when (a
pid read from events.jsonl, a Ray worker found after its first checkpoint), and `Killer` polls
for it in a thread while the run goes on in the test's own thread. `two_gloo_ranks` runs a
function on two real processes joined by a gloo process group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any


class Killer:
    """Sends `sig` (SIGKILL), once each, to the process that `targets[name]()` returns (None:
    not yet). A process it stopped (SIGSTOP) it lets go on (SIGCONT) when the test is done."""

    def __init__(
        self,
        targets: dict[str, Callable[[], int | None]],
        every_s: float = 0.05,
        sig: int = signal.SIGKILL,
    ):
        self.targets, self.every_s, self.sig = targets, every_s, sig
        self.killed: dict[str, int] = {}
        self.times: dict[str, float] = {}  # time.time() of each kill
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self._poll()
        except BaseException as e:  # raised again in the test's thread by __exit__
            self.error = e

    def _poll(self) -> None:
        while not self._stop.is_set() and len(self.killed) < len(self.targets):
            for name, find in self.targets.items():
                if name in self.killed:
                    continue
                pid = find()
                if pid is None:
                    continue
                try:
                    os.kill(pid, self.sig)
                except ProcessLookupError:
                    continue  # it ended on its own first: try the next one that appears
                self.killed[name] = pid
                self.times[name] = time.time()
            self._stop.wait(self.every_s)

    def __enter__(self) -> Killer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        if self.sig == signal.SIGSTOP:
            for pid in self.killed.values():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
        if self.error is not None:
            raise self.error


class Listeners:
    """Samples, in a thread, every listening TCP socket of this process and of every process it
    started (Ray's GCS, raylet, agents and workers included, when it started the local Ray)."""

    def __init__(self, every_s: float = 0.2) -> None:
        self.every_s = every_s
        self.seen: dict[tuple[str, int], str] = {}  # (address, port): the listening process
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        import psutil

        me = psutil.Process()
        for p in [me, *me.children(recursive=True)]:
            try:
                title = (p.cmdline() or [p.name()])[0]
                for c in p.net_connections(kind="tcp"):
                    if c.status == psutil.CONN_LISTEN:
                        self.seen[(c.laddr.ip, c.laddr.port)] = title
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.every_s)

    def __enter__(self) -> Listeners:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def _gloo_rank(rank: int, target: Callable[[int], Any], init: str, out: Path) -> None:
    import torch
    import torch.distributed as dist

    try:
        dist.init_process_group(
            "gloo", init_method=init, rank=rank, world_size=2, timeout=timedelta(seconds=60)
        )
        torch.set_num_threads(1)
        target(rank)
        (out / f"ok{rank}").write_text("ok")
    except BaseException:
        (out / f"error{rank}").write_text(traceback.format_exc())
        raise
    finally:
        dist.destroy_process_group()


def two_gloo_ranks(target: Callable[[int], Any], tmp_path: Path) -> None:
    """`target(rank)` on two spawned processes of one gloo process group; an assertion that
    fails on either rank fails the test with that rank's traceback."""
    import torch.multiprocessing as mp

    init = f"file://{tmp_path / 'rendezvous'}"
    with contextlib.suppress(mp.ProcessRaisedException):  # its traceback is in its error file
        mp.spawn(_gloo_rank, args=(target, init, tmp_path), nprocs=2)
    errors = [p.read_text() for p in sorted(tmp_path.glob("error*"))]
    assert not errors, "\n".join(errors)
    assert sorted(p.name for p in tmp_path.glob("ok*")) == ["ok0", "ok1"]
