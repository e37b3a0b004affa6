"""Distributed search on Ray: K Ray Train ranks of one search loop and one architecture actor.

`run_search` starts an `ArchitectureActor` that owns α and a Ray Train `TorchTrainer`
whose K workers each run the one search loop (`Searcher.loop`) with their data sharded by
rank, `PathSync` for the weights (only the sampled path's gradients and BN statistics cross
the process group: gloo on CPU, NCCL on GPU), `ActorArchSync` for α (the signals reduced over
the process group, one actor call on rank 0, its reply broadcast; see `cluster.arch_actor`) and
`TrainReport` for the end of each epoch (the rank side is `cluster.worker`; attaching to Ray,
`cluster.connect`).
Every rank samples the same path at every step from (seed, step), so every rank knows which
gradients to exchange without any exchange of paths. Rank 0 puts the actor's state into
every Train checkpoint; each attempt starts by resetting the actor to its checkpoint (or to
the start), so a failed attempt's updates never count twice. Every wait has a timeout
(`sync_timeout_s`): a rank that stops answering fails the attempt instead of hanging it.
On a local instance the ranks' process group listens on 127.0.0.1 only (`cluster.loopback`).
A `ProxylessError` on any rank ends the run without retries (`cluster.failures`).
Each rank trains on the device Ray Train assigned it (`ray.train.torch.get_device()`), never
on a `cuda:N` of its own choosing; a CUDA search without a table has it profiled on a cluster
GPU (`cluster.profile`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cluster.arch_actor import ArchitectureActor
from cluster.connect import ensure_ray
from cluster.profile import profile_on_gpu
from cluster.resources import (
    DEFAULT_PLACEMENT_TIMEOUT_S,
    check_gpu_request,
    require_gpus,
    require_node_resources,
    start_retries,
)
from cluster.worker import worker_loop
from nas_core.arch_state import ArchState
from nas_core.checkpoint import load_checkpoint
from nas_core.data import build_datasets
from nas_core.errors import ProxylessError
from nas_core.latency.predictor import LatencyModel
from nas_core.latency.table import LatencyTable
from nas_core.search import initial_arch_state, resolve_latency_table
from nas_core.search_config import SearchConfig
from nas_core.search_result import SearchResult, save_result, search_result
from nas_core.spaces import SearchSpace
from nas_core.strategy import create_strategy

# How long a rank waits for the architecture actor, and for the other ranks in a collective,
# before its attempt fails (and Ray Train restarts the worker group from the last checkpoint)
SYNC_TIMEOUT_S = 600.0
ACTOR_RESTARTS = 3
# how long a new attempt waits for the name of an earlier attempt's architecture actor
NAME_RELEASE_S = 60.0


def actor_name(storage_path: str, run_name: str) -> str:
    """The architecture actor's Ray name: one per Train run, i.e. per (storage, run name)."""
    return f"proxyless-arch:{storage_path}/{run_name}"


@dataclass(frozen=True)
class TrainPlan:
    """How the Train run of one search is laid out: its workers, their resources and limits."""

    num_workers: int
    use_gpu: bool
    gpus_per_worker: float
    cpus_per_worker: float
    max_failures: int
    placement_timeout_s: float
    checkpoints_to_keep: int
    sync_timeout_s: float
    node_resources: Mapping[str, float] = field(default_factory=dict)  # custom, per worker

    def resources_per_worker(self) -> dict[str, float]:
        return {
            "CPU": self.cpus_per_worker,
            **({"GPU": self.gpus_per_worker} if self.use_gpu else {}),
            **self.node_resources,
        }

    def placement_error(self) -> ProxylessError:
        asks = [f"{self.gpus_per_worker:g} GPU(s)"] if self.use_gpu else []
        asks += [f"{amount:g} of {name!r}" for name, amount in self.node_resources.items()]
        per = f" with {', '.join(asks)} each" if asks else ""
        return ProxylessError(
            f"the Ray cluster did not place {self.num_workers} search workers{per} within "
            f"{self.placement_timeout_s:g} s; free or add resources, or lower resources per worker"
        )


