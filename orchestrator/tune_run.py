"""One phase of a sweep as a Ray Tune run: its experiment (restored when it exists), its
trials' resources and concurrency, and the driver's environment for Tune."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

from cluster.resources import require_gpus, require_node_resources
from nas_core.environ import environment
from orchestrator.ray_compat import fit_noting_stops
from orchestrator.storage import RunStorage
from orchestrator.sweep_log import sweep_callbacks
from orchestrator.sweep_spec import ResourceConfig, SweepSpec


def run_phase(
    spec: SweepSpec,
    store: RunStorage,
    phase: str,
    trainable: Callable[..., None],
    param_space: Mapping[str, Any],
    num_samples: int,
    total: int,
) -> tuple[Any, bool]:
    """One phase's Tune run (restored when its experiment exists): its results, and whether
    the user stopped it."""
    import ray
    from ray import tune

    experiment = experiment_name(spec, phase)
    path = store.url(f"tune/{experiment}")
    if not tune.Tuner.can_restore(path) and tune.Tuner.can_restore(store.url(f"tune/{phase}")):
        path = store.url(f"tune/{phase}")  # a run started before experiments named the sweep
    res = spec.resources
    trainable = tune.with_resources(trainable, trial_request(res, phase))
    if tune.Tuner.can_restore(path):
        tuner = tune.Tuner.restore(
            path, trainable=trainable, resume_unfinished=True, resume_errored=True
        )
    else:
        concurrency = res.concurrency(ray.cluster_resources(), phase)
        tuner = tune.Tuner(
            trainable,
            param_space=dict(param_space),
            tune_config=tune.TuneConfig(
                num_samples=num_samples,
                max_concurrent_trials=concurrency,
                reuse_actors=True,  # one torch import per trial slot, not per trial
            ),
            run_config=tune.RunConfig(
                name=experiment,
                storage_path=store.url("tune"),
                callbacks=sweep_callbacks(str(store.work_dir), phase, total),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=res.checkpoints_to_keep),
                failure_config=tune.FailureConfig(max_failures=res.max_failures),
                verbose=0,
            ),
        )
    return fit_noting_stops(tuner)


_FIELD = {"search": "search_workers", "retrain": "retrain"}  # a phase's node_resources field


def require_resources(res: ResourceConfig) -> None:
    """Before any trial waits: the cluster can offer each phase's trials the GPUs and node
    resources they ask for (else a trial waits in Tune's queue forever, and a retrain phase
    would find out only after every search ran)."""
    for phase, field in _FIELD.items():
        require_gpus(res.trial_resources(phase)[1], f"each {phase} trial")
        setting = f"resources.node_resources.{field}"
        require_node_resources(res.custom_resources(phase), f"each {phase} trial", setting)


def trial_request(res: ResourceConfig, phase: str) -> dict[str, float]:
    """What Tune reserves for one trial of `phase`: a Train-backed search trial only drives its
    workers, which reserve their own (CPUs, GPUs, node resources), so it asks for almost nothing
    and runs on any node; every other trial asks for what it trains with."""
    if phase == "search" and res.workers >= 1:
        return {"cpu": 0.01}
    cpu, gpu = res.trial_resources(phase)
    return {"cpu": cpu, **({"gpu": gpu} if gpu else {}), **res.custom_resources(phase)}


def experiment_name(spec: SweepSpec, phase: str) -> str:
    """The Tune experiment of one phase, named for the sweep too: Ray stages a driver's
    experiment files in `<session>/artifacts/<start second>/<experiment name>/`, so two sweeps
    on one cluster whose same-named experiments start in the same second would share (and
    overwrite) each other's experiment state."""
    return f"{spec.name}-{phase}"


# Read by Tune in the driver: our own progress lines instead of its boxes, and no "snapshotting
# too often" warning for the per-epoch checkpoints of short trials. A user's own values win.
TUNE_ENVIRONMENT = {
    "RAY_AIR_NEW_OUTPUT": "0",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
}


def tune_environment() -> contextlib.AbstractContextManager[None]:
    """`TUNE_ENVIRONMENT` for the duration of a sweep; the caller's environment after it."""
    return environment(TUNE_ENVIRONMENT, keep_existing=True)
