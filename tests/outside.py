"""Faults injected from outside the code under test: SIGKILL a process once a condition holds.

The packages under test carry no fault hooks; a test names what to kill and when (a pid read
from events.jsonl, a Ray worker found after its first checkpoint), and `Killer` polls for it
in a thread while the run goes on in the test's own thread.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable


class Killer:
    """Kills, once each, the process that `targets[name]()` returns (None: not yet)."""

    def __init__(self, targets: dict[str, Callable[[], int | None]], every_s: float = 0.05):
        self.targets, self.every_s = targets, every_s
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
                    os.kill(pid, signal.SIGKILL)
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
        if self.error is not None:
            raise self.error
