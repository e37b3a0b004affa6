"""Distributed search on Ray: DDP weight workers and one central architecture actor.

`run_search` starts an `ArchitectureActor` that owns α and a Ray Train `TorchTrainer`
whose K workers each run a `WorkerSearcher`: the single-process `Searcher` with its data
sharded by rank, its weight steps through DDP (gloo on CPU, NCCL on GPU), and its arch step
replaced by submit-signal-then-fetch-α. Every rank samples the same path at every step from
(seed, step), so DDP's reducer sees the same graph on all ranks without any exchange of paths.
Rank 0 puts the actor's state into every Train checkpoint; after a restart the actor is
restored from it before any rank reads α. Each rank trains on the device Ray Train assigned it
(`ray.train.torch.get_device()`), never on a `cuda:N` of its own choosing; a CUDA search
without a table has it profiled on a cluster GPU (`cluster.profile`).
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from cluster.arch_actor import ArchitectureActor
from cluster.profile import profile_on_gpu
from cluster.resources import (
    DEFAULT_PLACEMENT_TIMEOUT_S,
    check_gpu_request,
    require_gpus,
    start_retries,
)
from nas_core.arch_state import ArchState
from nas_core.architecture import Architecture, build_net
from nas_core.checkpoint import load_checkpoint, save_checkpoint
from nas_core.data import build_datasets
from nas_core.errors import ProxylessError, first_line
from nas_core.io import atomic_write_text
from nas_core.latency.predictor import architecture_latency
from nas_core.latency.table import LatencyTable
from nas_core.sampling import Stream, step_generator
from nas_core.search import SearchConfig, Searcher, SearchResult, resolve_latency_table
from nas_core.stats import net_stats


class WorkerSearcher(Searcher):
    """One Ray Train rank: sharded data, DDP weights, α from the architecture actor."""

    def __init__(
        self,
        config: SearchConfig,
        actor: Any,
        table: LatencyTable,
        rank: int,
        world: int,
        device: torch.device,
    ) -> None:
        super().__init__(config, table=table, rank=rank, world_size=world, device=device)
        self.actor = actor
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel

            # unused candidates differ per step but are the same on every rank
            self.train_module = DistributedDataParallel(
                self.net,
                device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=True,
            )
        self.version = self._copy_alphas(0)

    def _copy_alphas(self, at_least: int) -> int:
        import ray

        while True:
            version, alphas = ray.get(self.actor.alphas.remote())
            if version >= at_least:
                break
            time.sleep(0.002)
        with torch.no_grad():
            for a, b in zip(self.net.arch_state.alphas, alphas, strict=True):
                a.copy_(b)
        return version

    def run_epoch(self) -> dict[str, float]:
        metrics = super().run_epoch()
        if self.world_size > 1:  # every rank takes part in the gather
            metrics.update(self.rank_spread())
        return metrics

    def rank_spread(self) -> dict[str, float]:
        """How far the ranks' weights and α are apart (0 when in sync): one all_gather of two
        sums per epoch, so a rank that drifted (a collective skipped, a non-deterministic op)
        shows in every epoch's metrics instead of in a worse architecture."""
        # weights live on the device, α on the host; the collective needs both on the device
        weights = sum(p.detach().double().abs().sum() for p in self.net.parameters())
        alphas = sum(a.detach().double().abs().sum() for a in self.net.arch_state.alphas)
        local = torch.stack([weights.to(self.device), alphas.to(self.device)])
        gathered = [torch.zeros_like(local) for _ in range(self.world_size)]
        torch.distributed.all_gather(gathered, local)
        stacked = torch.stack(gathered)
        spread = (stacked.max(0).values - stacked.min(0).values).tolist()
        return {"sync/weights_spread": spread[0], "sync/alpha_spread": spread[1]}

    def arch_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        import ray

        gen = step_generator(self.config.seed, self.step, Stream.ARCH)
        signal = self.strategy.signal(self.net, x, y, gen)
        ray.get(self.actor.submit.remote(self.step, self.rank, signal))
        self.version = self._copy_alphas(self.version + 1)
        self.net.arch_state.check_finite(self.step)
        return ray.get(self.actor.last_metrics.remote())

    def end_epoch(self, metrics: Mapping[str, float]) -> None:
        import ray.train

        report = {k: float(v) for k, v in metrics.items()}
        if self.rank != 0:
            ray.train.report(report)
            return
        state = self.state_dict()
        state["actor"] = ray.get(self.actor.state_dict.remote())
        with tempfile.TemporaryDirectory() as tmp:
            save_checkpoint(Path(tmp) / "checkpoint.pt", state)
            ray.train.report(report, checkpoint=ray.train.Checkpoint.from_directory(tmp))
        self._log(metrics)

    def restore(self) -> None:
        """Continue from the latest Train checkpoint (rank 0 restores the actor first)."""
        import ray
        import ray.train

        checkpoint = ray.train.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as d:
                state = load_checkpoint(Path(d) / "checkpoint.pt")
            self.load_state_dict(state)
            if self.rank == 0:
                ray.get(self.actor.load_state_dict.remote(state["actor"]))
        if self.world_size > 1:
            torch.distributed.barrier()
        self.version = self._copy_alphas(ray.get(self.actor.alphas.remote())[0])