def run_search(
    config: SearchConfig,
    num_workers: int,
    use_gpu: bool = False,
    address: str | None = None,
    max_failures: int = 2,
    gpus_per_worker: float = 1.0,
    run_name: str = "search",
    storage_path: str | Path | None = None,
    callbacks: Sequence[Any] = (),
    table: LatencyTable | None = None,
    cpus_per_worker: float = 1.0,
    placement_timeout_s: float = DEFAULT_PLACEMENT_TIMEOUT_S,
    checkpoints_to_keep: int = 2,
    sync_timeout_s: float = SYNC_TIMEOUT_S,
    actor_cls: type[ArchitectureActor] = ArchitectureActor,
    node_resources: Mapping[str, float] | None = None,
) -> SearchResult:
    """One ProxylessNAS search with K DDP workers and a central architecture actor, in five
    steps: price the space, start the actor, build the trainer, fit, and save the result.

    Inside a Tune trial (`orchestrator.trials.search_trial`) the Train run is named after the
    trial and `callbacks` forwards rank 0's reports to Tune; a Train run that finds its own
    (storage_path, run_name) from an earlier attempt resumes from its latest checkpoint.
    `actor_cls` is the architecture actor's class (a benchmark passes one that counts calls);
    `node_resources`, custom Ray resources each worker asks for (which nodes run it).
    """
    import ray

    plan = TrainPlan(
        num_workers, use_gpu, gpus_per_worker, cpus_per_worker, max_failures,
        placement_timeout_s, checkpoints_to_keep, sync_timeout_s, dict(node_resources or {}),
    )  # fmt: skip
    check_gpu_request(config.device, num_workers, gpus_per_worker if use_gpu else 0.0)
    config.rank_batches(num_workers)  # before Ray starts: batch sizes split over the workers
    ensure_ray(address)
    require_gpus(num_workers * gpus_per_worker if use_gpu else 0.0, f"{num_workers} search workers")
    require_node_resources(
        {k: num_workers * v for k, v in plan.node_resources.items()},
        f"{num_workers} search workers",
        "node_resources",
    )
    out = Path(config.out_dir).resolve()
    space, table = _price(config, out, use_gpu, table)
    arch_state = initial_arch_state(space, config)
    storage = str(storage_path or out / "ray")
    actor = _start_actor(actor_cls, actor_name(storage, run_name), config, space, table, arch_state)
    try:
        trainer = _build_trainer(config, plan, actor, table, storage, run_name, callbacks)
        result, alphas = _fit(trainer, actor, plan)
    finally:
        ray.kill(actor)  # a named actor outlives its handles
    return _save(
        result, ArchState(arch_state.layer_names, arch_state.candidates, alphas), space, table, out
    )


def _price(
    config: SearchConfig, out: Path, use_gpu: bool, table: LatencyTable | None
) -> tuple[SearchSpace, LatencyTable]:
    """The space at the dataset's class count and the table that prices it: the given one,
    the config's, or one profiled on a cluster GPU for a GPU search (on this CPU otherwise)."""
    space = config.build_space(build_datasets(config.data).num_classes)
    if table is None and config.lut is None and use_gpu:  # price it on a GPU like the workers'
        keys = space.latency_layout().all_keys()
        table = profile_on_gpu(keys, out / "latency.parquet", {"space": space.to_config()})
    elif table is None:
        table = resolve_latency_table(config, space, torch.device("cpu"))
    return space, table


def _start_actor(
    actor_cls: type[ArchitectureActor],
    name: str,
    config: SearchConfig,
    space: SearchSpace,
    table: LatencyTable,
    arch_state: ArchState,
) -> Any:
    """The architecture actor, named after its Train run so anyone on the cluster can look at
    α while it trains, restarted if its process or node dies (the attempt talking to it fails,
    and the next one's `begin` restores it from the checkpoint)."""
    import ray

    # what the actor will build, built here first: a bad strategy setting is one line now, not
    # an actor that dies in its constructor
    create_strategy(config.strategy, LatencyModel(space, table))
    remote = ray.remote(num_cpus=0, max_restarts=ACTOR_RESTARTS)(actor_cls)
    args = (space.to_config(), config.strategy.to_config(), arch_state.to_config())
    deadline = time.monotonic() + NAME_RELEASE_S
    while True:
        try:
            return remote.options(name=name).remote(*args, table.to_yaml_dict())
        except ray.exceptions.ActorAlreadyExistsError:
            if time.monotonic() > deadline:
                raise
            _kill_leftover(name)
            time.sleep(0.5)


