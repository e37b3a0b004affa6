"""What a sweep's trial tells the driver at its end, written and read through one class each.

A trial's last Tune report is one of: a `SearchReport` or a `RetrainReport` (marked `done`), a
`FailedReport` (marked `failed`: a user error ended the trial), or, for a trial that never got
there, an epoch's report. `to_metrics()` is what the trial passes to `tune.report` (JSON-safe
scalars and strings, a None field left out); `from_metrics()` is how the driver reads it back
(`orchestrator.results`), so each key is spelt once: the report's field name, which is also the
results.parquet column it fills (`latency_table_ms`, as in `RetrainResult` and the summaries).

Every result Tune hands back also holds Tune's own keys (`trial_id`, `time_total_s`,
`hostname`, ...), so `from_metrics` takes its fields and ignores the rest; a required field
missing, or one of the wrong type, is a `ReportError` naming the field. Fields a run from before
they existed lacks (`alpha` and `test_samples` came later) are optional, so a resumed sweep,
whose rows Tune rebuilds from the results it saved, still reads its old trials. Tried and
rejected: a pydantic model, since `extra="forbid"` would refuse Tune's keys and `"ignore"` is
what `from_metrics` does in a few lines without a second validation layer.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from nas_core.errors import ProxylessError

if TYPE_CHECKING:  # nas_core.retrain pulls in torch, which reading results never needs
    from nas_core.retrain import RetrainResult
    from nas_core.search_result import SearchResult

DONE = "done"  # the mark of a finished trial's report
FAILED = "failed"  # the mark of a trial a user error stopped

R = TypeVar("R", bound="_Report")


class ReportError(ProxylessError):
    """A trial's report that lacks a field, or holds one of the wrong type."""


@functools.cache
def _field_types(cls: type) -> dict[str, type]:
    """Each field's type, `X | None` read as X (None is handled before the type is checked)."""
    types = {}
    for name, hint in typing.get_type_hints(cls).items():
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        types[name] = args[0] if args else hint
    return types


def _typed(value: Any, kind: type) -> Any:
    """`value` as `kind` (an integral float may be an int), or ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"expected {kind.__name__}, got {value!r}")
    if kind is float and isinstance(value, int | float):
        return float(value)
    if kind is int and isinstance(value, int | float) and float(value).is_integer():
        return int(value)
    if kind is str and isinstance(value, str):
        return value
    raise ValueError(f"expected {kind.__name__}, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class _Report:
    """A report's fields with their mark; fields without a default are required."""

    MARK: ClassVar[str] = DONE
    TRIAL: ClassVar[str] = "a"  # which trial sends it, for messages

    @classmethod
    def sent(cls, metrics: Mapping[str, Any]) -> bool:
        """Whether `metrics` is (Tune's copy of) this kind of report."""
        return bool(metrics.get(cls.MARK))

    def present(self) -> dict[str, Any]:
        """The fields that are not None, by name (which is also their results column)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {k: v for k, v in fields.items() if v is not None}

    def to_metrics(self) -> dict[str, Any]:
        """What the trial reports to Tune: the mark, then every field that is not None."""
        return {self.MARK: 1, **self.present()}

    @classmethod
    def from_metrics(cls: type[R], metrics: Mapping[str, Any]) -> R:
        """The report in Tune's copy of it; the keys Tune adds and any others are ignored."""
        if not cls.sent(metrics):
            raise ReportError(f"not {cls.TRIAL} trial's report: no {cls.MARK!r} mark")
        values = {}
        for f in dataclasses.fields(cls):
            value = metrics.get(f.name)
            if value is None:
                if f.default is dataclasses.MISSING:
                    raise ReportError(f"{cls.TRIAL} trial's report lacks {f.name!r}")
                continue
            try:
                values[f.name] = _typed(value, _field_types(cls)[f.name])
            except ValueError as e:
                raise ReportError(f"{cls.TRIAL} trial's report: {f.name}: {e}") from None
        return cls(**values)


@dataclass(frozen=True, kw_only=True)
class FailedReport(_Report):
    """A trial a user error stopped (a NaN loss, a table that cannot price the space): its
    message, instead of a crash Tune would retry."""

    MARK: ClassVar[str] = FAILED
    TRIAL: ClassVar[str] = "a failed"

    error: str


@dataclass(frozen=True, kw_only=True)
class SearchReport(_Report):
    """A finished search trial: its derived net, priced on its table and counted."""

    TRIAL: ClassVar[str] = "a search"

    architecture: str  # JSON (nas_core.architecture.Architecture)
    space: str  # JSON (nas_core.spaces.SearchSpace)
    strategy: str
    device: str  # the latency table's device
    latency_table_ms: float | None = None  # None: searched without a table
    valid_accuracy: float  # the super-net's last valid accuracy
    params: int
    macs: int
    epochs: int
    # JSON: the final α (ArchState), under the key of every epoch's α (arch_view.ALPHA_KEY);
    # None before sweeps recorded it
    alpha: str | None = None
    node_id: str | None = None  # the Ray node that searched (Train: rank 0's); None before

    @classmethod
    def from_result(
        cls,
        result: SearchResult,
        strategy: str,
        device: str,
        alpha: str | None,
        node_id: str | None = None,
    ) -> SearchReport:
        """The report of a search's result."""
        arch = result.architecture
        return cls(
            architecture=json.dumps(arch.to_config()),
            space=json.dumps(arch.space.to_config()),
            strategy=strategy,
            device=device,
            valid_accuracy=result.valid_accuracy,
            params=result.params,
            macs=result.macs,
            epochs=result.epochs,
            latency_table_ms=result.latency_table_ms,
            alpha=alpha,
            node_id=node_id,
        )


@dataclass(frozen=True, kw_only=True)
class RetrainReport(_Report):
    """A finished retrain trial: the standalone net's test score, size and latencies."""

    TRIAL: ClassVar[str] = "a retrain"

    epochs: int
    valid_accuracy: float | None = None  # the last epoch's; None: no epoch ran
    test_accuracy: float
    test_loss: float
    test_samples: int | None = None  # the test split's size; None before sweeps recorded it
    latency_table_ms: float | None = None  # None: retrained without a table
    latency_measured_ms: float | None = None  # timed on the trial's machine, batch 1
    params: int
    macs: int
    node_id: str | None = None  # the Ray node that retrained it; None before sweeps recorded it

    def to_metrics(self) -> dict[str, Any]:
        # `epoch` as in every epoch's report: the final checkpoint's event names its epoch
        return {**super().to_metrics(), "epoch": float(self.epochs - 1)}

    @classmethod
    def from_result(cls, result: RetrainResult, node_id: str | None = None) -> RetrainReport:
        """The report of a retrain's result."""
        last = result.history[-1] if result.history else {}
        return cls(
            epochs=len(result.history),
            test_accuracy=result.test_accuracy,
            test_loss=result.test_loss,
            params=result.params,
            macs=result.macs,
            valid_accuracy=last.get("valid/accuracy"),
            test_samples=result.test_samples,
            latency_table_ms=result.latency_table_ms,
            latency_measured_ms=result.latency_measured_ms,
            node_id=node_id,
        )
