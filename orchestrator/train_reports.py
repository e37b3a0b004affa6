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
So each report reaches Tune with a tiny checkpoint naming its epoch (`report_epoch`); a rerun
reads the last one (`epoch_tune_has`), and the callback sends, before the first report of its
Train controller, the run's history read from that report's Train checkpoint; the trial's
thread reports late, in order, the epochs of it that Tune never got. Epochs reach Tune in
order and once, however many attempts die (a sweep started before this release and resumed
mid-search may see its earlier epochs twice: its attempts left no epoch checkpoints).
"""

from __future__ import annotations

import json
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ray.train import UserCallback

# where a forwarded report says which Train checkpoint it was reported with (as Ray's own)
CHECKPOINT_PATH_KEY = "checkpoint_path"
EPOCH_FILE = "reported_epoch.json"  # the tiny Tune checkpoint of a forwarded report
LATE_KEY = "late"  # marks an epoch reported after the rerun of a trial that lost it
HISTORY_KEY = "history"  # a queue item with the Train run's epochs before this controller's


class ForwardReports(UserCallback):
    """On the Train controller: each round of reports, rank 0's metrics onto `queue`, the
    first preceded by the run's earlier epochs. In the trial, `latest` is the last report
    passed on to Tune (the controller's copy has none)."""

    def __init__(self, queue: Any) -> None:
        self._queue = queue
        self._first = True
        self.latest: dict[str, Any] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"_queue": self._queue, "_first": True, "latest": {}}

    def after_report(
        self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any
    ) -> None:
        item = dict(metrics[0])
        if checkpoint is not None:
            item[CHECKPOINT_PATH_KEY] = checkpoint.path
            if self._first:  # a resumed run: what came before, for the epochs Tune lacks
                self._queue.put({HISTORY_KEY: _earlier_epochs(checkpoint)})
        self._first = False
        self._queue.put(item)


def _earlier_epochs(checkpoint: Any) -> list[dict[str, Any]]:
    """The epochs before the one `checkpoint` was reported with (none where it has no
    history: a checkpoint from before this release; a URI store may say so as any OSError)."""
    from cluster.worker import HISTORY_FILE  # the ranks' side; torch only where it runs

    try:
        with checkpoint.filesystem.open_input_stream(f"{checkpoint.path}/{HISTORY_FILE}") as f:
            return json.loads(f.read())[:-1]
    except OSError:
        return []


@contextmanager
def forwarded_train_reports(
    had: int | None = None, poll_s: float = 0.2
) -> Iterator[ForwardReports]:
    """The callback to give the Train run; every report it forwards is passed to `tune.report`
    by the time this context exits (the queue, an actor of the trial's, goes with it), and
    every earlier epoch after `had` (the last epoch Tune has of this trial) too. A report that
    cannot be passed on fails the trial here, as with Ray's own callback."""
    from ray.util.queue import Queue

    queue = Queue(actor_options={"num_cpus": 0})  # unbounded: the ranks never wait for Tune
    done = threading.Event()
    failed: list[Exception] = []
    forward = ForwardReports(queue)
    thread = threading.Thread(
        target=_pass_on,
        args=(queue, forward, had, done, failed, poll_s),
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
    forward: ForwardReports,
    had: int | None,
    done: threading.Event,
    failed: list,
    poll_s: float,
) -> None:
    """The trial's thread: each queued report to Tune (`report_epoch`), in order, until `done`
    was set before the queue was found empty (then nothing more can come); the last one stays
    in `forward.latest`. Of a run's earlier epochs, those after the last Tune has (`had`, then
    each one passed on) are reported late. Tune stopping the trial ends the thread."""
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
            if HISTORY_KEY in item:
                for metrics in item[HISTORY_KEY]:
                    if had is None or metrics["epoch"] > had:
                        report_epoch({**metrics, LATE_KEY: 1})
                        had = int(metrics["epoch"])
                continue
            report_epoch(item)
            forward.latest, had = item, int(item["epoch"])
    except Exception as e:  # a report Tune refused, the queue gone: the trial's error
        failed.append(e)


def report_epoch(metrics: Mapping[str, Any]) -> None:
    """One epoch's metrics to Tune, with the tiny checkpoint that names the epoch."""
    from ray import tune

    with tempfile.TemporaryDirectory() as tmp:
        write_epoch_file(Path(tmp), int(metrics["epoch"]))
        tune.report(dict(metrics), checkpoint=tune.Checkpoint.from_directory(tmp))


def write_epoch_file(folder: Path, epoch: int) -> None:
    """Into a Tune checkpoint's folder: the last epoch Tune has with it (`epoch_tune_has`)."""
    (folder / EPOCH_FILE).write_text(json.dumps({"epoch": epoch}))


def epoch_tune_has() -> int | None:
    """The last epoch Tune recorded for this trial before this attempt (None: none)."""
    from ray import tune

    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as d:
        path = Path(d) / EPOCH_FILE
        return json.loads(path.read_text())["epoch"] if path.is_file() else None
