"""Distributed search on Ray: K Ray Train ranks of one search loop and one architecture actor.

`run_search` starts an `ArchitectureActor` that owns α and a Ray Train `TorchTrainer`
whose K workers each run the one search loop (`Searcher.loop`) with their data sharded by
rank, `PathSync` for the weights (only the sampled path's gradients and BN statistics cross
the process group: gloo on CPU, NCCL on GPU), `ActorArchSync` for α (the signals reduced over
the process group, one actor call on rank 0, its reply broadcast; see `cluster.arch_actor`) and
`TrainReport` for the end of each epoch.
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
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from cluster.arch_actor import ArchitectureActor, split_alphas
from cluster.path_sync import PathSync
from cluster.profile import profile_on_gpu
from cluster.resources import (
    DEFAULT_PLACEMENT_TIMEOUT_S,
    check_gpu_request,
    require_gpus,
    start_retries,
)
from nas_core.arch_state import ArchState
from nas_core.arch_view import alpha_report
from nas_core.checkpoint import load_checkpoint, save_checkpoint
from nas_core.data import build_datasets
from nas_core.errors import ProxylessError, first_line
from nas_core.latency.predictor import LatencyModel
from nas_core.latency.table import LatencyTable
from nas_core.ranks import ProcessGroupRanks
from nas_core.search import Searcher, initial_arch_state, resolve_latency_table
from nas_core.search_config import SearchConfig
from nas_core.search_outputs import LocalOutputs
from nas_core.search_result import SearchResult, save_result, search_result
from nas_core.strategy import create_strategy

# How long a rank waits for the architecture actor, and for the other ranks in a collective,
# before its attempt fails (and Ray Train restarts the worker group from the last checkpoint)
SYNC_TIMEOUT_S = 600.0
ACTOR_RESTARTS = 3


def _from_rank0(value: Any, world: int) -> Any:
    """Rank 0's `value` on every rank (one broadcast over the ranks' process group)."""
    if world == 1:
        return value
    box = [value]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def _set_alphas(searcher: Searcher, flat: Any) -> None:
    """The actor's flat α into this rank's super-net."""
    arch_state = searcher.net.arch_state
    with torch.no_grad():
        for a, b in zip(arch_state.alphas, split_alphas(flat, arch_state), strict=True):
            a.copy_(b)


class ActorArchSync:
    """A rank's arch step: rank 0 sends the ranks' reduced signal in one
    `ArchitectureActor.step` call and broadcasts the reply (new α, metrics) to every rank."""

    def __init__(self, actor: Any, timeout_s: float) -> None:
        self.actor, self.timeout_s = actor, timeout_s
        self.generation = 0  # this worker-group attempt, as the actor numbered it (`begin`)

    def ask(self, searcher: Searcher, call: Any, what: str) -> Any:
        """Rank 0 waits for one actor reply, at most `timeout_s`."""
        import ray

        try:
            return ray.get(call, timeout=self.timeout_s)
        except ray.exceptions.GetTimeoutError:
            raise TimeoutError(
                f"rank {searcher.rank}, step {searcher.step}: the architecture actor did not "
                f"answer {what} within {self.timeout_s:g} s"
            ) from None
        except ray.exceptions.RayTaskError as e:
            if isinstance(e.cause, ProxylessError):  # a user error on the actor: its one line
                raise e.cause from None
            raise

    def begin(self, searcher: Searcher, actor_state: Mapping[str, Any] | None) -> None:
        """Start this attempt: rank 0 resets the actor to `actor_state` (the checkpoint's; None
        for the start, so a failed attempt's updates never count) and every rank takes its α."""
        reply = None
        if searcher.rank == 0:
            call = self.actor.begin.remote(actor_state)
            reply = self.ask(searcher, call, "the start of an attempt")
        self.generation, _version, alphas = _from_rank0(reply, searcher.world_size)
        _set_alphas(searcher, alphas)

    def update(self, searcher: Searcher, signal: Any) -> dict[str, float]:
        reply = None
        if searcher.rank == 0:
            call = self.actor.step.remote(self.generation, searcher.step, signal)
            reply = self.ask(searcher, call, "an arch step")
        _version, alphas, metrics = _from_rank0(reply, searcher.world_size)
        _set_alphas(searcher, alphas)
        return metrics


def rank_spread(searcher: Searcher) -> dict[str, float]:
    """How far the ranks' weights and α are apart (0 when in sync): one all_gather of two sums
    per epoch, so a rank that drifted (a collective skipped, a non-deterministic op) shows in
    every epoch's metrics instead of in a worse architecture."""
    # weights live on the device, α on the host; the collective needs both on the device
    weights = sum(p.detach().double().abs().sum() for p in searcher.net.parameters())
    alphas = sum(a.detach().double().abs().sum() for a in searcher.net.arch_state.alphas)
    local = torch.stack([weights.to(searcher.device), alphas.to(searcher.device)])
    gathered = [torch.zeros_like(local) for _ in range(searcher.world_size)]
    torch.distributed.all_gather(gathered, local)
    stacked = torch.stack(gathered)
    spread = (stacked.max(0).values - stacked.min(0).values).tolist()
    return {"sync/weights_spread": spread[0], "sync/alpha_spread": spread[1]}


class TrainReport:
    """A rank's end of epoch: the rank spread (K > 1), then `ray.train.report`; rank 0 adds
    the checkpoint (its state and the actor's) and writes TensorBoard."""

    def __init__(
        self, sync: ActorArchSync, searcher: Searcher, weights: PathSync | None = None
    ) -> None:
        self.sync, self.weights = sync, weights
        self.outputs = LocalOutputs(searcher.out, searcher.config.tensorboard)

    def on_epoch_end(self, searcher: Searcher, metrics: dict[str, float]) -> None:
        import ray.train

        if searcher.world_size > 1:  # every rank takes part in the gather
            metrics.update(rank_spread(searcher))
        if self.weights is not None:
            metrics["sync/grad_bytes_per_step"] = self.weights.bytes_per_step()
        report = {k: float(v) for k, v in metrics.items()}
        if searcher.rank != 0:
            ray.train.report(report)
            return
        report.update(alpha_report(searcher.net.arch_state))  # the sweep's α heat-map
        state = searcher.state_dict()
        state["actor"] = self.sync.ask(
            searcher, self.sync.actor.state_dict.remote(), "a checkpoint"
        )
        with tempfile.TemporaryDirectory() as tmp:
            save_checkpoint(Path(tmp) / "checkpoint.pt", state)
            ray.train.report(report, checkpoint=ray.train.Checkpoint.from_directory(tmp))
        if self.outputs.tensorboard:
            self.outputs.log(searcher, metrics)

    def close(self) -> None:
        self.outputs.close()


def _worker_loop(loop_config: dict[str, Any]) -> None:
    """Ray Train entry point of every rank: the search loop, with α from the actor."""
    import ray.train
    import ray.train.torch

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    config = SearchConfig.from_config(loop_config["search"])
    table = LatencyTable.from_yaml_dict(loop_config["table"], "latency table")
    # the GPU Ray assigned this rank (every rank on cuda:0 is NCCL's "Duplicate GPU detected")
    device = ray.train.torch.get_device() if config.device != "cpu" else torch.device("cpu")
    sync = ActorArchSync(loop_config["actor"], loop_config["sync_timeout_s"])
    weights = PathSync(world) if world > 1 else None
    data = build_datasets(config.data)
    ranks = ProcessGroupRanks(rank, world, device)
    loaders = loop_config["loader_workers"]
    searcher = Searcher(config, data, table, ranks, device, sync, weights, loaders)
    state = None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            state = load_checkpoint(Path(d) / "checkpoint.pt")
        searcher.load_state_dict(state)
    report = TrainReport(sync, searcher, weights)
    try:
        with _collective_deadline(searcher, loop_config["sync_timeout_s"]):
            if weights is not None:
                weights.start(searcher.net)
            sync.begin(searcher, state["actor"] if state is not None else None)
            searcher.loop([report])
    finally:
        report.close()


@contextlib.contextmanager
def _collective_deadline(searcher: Searcher, timeout_s: float) -> Iterator[None]:
    """A collective the other ranks never joined (one stopped, hung or lost its node) fails
    after the process group's timeout; say so in one line naming this rank and its step,
    instead of the backend's message from deep inside gloo or NCCL."""
    from cluster.ray_compat import collective_timeout_error

    barrier_timeout = collective_timeout_error()
    try:
        yield
    # gloo: RuntimeError; NCCL: DistBackendError, a RuntimeError; Ray Train's report barrier:
    # its CollectiveTimeoutError
    except (RuntimeError, barrier_timeout) as e:
        first = first_line(e).lower()  # gloo: "… Timed out waiting …", "Application timeout …"
        timed_out = isinstance(e, barrier_timeout) or "timed out" in first or "timeout" in first
        if searcher.world_size == 1 or not timed_out:
            raise
        raise TimeoutError(
            f"rank {searcher.rank}, step {searcher.step}: the other ranks did not join a "
            f"collective within {timeout_s:g} s (a rank stopped answering or its node was lost)"
        ) from e


def actor_name(storage_path: str, run_name: str) -> str:
    """The architecture actor's Ray name: one per Train run, i.e. per (storage, run name)."""
    return f"proxyless-arch:{storage_path}/{run_name}"


def cluster_address(address: str | None = None) -> str | None:
    """The cluster to attach to, as Ray's own tools pick it: `--address`, then `RAY_ADDRESS`.

    None means a new local instance (or the one this process already started).
    """
    import ray

    if address:
        return address
    if ray.is_initialized():
        return None
    return os.environ.get("RAY_ADDRESS") or None


def ensure_ray(
    address: str | None = None, num_cpus: int | None = None, log_to_driver: bool = True
) -> None:
    """Attach to `address` or `RAY_ADDRESS`, else start a local Ray bound to 127.0.0.1.

    Attaching presents the cluster's token when one is available (`RAY_AUTH_TOKEN`,
    `RAY_AUTH_TOKEN_PATH` or `~/.ray/auth_token`), as `ray start` does; a cluster that cannot be
    reached or refuses the token is one line naming the address. Only a new local instance is
    kept on loopback (token auth stays on, Ray's default).
    """
    import ray

    if ray.is_initialized():
        return
    address = cluster_address(address)
    from cluster.ray_compat import init_local_ray_on_loopback, keep_local_ray_on_loopback

    if address is None:
        init_local_ray_on_loopback(
            num_cpus=num_cpus, include_dashboard=False, log_to_driver=log_to_driver
        )
        return
    from ray.exceptions import AuthenticationError

    from cluster.ray_compat import enable_token_auth_if_available

    host, _, port = address.rpartition(":")
    if "://" not in address and port.isdigit():
        _require_listening(address, host, int(port))
        if host in ("127.0.0.1", "localhost", "::1"):
            keep_local_ray_on_loopback()  # a head on this machine's loopback: Ray keeps it there
    enable_token_auth_if_available()
    try:
        ray.init(address=address, log_to_driver=log_to_driver)
    # ValueError: an address Ray cannot use (e.g. the dashboard's http://…:8265);
    # RuntimeError: a cluster on another Ray version
    except (ConnectionError, AuthenticationError, ValueError, RuntimeError) as e:
        # Ray wraps the GCS's refusal of the token in a ConnectionError
        refused = isinstance(e, AuthenticationError) or "InvalidAuthToken" in str(e.__cause__)
        first = first_line(e)
        what = (
            "the cluster refused this client's token: put the cluster's token in RAY_AUTH_TOKEN "
            "or ~/.ray/auth_token"
            if refused
            else f"{first}; check the address (the head's GCS host:port, not the dashboard's "
            "URL) and that the cluster is up (`ray status` on the head)"
        )
        raise ProxylessError(f"cannot attach to the Ray cluster at {address}: {what}") from None


def _require_listening(address: str, host: str, port: int, timeout_s: float = 5.0) -> None:
    """Fail fast when nothing listens at the GCS address (`ray.init` retries for minutes)."""
    import socket

    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as e:
        raise ProxylessError(
            f"cannot attach to the Ray cluster at {address}: nothing answered "
            f"({e.strerror or type(e).__name__}); check the address (host:port of the head's GCS, "
            "e.g. 10.0.0.10:6379) and that the cluster is up (`ray status` on the head)"
        ) from None


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
) -> SearchResult:
    """One ProxylessNAS search with K DDP workers and a central architecture actor.

    Inside a Tune trial (`orchestrator.trials.search_trial`) the Train run is named after the
    trial and `callbacks` forwards rank 0's reports to Tune; a Train run that finds its own
    (storage_path, run_name) from an earlier attempt resumes from its latest checkpoint.
    """
    import ray
    from ray.train import (
        CheckpointConfig,
        ControllerError,
        FailureConfig,
        RunConfig,
        ScalingConfig,
        WorkerGroupError,
    )
    from ray.train.torch import TorchConfig

    from cluster.failures import SearchTrainer, user_error
    from cluster.loopback import LoopbackTorchConfig, is_local_instance
    from cluster.ray_compat import worker_group_startup_timeout_error

    check_gpu_request(config.device, num_workers, gpus_per_worker if use_gpu else 0.0)
    config.rank_batches(num_workers)  # before Ray starts: batch sizes split over the workers
    ensure_ray(address)
    require_gpus(num_workers * gpus_per_worker if use_gpu else 0.0, f"{num_workers} search workers")
    data = build_datasets(config.data)
    space = config.build_space(data.num_classes)
    out = Path(config.out_dir).resolve()
    if table is None and config.lut is None and use_gpu:  # price it on a GPU like the workers'
        keys = space.latency_layout().all_keys()
        table = profile_on_gpu(keys, out / "latency.parquet", {"space": space.to_config()})
    elif table is None:
        table = resolve_latency_table(config, space, torch.device("cpu"))
    arch_state = initial_arch_state(space, config)
    # what the actor will build, built here first: a bad strategy setting is one line now, not
    # an actor that dies in its constructor
    create_strategy(config.strategy, LatencyModel(space, table))
    storage = str(storage_path or out / "ray")
    # restarted if its process or node dies: the attempt that was talking to it fails, and the
    # next one's `begin` restores it from the checkpoint
    actor_cls = ray.remote(num_cpus=0, max_restarts=ACTOR_RESTARTS)(ArchitectureActor)
    # named after its Train run, so anyone on the cluster can look at α while it trains
    actor = actor_cls.options(name=actor_name(storage, run_name)).remote(
        space.to_config(),
        config.strategy.to_config(),
        arch_state.to_config(),
        table.to_yaml_dict(),
    )
    # on a local instance the ranks' process group listens on 127.0.0.1 only (cluster.loopback)
    torch_config_cls = LoopbackTorchConfig if is_local_instance() else TorchConfig
    trainer = SearchTrainer(
        _worker_loop,
        # a collective that waits longer than this fails the attempt instead of hanging it
        torch_config=torch_config_cls(timeout_s=int(sync_timeout_s)),
        collective_timeout_s=sync_timeout_s,
        train_loop_config={
            "search": config.to_config(),
            "actor": actor,
            "table": table.to_yaml_dict(),
            "sync_timeout_s": sync_timeout_s,
            # the rank's reserved CPUs decode batches, one is left for the training thread
            "loader_workers": max(int(cpus_per_worker) - 1, 0),
        },
        scaling_config=ScalingConfig(
            num_workers=num_workers,
            use_gpu=use_gpu,
            resources_per_worker={
                "CPU": cpus_per_worker,
                **({"GPU": gpus_per_worker} if use_gpu else {}),
            },
        ),
        run_config=RunConfig(
            name=run_name,
            storage_path=storage,
            # a worker's ProxylessError is not retried (`cluster.failures`)
            failure_config=FailureConfig(
                max_failures=max_failures,
                # a worker group that cannot be placed is retried this often, then fails
                controller_failure_limit=start_retries(placement_timeout_s),
            ),
            callbacks=list(callbacks),
            # Tune's num_to_keep does not reach the checkpoints a Train run writes itself
            checkpoint_config=CheckpointConfig(num_to_keep=checkpoints_to_keep),
        ),
    )
    try:
        result = trainer.fit()
        _, alphas = ray.get(actor.alphas.remote())
    except WorkerGroupError as e:
        error = user_error(e)
        if error is None:
            raise
        raise error from None  # the worker's own message, once
    except ControllerError as e:
        if not isinstance(e.controller_failure, worker_group_startup_timeout_error()):
            raise
        per = f" with {gpus_per_worker:g} GPU(s) each" if use_gpu else ""
        raise ProxylessError(
            f"the Ray cluster did not place {num_workers} search workers{per} within "
            f"{placement_timeout_s:g} s; free or add resources, or lower resources per worker"
        ) from None
    finally:
        ray.kill(actor)  # a named actor outlives its handles
    final = ArchState(arch_state.layer_names, arch_state.candidates, alphas)
    history = []
    if result.checkpoint is not None:  # rank 0's last checkpoint holds every epoch's metrics
        with result.checkpoint.as_directory() as d:
            history = load_checkpoint(Path(d) / "checkpoint.pt")["history"]
    searched = search_result(final, space, table, history)
    save_result(searched, final, out)
    return searched
