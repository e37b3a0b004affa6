"""The reports a sweep's trials send the driver: one class per report, one name per field."""

from __future__ import annotations

import dataclasses
import json

import pytest

from nas_core.arch_view import ALPHA_KEY
from nas_core.architecture import Architecture
from nas_core.retrain import RetrainResult
from nas_core.search_result import SearchResult
from nas_core.spaces import create_space
from orchestrator.results import COLUMNS, retrain_row, search_row
from orchestrator.trial_report import FailedReport, ReportError, RetrainReport, SearchReport
from tests.conftest import SMALL_SPACES

# what a trial's last report held before the classes (orchestrator/trials.py at 941999d)
SEARCH_KEYS = {"done", "architecture", "space", "strategy", "device", "latency_table_ms",
               "valid_accuracy", "params", "macs", "epochs", "alpha"}  # fmt: skip
RETRAIN_KEYS = {"done", "epoch", "epochs", "valid_accuracy", "test_accuracy", "test_loss",
                "test_samples", "latency_table_ms", "latency_measured_ms", "params",
                "macs"}  # fmt: skip
TUNE_KEYS = {"trial_id": "abc_00000", "time_total_s": 12.5, "hostname": "node-1",
             "training_iteration": 4, "config": {"lambda2": 0.5}}  # fmt: skip


@pytest.fixture(scope="module")
def arch() -> Architecture:
    space = create_space("mobilenet", **SMALL_SPACES["mobilenet"])
    return Architecture(space, tuple(s.candidates[0] for s in space.layer_specs()))


@pytest.fixture(scope="module")
def search_report(arch: Architecture) -> SearchReport:
    result = SearchResult(arch, 1.25, 1000, 2000, 0.75, 3, ())
    return SearchReport.from_result(result, "gradient", "toy cpu", alpha='{"alpha": []}')


@pytest.fixture(scope="module")
def retrain_report() -> RetrainReport:
    history = ({"epoch": 0, "valid/accuracy": 0.5}, {"epoch": 1, "valid/accuracy": 0.625})
    result = RetrainResult(0.8, 0.6, 400, 1000, 2000, 1.25, 3.5, history)
    return RetrainReport.from_result(result)


def test_reports_round_trip_through_their_metrics(search_report, retrain_report) -> None:
    for report in (search_report, retrain_report, FailedReport(error="loss became nan")):
        metrics = report.to_metrics()
        assert type(report).from_metrics(metrics) == report
        assert json.loads(json.dumps(metrics)) == metrics  # what Tune saves and reads back
    sparse = dataclasses.replace(search_report, latency_table_ms=None, alpha=None)
    assert "alpha" not in sparse.to_metrics()  # None is left out, as before
    assert SearchReport.from_metrics(sparse.to_metrics()) == sparse


def test_the_wire_format_is_the_one_sweeps_already_saved(search_report, retrain_report) -> None:
    """A resumed sweep reads the reports its trials saved before: same keys, same marks."""
    assert set(search_report.to_metrics()) == SEARCH_KEYS
    assert set(retrain_report.to_metrics()) == RETRAIN_KEYS
    assert retrain_report.to_metrics()["epoch"] == 1.0 and retrain_report.epochs == 2
    assert retrain_report.valid_accuracy == 0.625  # the last epoch's
    assert FailedReport(error="x").to_metrics() == {"failed": 1, "error": "x"}


def test_every_field_is_the_results_column_it_fills() -> None:
    """One name per field: a report's field, its key in Tune and its column agree."""
    for kind in (SearchReport, RetrainReport):
        names = {f.name for f in dataclasses.fields(kind)}
        assert names - {"test_loss"} <= set(COLUMNS), kind
    searched = {f.name for f in dataclasses.fields(SearchReport)}
    assert ALPHA_KEY in searched  # the final α has the key of every epoch's


