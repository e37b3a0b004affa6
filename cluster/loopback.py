"""The search ranks' process group on loopback, for a search on a local Ray instance.

Ray Train's `TorchConfig` starts the ranks' torch process group from `MASTER_ADDR`/`MASTER_PORT`:
rank 0's c10d `TCPStore` then listens on every interface (`*:<port>`), whatever the address,
so a search on a laptop would open a port to its whole network. On a local instance every rank
is on this machine, so `LoopbackTorchConfig` sets the group up itself: rank 0 binds a socket to
127.0.0.1 and hands it to the store (`master_listen_fd`), the other ranks connect to it there,
and gloo's and NCCL's own sockets are pinned to the loopback interface (`GLOO_SOCKET_IFNAME`,
`NCCL_SOCKET_IFNAME`). On a cluster the ranks are on several nodes and Ray Train's own set-up
(the node's cluster address) stays.

The store owns its listening socket once handed over and must outlive the process group: the
shutdown destroys the group on every rank first, then drops rank 0's store.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from ray.train.backend import Backend
from ray.train.constants import (
    DEFAULT_TORCH_PROCESS_GROUP_SHUTDOWN_TIMEOUT_S,
    TORCH_PROCESS_GROUP_SHUTDOWN_TIMEOUT_S,
)
from ray.train.torch import TorchConfig

logger = logging.getLogger(__name__)

# rank 0's store, kept in its worker process from the group's start to its shutdown
_STORE: dict[str, Any] = {}


def loopback_interface() -> str:
    """The name of the network interface that holds 127.0.0.1 (`lo` on Linux, `lo0` on macOS)."""
    import psutil

    for name, addresses in psutil.net_if_addrs().items():
        if any(a.family == socket.AF_INET and a.address == "127.0.0.1" for a in addresses):
            return name
    raise RuntimeError("no network interface holds 127.0.0.1")


def _rank_environment() -> None:
    """Every rank: the distributed variables torchrun sets (LOCAL_RANK, RANK, WORLD_SIZE, …),
    from the rank's Train context, as Ray Train's torch backend sets them."""
    import ray.train

    context = ray.train.get_context()
    os.environ["LOCAL_RANK"] = str(context.get_local_rank())
    os.environ["LOCAL_WORLD_SIZE"] = str(context.get_local_world_size())
    os.environ["NODE_RANK"] = str(context.get_node_rank())
    os.environ["RANK"] = str(context.get_world_rank())
    os.environ["WORLD_SIZE"] = str(context.get_world_size())


def _open_store(world_size: int, timeout_s: float) -> int:
    """Rank 0: the group's store, listening on 127.0.0.1 only; returns its port."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    _STORE["store"] = dist.TCPStore(
        "127.0.0.1",
        port,
        world_size,
        is_master=True,
        timeout=timedelta(seconds=timeout_s),
        wait_for_workers=False,
        master_listen_fd=listener.detach(),  # the store closes it when it goes
        use_libuv=False,  # the server measured listening on 127.0.0.1 only with this fd
    )
    return port


def _join(backend: str, rank: int, world_size: int, port: int, timeout_s: float) -> None:
    """Every rank: join the group through the store on 127.0.0.1:`port`."""
    interface = loopback_interface()
    os.environ["GLOO_SOCKET_IFNAME"] = interface
    os.environ["NCCL_SOCKET_IFNAME"] = f"={interface}"  # "=": this name exactly, not a prefix
    if backend == "nccl":  # as Ray Train's set-up: a timed-out collective raises, not hangs
        os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    timeout = timedelta(seconds=timeout_s)
    store = _STORE.get("store") if rank == 0 else None
    if store is None:
        store = dist.TCPStore("127.0.0.1", port, world_size, is_master=False, timeout=timeout)
    dist.init_process_group(backend, store=store, rank=rank, world_size=world_size, timeout=timeout)


def _leave() -> None:
    """Every rank: leave the group (before rank 0's store goes)."""
    if dist.is_initialized():
        dist.destroy_process_group()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _close_store() -> None:
    _STORE.pop("store", None)


def _shutdown_timeout_s() -> int:
    """Ray Train's process-group shutdown timeout, read as Ray reads it: an integer, else a
    warning and the default."""
    default = DEFAULT_TORCH_PROCESS_GROUP_SHUTDOWN_TIMEOUT_S
    text = os.environ.get(TORCH_PROCESS_GROUP_SHUTDOWN_TIMEOUT_S)
    try:
        return int(text) if text is not None else default
    except ValueError:
        logger.warning(
            "%s=%r is not an integer; using %s s",
            TORCH_PROCESS_GROUP_SHUTDOWN_TIMEOUT_S,
            text,
            default,
        )
        return default


class _LoopbackBackend(Backend):
    """Ray Train's `Backend` (a DeveloperAPI) for the loopback group: a node's workers share
    its GPUs' `CUDA_VISIBLE_DEVICES`, as with Ray Train's torch backend."""

    share_cuda_visible_devices = True

    def on_start(self, worker_group: Any, backend_config: TorchConfig) -> None:
        import ray

        gpus = worker_group.get_resources_per_worker().get("GPU", 0)
        backend = backend_config.backend or ("nccl" if gpus > 0 else "gloo")
        world, timeout_s = len(worker_group), backend_config.timeout_s
        port = worker_group.execute_single(0, _open_store, world, timeout_s)
        worker_group.execute(_rank_environment)
        ray.get(
            [
                worker_group.execute_single_async(i, _join, backend, i, world, port, timeout_s)
                for i in range(world)
            ]
        )

    def on_shutdown(self, worker_group: Any, backend_config: TorchConfig) -> None:
        """Leave the group, then drop the store; a rank that does not answer (stopped, hung)
        is given the group's timeout (at most Ray Train's shutdown timeout), then its process is
        killed with the rest."""
        import ray
        from ray.exceptions import GetTimeoutError

        timeout_s = min(backend_config.timeout_s, _shutdown_timeout_s())
        try:
            ray.get(worker_group.execute_async(_leave), timeout=timeout_s)
            ray.get(worker_group.execute_single_async(0, _close_store), timeout=timeout_s)
        except GetTimeoutError:
            logger.warning("the process group did not shut down within %s s", timeout_s)


@dataclass
class LoopbackTorchConfig(TorchConfig):
    """`TorchConfig` whose process group listens on 127.0.0.1 only (a local Ray instance)."""

    @property
    def backend_cls(self) -> type:
        return _LoopbackBackend


def is_local_instance() -> bool:
    """Whether every node of the Ray instance this process is attached to is on 127.0.0.1."""
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    return bool(nodes) and all(n["NodeManagerAddress"] == "127.0.0.1" for n in nodes)
