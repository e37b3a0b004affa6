"""The two Tune function trainables of a sweep: one search trial, one retrain trial.

A search trial with `resources.workers >= 1` builds a Ray Train `TorchTrainer` inside itself
(`cluster.search.run_search`), names the Train run after the trial and forwards rank 0's
per-epoch reports to Tune; with `workers: 0` it runs the single-process `Searcher` and reports
each epoch with a Tune checkpoint. Either way a restarted trial continues where it stopped.

A user error inside a trial (a NaN loss, a table that cannot price the space) ends the trial
with `failed` and the message in its last report instead of a crash Tune would retry.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from cluster.resources import NODE_ID_KEY, current_node_id
from nas_core.arch_view import alpha_report
from nas_core.architecture import Architecture
from nas_core.checkpoint import load_checkpoint, save_checkpoint
from nas_core.data import build_datasets
from nas_core.errors import ProxylessError
from nas_core.latency.table import LatencyTable
from nas_core.retrain import WEIGHTS
from nas_core.search import Searcher
from nas_core.search_result import SearchResult
from nas_core.weights_meta import meta_name
from orchestrator.sweep_spec import SweepSpec
from orchestrator.train_reports import write_epoch_file
from orchestrator.trial_report import FailedReport, RetrainReport, SearchReport


def _numbers(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}


def _threads(spec: SweepSpec) -> None:
    torch.set_num_threads(max(1, int(spec.resources.cpus_per_worker)))


# the final Tune checkpoint of a search: what it leaves, and its last state (checkpoint.pt, in
# process) so that a trial restarted after that report derives again instead of failing
SEARCH_OUTPUTS = (
    "architecture.json",
    "summary.json",
    "arch_state.json",
    "config.json",
    "checkpoint.pt",
)
# what the driver copies from a retrain trial's final checkpoint (`retrain`'s out dir, and the
# last state.pt) into nets/<trial>/; a checkpoint written before weights carried their record
# has no NET_RECORD, and its net is copied without one
NET_RECORD = meta_name(WEIGHTS)
NET_FILES = (WEIGHTS, NET_RECORD, "architecture.json", "retrain.json")


def search_trial(
    params: dict[str, Any],
    spec: dict[str, Any],
    tables: dict[str, dict[str, Any]],
    train_storage: str,
) -> None:
    """Tune trainable: one search at the trial's λ₂ / B / F / target / table.

    The search works in a temporary folder; what it must keep travels in Tune checkpoints
    (one per epoch, and a last one with the derived architecture and summary).
    """
    from ray import tune

    sweep = SweepSpec.from_config(spec)
    trial_id = tune.get_context().get_trial_id()
    with tempfile.TemporaryDirectory() as work:
        out = Path(work) / "search"
        try:
            config = sweep.search_config(params, out_dir=str(out))
            table = LatencyTable.from_yaml_dict(tables[params.get("lut") or ""], "latency table")
            if sweep.resources.workers == 0:
                result, node = _search_in_process(sweep, config, table), current_node_id()
            else:
                result, node = _search_on_train(sweep, config, table, trial_id, train_storage)
        except ProxylessError as e:
            tune.report(FailedReport(error=str(e)).to_metrics())
            return
        final = Path(work) / "final"
        final.mkdir()
        for name in SEARCH_OUTPUTS:
            if (out / name).is_file():
                shutil.copy2(out / name, final / name)
        alpha = _read_text(final / "arch_state.json")  # the final α, for results.parquet
        write_epoch_file(final, result.epochs - 1)  # a restart from here reports no epoch again
        report = SearchReport.from_result(
            result, config.strategy.name, table.meta.device, alpha, node_id=node
        )
        tune.report(report.to_metrics(), checkpoint=tune.Checkpoint.from_directory(final))


def _read_text(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.is_file() else None


def _search_in_process(sweep: SweepSpec, config: Any, table: LatencyTable) -> SearchResult:
    from ray import tune

    _threads(sweep)
    searcher = Searcher(config, build_datasets(config.data), table)
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            searcher.load_state_dict(load_checkpoint(Path(d) / "checkpoint.pt"))

    def report(epoch: int, metrics: dict[str, float]) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copy2(searcher.checkpoint_path, Path(tmp) / "checkpoint.pt")
            epoch_report = {**_numbers(metrics), **alpha_report(searcher.net.arch_state)}
            tune.report(epoch_report, checkpoint=tune.Checkpoint.from_directory(tmp))

    return searcher.run(on_epoch_end=report)


def _search_on_train(
    sweep: SweepSpec, config: Any, table: LatencyTable, trial_id: str, storage: str
) -> tuple[SearchResult, str | None]:
    """The search's result and the node its rank 0 ran on (from its last report)."""
    from cluster.search import run_search
    from orchestrator.train_reports import epoch_tune_has, forwarded_train_reports

    res = sweep.resources
    # a worker's ProxylessError comes out of run_search as itself; rank 0's reports have all
    # reached Tune when the context exits, before this trial reports anything itself
    # a rerun trial: the epochs the attempts before it got to Tune are not reported again
    with forwarded_train_reports(had=epoch_tune_has()) as forward:
        result = run_search(
            config,
            res.workers,
            use_gpu=res.use_gpu,
            max_failures=res.max_failures,
            gpus_per_worker=res.gpus_per_worker,
            cpus_per_worker=res.cpus_per_worker,
            placement_timeout_s=res.placement_timeout_s,
            checkpoints_to_keep=res.checkpoints_to_keep,
            run_name=f"search-{trial_id}",  # a restarted trial resumes this Train run
            storage_path=storage,
            callbacks=[forward],
            table=table,
            node_resources=res.node_resources.search_workers,
        )
    return result, forward.latest.get(NODE_ID_KEY)