def _kill_leftover(name: str) -> None:
    """The actor of an earlier attempt of this Train run, still registered under its name: the
    trial that owned it died with its node before it could kill it, and Ray frees the name
    only once it notices. Its state is of no use (each attempt restores α from the Train
    checkpoint), so it goes."""
    import ray

    with contextlib.suppress(ValueError):  # gone meanwhile
        ray.kill(ray.get_actor(name), no_restart=True)


def _build_trainer(
    config: SearchConfig,
    plan: TrainPlan,
    actor: Any,
    table: LatencyTable,
    storage: str,
    run_name: str,
    callbacks: Sequence[Any],
) -> Any:
    """The `SearchTrainer` whose K workers run `cluster.worker.worker_loop`."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig

    from cluster.failures import SearchTrainer
    from cluster.loopback import LoopbackTorchConfig, is_local_instance

    # on a local instance the ranks' process group listens on 127.0.0.1 only (cluster.loopback)
    torch_config_cls = LoopbackTorchConfig if is_local_instance() else TorchConfig
    return SearchTrainer(
        worker_loop,
        # a collective that waits longer than this fails the attempt instead of hanging it
        torch_config=torch_config_cls(timeout_s=int(plan.sync_timeout_s)),
        collective_timeout_s=plan.sync_timeout_s,
        train_loop_config={
            "search": config.to_config(),
            "actor": actor,
            "table": table.to_yaml_dict(),
            "sync_timeout_s": plan.sync_timeout_s,
            # the rank's reserved CPUs decode batches, one is left for the training thread
            "loader_workers": max(int(plan.cpus_per_worker) - 1, 0),
        },
        scaling_config=ScalingConfig(
            num_workers=plan.num_workers,
            use_gpu=plan.use_gpu,
            resources_per_worker=plan.resources_per_worker(),
        ),
        run_config=RunConfig(
            name=run_name,
            storage_path=storage,
            # a worker's ProxylessError is not retried (`cluster.failures`)
            failure_config=FailureConfig(
                max_failures=plan.max_failures,
                # a worker group that cannot be placed is retried this often, then fails
                controller_failure_limit=start_retries(plan.placement_timeout_s),
            ),
            callbacks=list(callbacks),
            # Tune's num_to_keep does not reach the checkpoints a Train run writes itself
            checkpoint_config=CheckpointConfig(num_to_keep=plan.checkpoints_to_keep),
        ),
    )


def _fit(trainer: Any, actor: Any, plan: TrainPlan) -> tuple[Any, Any]:
    """`trainer.fit()` and the actor's final α; a worker's user error and a worker group that
    was never placed become one line."""
    import ray
    from ray.train import ControllerError, WorkerGroupError

    from cluster.failures import user_error
    from cluster.ray_compat import worker_group_startup_timeout_error

    startup_timeout = worker_group_startup_timeout_error()  # an upgrade that moved it fails here
    try:
        result = trainer.fit()
        _, alphas = ray.get(actor.alphas.remote())
    except WorkerGroupError as e:
        error = user_error(e)
        if error is None:
            raise
        raise error from None  # the worker's own message, once
    except ControllerError as e:
        if not isinstance(e.controller_failure, startup_timeout):
            raise
        raise plan.placement_error() from None
    return result, alphas


def _save(
    result: Any, final: ArchState, space: SearchSpace, table: LatencyTable, out: Path
) -> SearchResult:
    """The derived net, priced, with every epoch's metrics from rank 0's last checkpoint."""
    history = []
    if result.checkpoint is not None:
        with result.checkpoint.as_directory() as d:
            history = load_checkpoint(Path(d) / "checkpoint.pt")["history"]
    searched = search_result(final, space, table, history)
    save_result(searched, final, out)
    return searched
