"""What the driver records of a sweep's trials, as three Tune callbacks: the event log
(events.jsonl), each trial's TensorBoard scalars and α images, and one progress line per epoch.

Tune pickles callbacks with the experiment, so what is per driver (open writers, the time the
first trial started) is dropped from the pickled state: a resumed driver opens its own and
times its own pace.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ray.tune import Callback

from nas_core.arch_state import ArchState
from nas_core.arch_view import ALPHA_KEY, log_alpha
from nas_core.logs import get_logger
from orchestrator.train_reports import LATE_KEY
from orchestrator.trial_report import FailedReport

log = get_logger(__name__)


def _epoch_result(result: dict) -> bool:
    """A trial's per-epoch report (metrics named `group/name`), not Tune's own bookkeeping."""
    return "/" in "".join(result) and "epoch" in result


def _recorded_already(seen: dict[str, int], trial_id: str, result: dict) -> bool:
    """A late epoch (`orchestrator.train_reports`) this driver has recorded already, else note
    the epoch. Tune can hold an epoch's result without its checkpoint when the trial's node goes
    in between (measured once in four on the multi-node test), and the rerun, which reads what
    Tune has from that checkpoint, then reports the epoch again."""
    epoch, last = int(result["epoch"]), seen.get(trial_id, -1)
    if result.get(LATE_KEY) and epoch <= last:
        return True
    seen[trial_id] = max(epoch, last)
    return False


def _epochs(callback: Callback) -> dict[str, int]:
    """A callback's last epoch per trial; one Tune pickled before it kept them starts empty."""
    return callback.__dict__.setdefault("_epochs", {})