def test_the_node_that_trained_a_net_fills_its_rows_column(search_report, retrain_report) -> None:
    """Where each phase ran (a labelled node of a heterogeneous cluster): the report's
    node_id, not Tune's hostname (every node of one machine has the same)."""
    placed = dataclasses.replace(search_report, node_id="searching-node")
    metrics = {**placed.to_metrics(), **TUNE_KEYS}
    row = search_row("abc_00000", {"lambda2": 0.5}, metrics, None, 0)
    assert row["node_id"] == "searching-node" and row["hostname"] == "node-1"
    trained = dataclasses.replace(retrain_report, node_id="training-node")
    metrics = {**trained.to_metrics(), **TUNE_KEYS, "trial_id": "def_00000"}
    assert retrain_row("def_00000", row, metrics, None)["node_id"] == "training-node"


def test_tunes_keys_are_ignored_and_an_older_run_still_reads(search_report) -> None:
    metrics = {**search_report.to_metrics(), **TUNE_KEYS}
    assert SearchReport.from_metrics(metrics) == search_report
    old = {k: v for k, v in metrics.items() if k != "alpha"}  # before sweeps recorded α
    assert SearchReport.from_metrics(old).alpha is None
    first = {"done": 1, "epoch": 2.0, "epochs": 3, "test_accuracy": 0.9, "test_loss": 0.4,
             "params": 10, "macs": 20, "weights": "/tmp/x/weights.pt"}  # fmt: skip
    assert RetrainReport.from_metrics(first).test_samples is None  # and its `weights` ignored


def test_a_missing_or_mistyped_field_is_one_clear_line(search_report) -> None:
    metrics = search_report.to_metrics()
    lacking = {k: v for k, v in metrics.items() if k != "architecture"}
    with pytest.raises(ReportError, match="a search trial's report lacks 'architecture'"):
        SearchReport.from_metrics(lacking)
    with pytest.raises(ReportError, match="params: expected int, got 'many'"):
        SearchReport.from_metrics({**metrics, "params": "many"})
    with pytest.raises(ReportError, match="epochs: expected int, got True"):
        SearchReport.from_metrics({**metrics, "epochs": True})
    with pytest.raises(ReportError, match="no 'done' mark"):
        RetrainReport.from_metrics({"failed": 1, "error": "x"})
    # the driver names the trial, and a report that does not read costs its own row only
    row = search_row("s7", {"lambda2": 0.5}, {"done": 1, "time_total_s": 3.0}, None)
    assert row["status"] == "error" and row["lambda2"] == 0.5 and row["time_total_s"] == 3.0
    assert row["error"].startswith("trial s7: a search trial's report lacks")
    bad = retrain_row("r7", row, {"failed": 1}, None)  # a failure mark without its error
    assert bad["status"] == "error" and bad["error"].startswith("trial r7: ")
    with pytest.raises(TypeError):  # a field no report has: a programming error
        SearchReport(**{**search_report.present(), "latency_ms": 1.0})


def test_rows_take_the_reports_fields(search_report, retrain_report) -> None:
    s = search_row("s0", {"lambda2": 0.5}, {**search_report.to_metrics(), **TUNE_KEYS}, None)
    assert {k: s[k] for k in search_report.present()} == search_report.present()
    assert s["status"] == "done" and s["B"] == 1 and s["time_total_s"] == 12.5
    r = retrain_row("r0", s, retrain_report.to_metrics(), None)
    assert {k: r[k] for k in retrain_report.present() if k != "test_loss"} == {
        k: v for k, v in retrain_report.present().items() if k != "test_loss"
    }
    failed = retrain_row("r1", s, FailedReport(error="loss became nan").to_metrics(), None)
    assert (failed["status"], failed["error"]) == ("failed", "loss became nan")
    assert failed["latency_table_ms"] == 1.25 and failed["test_accuracy"] is None  # the search's
    epoch = {"epoch": 1, "valid/accuracy": 0.5, ALPHA_KEY: '{"a": 1}'}  # a crash after it
    crashed = search_row("s1", {}, epoch, RuntimeError("worker died"))
    assert crashed["status"] == "error" and crashed["alpha"] == '{"a": 1}'
