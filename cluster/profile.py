"""Latency tables measured where the search runs: a CUDA table is profiled on a cluster GPU.

The driver of a search or sweep (a laptop, a cluster's head node) often has no GPU, and a GPU
search priced by the driver's CPU would optimise the wrong device. So a missing CUDA table is
profiled in a Ray task that holds one GPU, and the driver stores what it returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cluster.resources import require_gpus
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
