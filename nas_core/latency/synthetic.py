"""A deterministic stand-in latency table, for tests and benchmarks that must not depend on
this machine's timing noise: MBConv cost grows with kernel × expand, tree edges by op kind,
every fixed part costs 1 ms. Never a substitute for a profiled table in a real search."""

from __future__ import annotations

from nas_core.latency.keys import parse_key
from nas_core.latency.table import DeviceMeta, LatencyEntry, LatencyTable
from nas_core.spaces import SearchSpace

_TREE_EDGE_MS = {"identity": 0.01, "3x3_AvgPool": 0.1, "3x3_MaxPool": 0.1}


def _cost(key: str) -> float:
    f = parse_key(key)
    if f["kind"] == "expanded_conv":
        return int(f["kernel"]) * int(f["expand"]) / 10
    if f["kind"] == "tree_edge":
        return _TREE_EDGE_MS.get(f["op"], 0.5)
    return 1.0


def synthetic_table(space: SearchSpace) -> LatencyTable:
    """Every entry `space` needs, with the made-up costs above (device name "toy")."""
    keys = space.latency_layout().all_keys()
    return LatencyTable({k: LatencyEntry(3, _cost(k), 0.0) for k in keys}, DeviceMeta(name="toy"))