def retrain_trial(
    params: dict[str, Any],
    spec: dict[str, Any],
    jobs: dict[str, dict[str, Any]],
) -> None:
    """Tune trainable: train one derived architecture from scratch and measure it.

    Every epoch is a Tune checkpoint (weights, optimiser, schedule, RNG), so a restarted trial
    continues with the next epoch; the last report's checkpoint holds the net itself
    (weights.pt and its record weights.meta.json, architecture.json, retrain.json), which the
    driver copies into the run folder.
    """
    from ray import tune

    from nas_core.retrain import retrain

    sweep = SweepSpec.from_config(spec)
    _threads(sweep)
    job = jobs[params["search_trial"]]
    latest: dict[str, Any] = {}  # the state of the last finished epoch

    def report(epoch: int, metrics: dict[str, float], state: dict[str, Any]) -> None:
        latest["state"] = state
        with tempfile.TemporaryDirectory() as tmp:
            save_checkpoint(Path(tmp) / "state.pt", state)
            tune.report(_numbers(metrics), checkpoint=tune.Checkpoint.from_directory(tmp))

    with tempfile.TemporaryDirectory() as out:
        try:
            resume = None
            checkpoint = tune.get_checkpoint()
            if checkpoint is not None:  # an epoch's state, or the final one (then only testing)
                with checkpoint.as_directory() as d:
                    resume = latest["state"] = load_checkpoint(Path(d) / "state.pt")
            arch = Architecture.from_config(job["architecture"])
            table = LatencyTable.from_yaml_dict(job["table"], "latency table")
            result = retrain(
                arch,
                sweep.retrain_config(job["seed"]),
                out_dir=out,
                on_epoch_end=report,
                table=table,
                resume=resume,
            )
        except ProxylessError as e:
            tune.report(FailedReport(error=str(e)).to_metrics())
            return
        # the last state too: a trial restarted after this report only re-runs the test
        save_checkpoint(Path(out) / "state.pt", latest["state"])
        metrics = RetrainReport.from_result(result, node_id=current_node_id()).to_metrics()
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(out))
