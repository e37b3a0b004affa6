"""The accuracy/latency Pareto front: non-dominated set and 2-D hypervolume.

Pure functions over plain sequences, so the sweep, `proxyless pareto` and the tests share them.
Accuracy is maximised, latency minimised; a point dominates another when it is at least as good
in both and strictly better in one. Exact ties are all kept on the front.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def pareto_mask(accuracy: Sequence[float], latency: Sequence[float]) -> list[bool]:
    """True where no other point has ≥ accuracy and ≤ latency with one of them strict."""
    if len(accuracy) != len(latency):
        raise ValueError("accuracy and latency differ in length")
    points = list(zip(accuracy, latency, strict=True))
    mask = []
    for i, (a, lat) in enumerate(points):
        if not (math.isfinite(a) and math.isfinite(lat)):
            mask.append(False)
            continue
        dominated = any(
            j != i
            and math.isfinite(b)
            and math.isfinite(m)
            and b >= a
            and m <= lat
            and (b > a or m < lat)
            for j, (b, m) in enumerate(points)
        )
        mask.append(not dominated)
    return mask


def default_reference(latency: Sequence[float]) -> tuple[float, float]:
    """(accuracy 0, 1.1 × the slowest finite latency): every trial lies inside the box."""
    finite = [v for v in latency if math.isfinite(v)]
    return 0.0, 1.1 * max(finite) if finite else 1.0


def hypervolume(
    accuracy: Sequence[float], latency: Sequence[float], reference: tuple[float, float]
) -> float:
    """Area dominated by the points inside the reference box (accuracy_ref, latency_ref)."""
    acc_ref, lat_ref = reference
    mask = pareto_mask(accuracy, latency)
    front = sorted(
        (lat, a)
        for a, lat, m in zip(accuracy, latency, mask, strict=True)
        if m and a > acc_ref and lat < lat_ref
    )
    area, best = 0.0, acc_ref
    for k, (lat, a) in enumerate(front):
        nxt = front[k + 1][0] if k + 1 < len(front) else lat_ref
        best = max(best, a)  # the accuracy reachable at latency ≤ lat
        area += (nxt - lat) * (best - acc_ref)
    return area
