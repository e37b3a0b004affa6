"""Latency tables measured where the search runs: a CUDA table is profiled on a cluster GPU,
and a device type's table on a node labelled with its resource.

The driver of a search or sweep (a laptop, a cluster's head node) often has no GPU, and a GPU
search priced by the driver's CPU would optimise the wrong device. So a missing CUDA table is
profiled in a Ray task that holds one GPU, and the driver stores what it returns; likewise a
table for the nodes that offer a custom resource (`start_profile_on`).
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cluster.resources import current_node_id, require_gpus
from nas_core.latency.profiler import ProfileConfig, profile_keys
from nas_core.latency.table import LatencyTable


def _profile(keys: Sequence[str], device: str, extra_meta: dict[str, Any]) -> LatencyTable:
    """Runs on the GPU node (ProfileConfig checks for CUDA where it is built)."""
    config = ProfileConfig.for_search(device)
    return profile_keys(keys, config, progress=False, extra_meta=extra_meta)


def profile_on_gpu(
    keys: Sequence[str], out: str | Path, extra_meta: dict[str, Any] | None = None
) -> LatencyTable:
    """Profile `keys` with the search defaults on one cluster GPU; save the table to `out`.

    A table already at `out` (an earlier run's) is reused when it holds every key.
    """
    import ray

    out = Path(out)
    if out.exists():
        table = LatencyTable.load(out)
        if not table.missing(list(keys)) and table.meta.kind == "cuda":
            return table
    require_gpus(1, "profiling a CUDA latency table")
    task = ray.remote(num_gpus=1, num_cpus=1)(_profile)
    table = ray.get(task.remote(list(keys), "cuda", dict(extra_meta or {})))
    table.save(out)
    return table


def _profile_labelled(
    keys: Sequence[str], device: str, name: str, extra_meta: dict[str, Any]
) -> LatencyTable:
    """Runs on a labelled node: its table, named `name`, recording where it was measured."""
    table = _profile(keys, device, extra_meta)
    where = {
        "node_id": current_node_id(),
        "hostname": socket.gethostname(),
        "device": table.meta.name,
    }
    meta = dataclasses.replace(
        table.meta, name=name, extra={**table.meta.extra, "profiled_on": where}
    )
    return LatencyTable(table.entries, meta)


def start_profile_on(
    keys: Sequence[str],
    resources: Mapping[str, float],
    device: str,
    name: str,
    extra_meta: dict[str, Any] | None = None,
) -> Any:
    """Start profiling `keys` with the search defaults on a node that offers `resources` (one
    CPU, or one GPU for `device` cuda, besides); a Ray reference to the table named `name`."""
    import ray

    cuda = str(device).startswith("cuda")
    task = ray.remote(num_cpus=1, num_gpus=1 if cuda else 0, resources=dict(resources))
    return task(_profile_labelled).remote(
        list(keys), "cuda" if cuda else "cpu", name, dict(extra_meta or {})
    )
