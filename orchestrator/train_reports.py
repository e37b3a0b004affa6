"""Rank 0's per-epoch Train reports, passed on to the Tune trial that runs the Train run.

A search trial with workers runs a Ray Train run inside itself, and the trial's thread waits in
`fit()` while the ranks report. `ForwardReports` (a public `ray.train.UserCallback`, run by the
Train controller) puts rank 0's metrics on a queue the trial owns; a thread of the trial passes
each one to `tune.report` while `fit()` runs, and `forwarded_train_reports` drains the queue and
joins that thread before the trial reports anything itself. So every forwarded report reaches
Tune, in order, before the trial's own, whatever the timing (Ray's `TuneReportCallback` hands
them to Tune's session through a private one-slot queue that the trial's last report can
overtake).

A trial that dies with its node can lose the report in flight: rank 0's checkpoint of that
epoch is written, so the rerun trial's Train run resumes after it and never reports it again.
Each forwarded report therefore carries a tiny Tune checkpoint naming its epoch; the rerun
reads it (`epoch_tune_has`) and, once its Train run ends, reports late the epochs of the run's
history that Tune never got (`report_missed_epochs`), so each epoch reaches Tune once.
"""

from __future__ import annotations

import json
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ray.train import UserCallback

# where a forwarded report says which Train checkpoint it was reported with (as Ray's own)
CHECKPOINT_PATH_KEY = "checkpoint_path"
EPOCH_FILE = "reported_epoch.json"  # the tiny Tune checkpoint of a forwarded report
LATE_KEY = "late"  # marks an epoch reported after the rerun of a trial that lost it


class ForwardReports(UserCallback):
    """On the Train controller: each round of reports, rank 0's metrics onto `queue`. In the
    trial, `latest` is the last report passed on to Tune and `epochs` the epochs of all of
    them (the controller's copy has neither)."""

    def __init__(self, queue: Any) -> None:
        self._queue = queue
        self.latest: dict[str, Any] = {}
        self.epochs: list[int] = []

    def __getstate__(self) -> dict[str, Any]:
        return {"_queue": self._queue, "latest": {}, "epochs": []}  # the trial's, not sent

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
        args=(queue, forward, done, failed, poll_s),
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
    queue: Any, forward: ForwardReports, done: threading.Event, failed: list, poll_s: float
) -> None:
    """The trial's thread: each queued report to Tune (`report_epoch`), in order, until `done`
    was set before the queue was found empty (then nothing more can come); the last one stays
    in `forward.latest`. Tune stopping the trial ends the thread (SystemExit)."""
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
            report_epoch(item)
            forward.latest.clear()
            forward.latest.update(item)
            forward.epochs.append(int(item["epoch"]))
    except Exception as e:  # a report Tune refused, the queue gone: the trial's error
        failed.append(e)


def report_epoch(metrics: Mapping[str, Any]) -> None:
    """One epoch's metrics to Tune, with the tiny checkpoint that names the epoch."""
    from ray import tune

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / EPOCH_FILE).write_text(json.dumps({"epoch": int(metrics["epoch"])}))
        tune.report(dict(metrics), checkpoint=tune.Checkpoint.from_directory(tmp))


def epoch_tune_has() -> int | None:
    """The last epoch Tune recorded for this trial before this attempt (None: none)."""
    from ray import tune

    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as d:
        path = Path(d) / EPOCH_FILE
        return json.loads(path.read_text())["epoch"] if path.is_file() else None


def report_missed_epochs(
    history: Sequence[Mapping[str, Any]], had: int | None, forwarded: Sequence[int]
) -> list[int]:
    """Report late, in order, the epochs of the Train run's `history` that Tune never got:
    after `had` (what Tune had before this attempt) and before the first epoch this attempt
    forwarded. Returns them."""
    first = min(forwarded, default=None)
    missed = [
        m
        for m in history
        if (had is None or m["epoch"] > had) and (first is None or m["epoch"] < first)
    ]
    for m in missed:
        report_epoch({**m, LATE_KEY: 1})
    return [int(m["epoch"]) for m in missed]