class EventLog(Callback):
    """events.jsonl: start, checkpoint, epoch (with the process and node that ran it),
    complete and error of every trial."""

    def __init__(self, run_dir: str, phase: str) -> None:
        self.run_dir, self.phase = run_dir, phase
        self._epochs: dict[str, int] = {}  # trial → last epoch written

    def _event(self, event: str, trial: Any, **extra: Any) -> None:
        line = {"time": time.time(), "phase": self.phase, "event": event}
        line.update(trial=trial.trial_id, **extra)
        with (Path(self.run_dir) / "events.jsonl").open("a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        knobs = {k: v for k, v in trial.config.items() if isinstance(v, int | float | str)}
        self._event("start", trial, params=knobs)

    def on_checkpoint(
        self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any
    ) -> None:
        # recorded by Tune: a trial restarted from here on continues after this epoch (a
        # Train-backed search from its Train run's own checkpoint; Tune's names the epoch)
        last = trial.last_result or {}
        self._event("checkpoint", trial, epoch=last.get("epoch"), pid=last.get("pid"))

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        if _epoch_result(result) and not _recorded_already(_epochs(self), trial.trial_id, result):
            # which process on which node ran it: its logs, or a stop
            node = result.get("hostname")
            # a Train-backed search's epoch says which node its rank 0 ran on, and whether it
            # was reported late (its report died with a node: orchestrator.train_reports)
            extra = {k: result[k] for k in ("node_id", LATE_KEY) if result.get(k)}
            self._event(
                "epoch", trial, epoch=result["epoch"], pid=result.get("pid"), node=node, **extra
            )

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._event("complete", trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._event("error", trial)


class TrialTensorBoard(Callback):
    """tensorboard/<phase>/<trial>: every epoch's scalars, and a search epoch's α heat-map."""

    def __init__(self, run_dir: str, phase: str) -> None:
        self.run_dir, self.phase = run_dir, phase
        self._writers: dict[str, Any] = {}
        self._epochs: dict[str, int] = {}  # trial → last epoch written

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_writers": {}}

    def _writer(self, trial_id: str) -> Any:
        if trial_id not in self._writers:
            from torch.utils.tensorboard import SummaryWriter

            logdir = Path(self.run_dir) / "tensorboard" / self.phase / trial_id
            self._writers[trial_id] = SummaryWriter(str(logdir))
        return self._writers[trial_id]

    def _close(self, trial_id: str) -> None:
        writer = self._writers.pop(trial_id, None)
        if writer is not None:
            writer.close()

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        if not _epoch_result(result) or _recorded_already(_epochs(self), trial.trial_id, result):
            return
        writer, step = self._writer(trial.trial_id), int(result["epoch"])
        for k, v in result.items():
            if "/" in k and isinstance(v, int | float) and not isinstance(v, bool):
                writer.add_scalar(k, v, step)
        if isinstance(result.get(ALPHA_KEY), str):  # a search epoch: its α heat-map
            log_alpha(writer, ArchState.from_config(json.loads(result[ALPHA_KEY])), step)
        writer.flush()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._close(trial.trial_id)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._close(trial.trial_id)


class SweepProgress(Callback):
    """One line per trial epoch and per finished trial: which trial of how many, its valid
    accuracy and E[latency], and the time left at the pace of this driver's finished trials."""

    def __init__(self, phase: str, total: int | None = None) -> None:
        # Tune creates a phase's trials as it starts them: the count comes from the spec
        self.phase, self.total = phase, total
        self._started: float | None = None  # this driver's first trial start (for the ETA)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_started": None}

    def _count(self, trials: list) -> int:
        return max(self.total or 0, len(trials))

    def _position(self, trials: list, trial: Any) -> str:
        k = next((i for i, t in enumerate(trials, 1) if t is trial), 0)
        return f"trial {k} of {self._count(trials)}"

    def _eta(self, trials: list, trial: Any) -> str:
        """Time left, from the pace of the trials finished since this driver started."""
        done = sum(t is trial or t.status in ("TERMINATED", "ERROR") for t in trials)
        if not done or self._started is None:
            return ""
        left = (time.time() - self._started) / done * (self._count(trials) - done)
        return f", {done} of {self._count(trials)} done, about {left / 60:.0f} min left"

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if self._started is None:
            self._started = time.time()

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        if _epoch_result(result):
            lat = result.get("latency/expected_ms")
            log.info(
                f"  {self.phase} {self._position(trials, trial)} ({trial.trial_id}) "
                f"epoch {int(result['epoch']) + 1}: "
                f"valid acc {result.get('valid/accuracy', float('nan')):.3f}"
                + (f", E[latency] {lat:.3f} ms" if lat is not None else "")
            )
        if FailedReport.sent(result):
            error = FailedReport.from_metrics(result).error
            log.warning(f"  {self.phase} {trial.trial_id} failed: {error}")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        where = f"{self.phase} {self._position(trials, trial)} ({trial.trial_id})"
        log.info(f"  {where} finished{self._eta(trials, trial)}")


class SweepLog(Callback):
    """The three callbacks as the one a sweep started before they were split pickled.

    Tune restores a run's callbacks from its experiment state by import path
    (`orchestrator.sweep.SweepLog`), so a sweep begun with an older version resumes through
    this class; new runs register the three (`sweep_callbacks`)."""

    HOOKS = ("on_trial_start", "on_checkpoint", "on_trial_result", "on_trial_complete",
             "on_trial_error")  # fmt: skip

    def __init__(self, run_dir: str, phase: str, total: int | None = None) -> None:
        self.__setstate__({"run_dir": run_dir, "phase": phase, "total": total})

    def __getstate__(self) -> dict[str, Any]:
        return {"run_dir": self.run_dir, "phase": self.phase, "total": self.total}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.run_dir, self.phase, self.total = state["run_dir"], state["phase"], state["total"]
        self.parts = sweep_callbacks(self.run_dir, self.phase, self.total)
        for hook in self.HOOKS:
            setattr(self, hook, self._calling(hook))

    def _calling(self, hook: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> None:
            for part in self.parts:
                getattr(part, hook)(*args, **kwargs)

        return call


def sweep_callbacks(run_dir: str, phase: str, total: int | None) -> list[Callback]:
    """The driver's three callbacks of one phase."""
    return [EventLog(run_dir, phase), TrialTensorBoard(run_dir, phase), SweepProgress(phase, total)]
