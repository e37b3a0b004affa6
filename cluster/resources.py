"""What a search asks of the Ray cluster, checked before anything waits on it.

Two failures used to hang or end in a traceback: a GPU search on a cluster without (enough)
GPUs, where Tune trials wait forever and Ray Train retries its worker-group start without end
(`controller_failure_limit` defaults to unlimited), and settings that cannot work together
(`device: cpu` with GPUs reserved, two ranks on one GPU, which NCCL refuses as "Duplicate GPU
detected"). Both are one-line `ProxylessError`s here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from nas_core.errors import ProxylessError

# Ray Train V2 gives up starting a worker group after 60 s (RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S)
# and retries; `start_retries` turns a placement timeout into a number of those retries.
TRAIN_START_TIMEOUT_S = 60.0
DEFAULT_PLACEMENT_TIMEOUT_S = 300.0


def check_gpu_request(
    device: str, workers: int, gpus_per_worker: float, gpus: str = "gpus_per_worker"
) -> None:
    """For a run on Ray: `device` and the GPUs reserved per worker (or per in-process trial,
    `workers` 0) agree, the device is the one Ray assigns, and K > 1 ranks get whole GPUs.
    `gpus` names the setting in messages (a YAML field or a CLI flag)."""
    cuda = str(device).startswith("cuda")
    if cuda and gpus_per_worker <= 0:
        raise ProxylessError(
            f"device {device} needs GPUs: set {gpus} (1 for a whole GPU per worker)"
        )
    if not cuda and gpus_per_worker > 0:
        raise ProxylessError(
            f"{gpus} is {gpus_per_worker:g} but device is {device}: set device: cuda, or {gpus}: 0"
        )
    if cuda and str(device) != "cuda":
        raise ProxylessError(
            f"device {device}: a Ray worker uses the GPU Ray assigns it; write device: cuda"
        )
    if cuda and workers > 1 and (gpus_per_worker < 1 or gpus_per_worker != int(gpus_per_worker)):
        raise ProxylessError(
            f"{gpus} is {gpus_per_worker:g} with {workers} workers: NCCL needs each rank on "
            "its own GPU, so give every worker a whole number of GPUs (>= 1)"
        )


def worker_gpus(device: str, workers: int, requested: float | None, gpus: str) -> float:
    """GPUs per Ray Train worker of a search on `device`: `requested`, else a whole GPU for a
    CUDA search and none for a CPU one; checked as `check_gpu_request` does."""
    chosen = requested if requested is not None else float(str(device).startswith("cuda"))
    check_gpu_request(device, workers, chosen, gpus)
    return chosen


def capacity(resource: str) -> tuple[float, bool]:
    """(How much of `resource` the connected cluster can ever offer, whether that is an
    autoscaler's maximum).

    The autoscaler's configured maximum where there is one (read as Ray Train itself does),
    else what the cluster has now: a fixed cluster does not grow.
    """
    import ray

    from cluster.ray_compat import max_cluster_resources

    most = max_cluster_resources()
    if most:
        return float(most.get(resource, 0)), True
    return float(ray.cluster_resources().get(resource, 0)), False


def gpu_capacity() -> tuple[float, bool]:
    """(GPUs the connected cluster can ever offer, whether that is an autoscaler's maximum)."""
    return capacity("GPU")


def require_gpus(needed: float, what: str) -> None:
    """One line, before Ray waits, when the cluster can never offer `needed` GPUs."""
    if needed <= 0:
        return
    have, autoscaled = gpu_capacity()
    if have + 1e-9 < needed:
        bound = "at most " if autoscaled else ""
        raise ProxylessError(
            f"{what} needs {needed:g} GPU(s) but the Ray cluster has {bound}{have:g}; "
            "add GPU nodes, or lower workers / gpus_per_worker"
        )


# Ray's own resources, each with its own setting (cpus_per_worker, gpus_per_worker, ...)
BUILT_IN_RESOURCES = ("CPU", "GPU", "memory", "object_store_memory")


def check_node_resources(asked: Mapping[str, object]) -> dict[str, float]:
    """`asked` as custom node resources (name → amount > 0); a ValueError naming the first
    that is not one: a built-in resource, an empty name, an amount that is not positive."""
    for name, amount in asked.items():
        if not isinstance(name, str) or not name or name in BUILT_IN_RESOURCES:
            raise ValueError(
                f"{name!r}: a custom resource of the nodes (CPUs and GPUs have their own "
                "settings: cpus_per_worker, gpus_per_worker)"
            )
        if isinstance(amount, bool) or not isinstance(amount, int | float) or not amount > 0:
            raise ValueError(f"{name}: expected an amount > 0, got {amount!r}")
    return {name: float(amount) for name, amount in asked.items()}  # type: ignore[arg-type]


def require_node_resources(needed: Mapping[str, float], what: str, setting: str) -> None:
    """One line, before Ray waits, when the cluster can never offer a custom resource that
    `needed` asks for (a Tune trial would wait in the queue for it forever). `setting` is the
    spec field that asked."""
    for name, amount in needed.items():
        have, autoscaled = capacity(name)
        if have + 1e-9 < amount:
            bound = "at most " if autoscaled else ""
            raise ProxylessError(
                f"{setting}: {what} needs {amount:g} of {name!r} but the Ray cluster has "
                f"{bound}{have:g}; start the nodes meant for it with "
                f"--resources='{{\"{name}\": 1}}', or change {setting}"
            )


NODE_ID_KEY = "node_id"  # a report's field naming the Ray node that did the work


def current_node_id() -> str:
    """The Ray node this process runs on, as Ray's dashboard, state API and logs name it."""
    import ray

    return ray.get_runtime_context().get_node_id()


def start_retries(placement_timeout_s: float) -> int:
    """Ray Train worker-group start retries that fit in `placement_timeout_s`."""
    return max(0, math.ceil(placement_timeout_s / TRAIN_START_TIMEOUT_S) - 1)
