"""The rank side of a distributed search: what every Ray Train worker runs.

`worker_loop` is each rank's entry point: the one search loop (`Searcher.loop`) with its data
sharded by rank, `PathSync` for the weights, `ActorArchSync` for α (rank 0 makes the one
actor call per arch step and broadcasts the reply) and `TrainReport` at each epoch's end (the
ranks' spread, `ray.train.report`, rank 0's checkpoint with the actor's state). Every wait has
a deadline: a rank that stops answering fails the attempt instead of hanging it.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from cluster.arch_actor import split_alphas
from cluster.path_sync import PathSync
from cluster.resources import NODE_ID_KEY, current_node_id
from nas_core.arch_view import alpha_report
from nas_core.checkpoint import load_checkpoint, save_checkpoint
from nas_core.data import build_datasets
from nas_core.errors import ProxylessError, first_line
from nas_core.latency.table import LatencyTable
from nas_core.ranks import ProcessGroupRanks, spread
from nas_core.search import Searcher
from nas_core.search_config import SearchConfig
from nas_core.search_outputs import LocalOutputs

# beside rank 0's checkpoint.pt: every epoch's metrics so far (JSON), small to read
HISTORY_FILE = "history.json"


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
        self.generation, _version, alphas = searcher.ranks.from_rank0(reply)
        _set_alphas(searcher, alphas)

    def update(self, searcher: Searcher, signal: Any) -> dict[str, float]:
        reply = None
        if searcher.rank == 0:
            call = self.actor.step.remote(self.generation, searcher.step, signal)
            reply = self.ask(searcher, call, "an arch step")
        _version, alphas, metrics = searcher.ranks.from_rank0(reply)
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
    apart = spread(searcher.ranks, local).tolist()
    return {"sync/weights_spread": apart[0], "sync/alpha_spread": apart[1]}


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
        report[NODE_ID_KEY] = current_node_id()  # where the search ran, for the sweep's row
        state = searcher.state_dict()
        state["actor"] = self.sync.ask(
            searcher, self.sync.actor.state_dict.remote(), "a checkpoint"
        )
        with tempfile.TemporaryDirectory() as tmp:
            save_checkpoint(Path(tmp) / "checkpoint.pt", state)
            # every epoch's metrics so far, readable without loading the state
            (Path(tmp) / HISTORY_FILE).write_text(json.dumps(searcher.history))
            ray.train.report(report, checkpoint=ray.train.Checkpoint.from_directory(tmp))
        if self.outputs.tensorboard:
            self.outputs.log(searcher, metrics)

    def close(self) -> None:
        self.outputs.close()


def worker_loop(loop_config: dict[str, Any]) -> None:
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