def _worker_loop(loop_config: dict[str, Any]) -> None:
    """Ray Train entry point of every rank."""
    import ray.train
    import ray.train.torch

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    config = SearchConfig.from_config(loop_config["search"])
    table = LatencyTable.from_yaml_dict(loop_config["table"], "latency table")
    # the GPU Ray assigned this rank (every rank on cuda:0 is NCCL's "Duplicate GPU detected")
    device = ray.train.torch.get_device() if config.device != "cpu" else torch.device("cpu")
    searcher = WorkerSearcher(config, loop_config["actor"], table, rank, world, device)
    searcher.restore()
    while searcher.epoch < searcher.total_epochs:
        metrics = searcher.run_epoch()
        searcher.history.append(metrics)
        searcher.epoch += 1
        searcher.end_epoch(metrics)


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
    if address is None:
        _loopback_only()
        ray.init(
            num_cpus=num_cpus,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            log_to_driver=log_to_driver,
        )
        return
    from ray._private.authentication.authentication_token_setup import (
        maybe_enable_token_auth_if_token_available,
    )
    from ray.exceptions import AuthenticationError

    host, _, port = address.rpartition(":")
    if "://" not in address and port.isdigit():
        _require_listening(address, host, int(port))
        if host in ("127.0.0.1", "localhost", "::1"):
            _loopback_only()  # a head on this machine's loopback: keep Ray from rewriting it
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
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


def _loopback_only() -> None:
    """Make a local Ray bind its GCS, raylet and workers to 127.0.0.1.

    Ray 2.60 replaces a node address of 127.0.0.1 with the host's routable IP and listens there
    unless "clusters" are off (its desktop mode); turning them off keeps every port on loopback.
    The constant is read at `import ray`, so set it in the module as well as for child processes.
    """
    from ray._private import ray_constants

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False


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
    )
    from ray.train.torch import TorchTrainer
    from ray.train.v2._internal.exceptions import WorkerGroupStartupTimeoutError

    check_gpu_request(config.device, num_workers, gpus_per_worker if use_gpu else 0.0)
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
    arch_state = ArchState(
        [s.name for s in space.layer_specs()], [s.candidates for s in space.layer_specs()]
    )
    arch_state.init_normal_(
        step_generator(config.seed, 0, Stream.ALPHA_INIT), config.alpha_init_std
    )
    actor_cls = ray.remote(num_cpus=0, max_restarts=0)(ArchitectureActor)
    actor = actor_cls.remote(
        space.to_config(),
        config.strategy.to_config(),
        num_workers,
        arch_state.to_config(),
        table.to_yaml_dict(),
    )
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={
            "search": config.to_config(),
            "actor": actor,
            "table": table.to_yaml_dict(),
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
            storage_path=str(storage_path or out / "ray"),
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
    except ControllerError as e:
        if not isinstance(e.controller_failure, WorkerGroupStartupTimeoutError):
            raise
        per = f" with {gpus_per_worker:g} GPU(s) each" if use_gpu else ""
        raise ProxylessError(
            f"the Ray cluster did not place {num_workers} search workers{per} within "
            f"{placement_timeout_s:g} s; free or add resources, or lower resources per worker"
        ) from None
    _, alphas = ray.get(actor.alphas.remote())
    final = ArchState(arch_state.layer_names, arch_state.candidates, alphas)
    derived = Architecture(space, tuple(final.argmax()))
    derived.save(out / "architecture.json")
    atomic_write_text(out / "arch_state.json", json.dumps(final.to_config()) + "\n")
    stats = net_stats(build_net(derived), space.resolution)
    metrics = dict(result.metrics or {})
    searched = SearchResult(
        derived,
        architecture_latency(derived, table),
        stats.params,
        stats.macs,
        float(metrics.get("valid/accuracy", float("nan"))),
        int(metrics.get("epoch", -1)) + 1,
        (copy.deepcopy(metrics),),
    )
    atomic_write_text(out / "summary.json", json.dumps(searched.summary(), indent=2) + "\n")
    return searched
