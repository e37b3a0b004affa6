"""Rank 0's per-epoch Train reports, passed on to the Tune trial that runs the Train run.

A search trial with workers runs a Ray Train run inside itself, and the trial's thread waits in
`fit()` while the ranks report. `ForwardReports` (a public `ray.train.UserCallback`, run by the
Train controller) puts rank 0's metrics on a queue the trial owns; a thread of the trial passes
each one to `tune.report` while `fit()` runs, and `forwarded_train_reports` drains the queue and
joins that thread before the trial reports anything itself. So every forwarded report reaches
Tune, in order, before the trial's own, whatever the timing (Ray's `TuneReportCallback` hands
them to Tune's session through a private one-slot queue that the trial's last report can
overtake).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ray.train import UserCallback

# where a forwarded report says which Train checkpoint it was reported with (as Ray's own)
CHECKPOINT_PATH_KEY = "checkpoint_path"


class ForwardReports(UserCallback):
    """On the Train controller: each round of reports, rank 0's metrics onto `queue`. In the
    trial, `latest` is the last report passed on to Tune (the controller's copy has none)."""

    def __init__(self, queue: Any) -> None:
        self._queue = queue
        self.latest: dict[str, Any] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"_queue": self._queue, "latest": {}}  # the trial's own, not sent along

    def after_report(
        self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any
    ) -> None:
        item = dict(metrics[0])
        if checkpoint is not None:
            item[CHECKPOINT_PATH_KEY] = checkpoint.path
        self._queue.put(item)


@contextmanager
def forwarded_train_reports(poll_s: float = 0.2) -> Iterator[ForwardReports]:
    """The callback to give the Train run; every report it forwards is passed to `tune.report`
    by the time this context exits (the queue, an actor of the trial's, goes with it). A report
    that cannot be passed on fails the trial here, as with Ray's own callback."""
    from ray.util.queue import Queue

    queue = Queue(actor_options={"num_cpus": 0})  # unbounded: the ranks never wait for Tune
    done = threading.Event()
    failed: list[Exception] = []
    forward = ForwardReports(queue)
    thread = threading.Thread(
        target=_pass_on,
        args=(queue, forward.latest, done, failed, poll_s),
        name="train-reports",
        daemon=True,
    )
    thread.start()
    try:
        yield forward
    finally:
        done.set()
        thread.join()
        queue.shutdown()
    if failed:
        raise failed[0]


def _pass_on(
    queue: Any,
    latest: dict[str, Any],
    done: threading.Event,
    failed: list[Exception],
    poll_s: float,
) -> None:
    """The trial's thread: each queued report to `tune.report`, in order, until `done` was set
    before the queue was found empty (then nothing more can come); the last one stays in
    `latest`. Tune stopping the trial ends the thread (SystemExit)."""
    from ray import tune
    from ray.util.queue import Empty

    try:
        while True:
            finished = done.is_set()  # read first: an item put before it is still taken below
            try:
                item = queue.get(timeout=poll_s)
            except Empty:
                if finished:
                    return
                continue
            tune.report(item)
            latest.clear()
            latest.update(item)
    except Exception as e:  # a report Tune refused, the queue gone: the trial's error
        failed.append(e)
