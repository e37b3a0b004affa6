"""How well a table predicts this device: end-to-end latency of random derived networks.

For N random architectures of a space, measure the standalone net end to end with the
profiler's method and compare with the table's sum of entries: MAPE, RMSE and Spearman rank
correlation (what a search needs most is the right order). `fit_calibration` fits the
whole-net correction a·Σ + b that a calibrated table applies to every prediction.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nas_core.architecture import Architecture, build_net
from nas_core.errors import ProxylessError
from nas_core.io import atomic_output
from nas_core.latency.predictor import architecture_latency
from nas_core.latency.profiler import ProfileConfig, time_modules
from nas_core.latency.table import LatencyTable
from nas_core.sampling import Stream, step_generator
from nas_core.spaces import SearchSpace


@dataclass(frozen=True)
class ValidationResult:
    """Predicted vs measured end-to-end latency of `samples` random networks."""

    samples: int
    mape: float  # percent
    rmse_ms: float
    spearman: float
    predicted_ms: tuple[float, ...]
    measured_ms: tuple[float, ...]

    def summary(self) -> dict[str, float | int]:
        d = asdict(self)
        return {k: d[k] for k in ("samples", "mape", "rmse_ms", "spearman")}


SPREAD_CONCENTRATION = 0.5  # Dirichlet concentration of a spread net's op preferences


def random_architectures(
    space: SearchSpace, n: int, seed: int, spread: bool = False
) -> list[Architecture]:
    """`n` architectures with every layer's op drawn uniformly, or with `spread` from the net's
    own preferences over candidate positions (a Dirichlet draw per net).

    Uniform nets bunch around the space's mean latency (about ±20 %), where this machine's
    run-to-run noise reorders many of them; spread nets reach further towards both ends, as the
    nets of a λ₂ sweep do, and pin a calibration's slope apart from its offset.
    """
    if spread:
        return _spread_architectures(space, n, seed)
    g = step_generator(seed, 0, Stream.LATENCY_SAMPLES)
    out = []
    for _ in range(n):
        ops = tuple(
            s.candidates[int(torch.randint(len(s.candidates), (1,), generator=g))]
            for s in space.layer_specs()
        )
        out.append(Architecture(space, ops))
    return out


def _spread_architectures(space: SearchSpace, n: int, seed: int) -> list[Architecture]:
    """Preferences over candidate positions, shared by a net's layers: position i is the same
    op in every layer of a space (Zero last, where a layer has it)."""
    rng = np.random.default_rng([seed, int(Stream.LATENCY_SAMPLES)])
    specs = space.layer_specs()
    width = max(len(s.candidates) for s in specs)
    out = []
    for _ in range(n):
        preference = rng.dirichlet([SPREAD_CONCENTRATION] * width)
        ops = []
        for s in specs:
            p = preference[: len(s.candidates)]
            ops.append(s.candidates[int(rng.choice(len(p), p=p / p.sum()))])
        out.append(Architecture(space, tuple(ops)))
    return out


def spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    rho = spearmanr(a, b).statistic
    return float(rho) if rho == rho else 0.0


def measure(archs: Sequence[Architecture], config: ProfileConfig) -> list[float]:
    """End-to-end latency of each architecture's standalone net here, in ms."""
    r = archs[0].space.resolution
    entries = time_modules([(build_net(a), (3, r, r)) for a in archs], config)
    return [e.mean for e in entries]


def score(predicted: Sequence[float], measured: Sequence[float]) -> ValidationResult:
    """MAPE, RMSE and Spearman of predictions against measurements."""
    n = len(measured)
    errors = [(p - m) for p, m in zip(predicted, measured, strict=True)]
    return ValidationResult(
        samples=n,
        mape=100.0 * sum(abs(e) / m for e, m in zip(errors, measured, strict=True)) / n,
        rmse_ms=math.sqrt(sum(e * e for e in errors) / n),
        spearman=spearman(list(predicted), list(measured)),
        predicted_ms=tuple(predicted),
        measured_ms=tuple(measured),
    )


def fit_calibration(sums_ms: Sequence[float], measured: Sequence[float]) -> dict[str, Any]:
    """scale a > 0 and offset b with a·Σ + b ≈ measured, least squares on the relative error
    (what MAPE counts): the steady share of whole-net time the per-op sum misses. When the
    nets' sums are too alike to tell slope from offset (rank 1, or a ≤ 0), a scale alone."""
    s, m = np.asarray(sums_ms, dtype=float), np.asarray(measured, dtype=float)
    if len(s) < 2:
        raise ProxylessError("calibration needs at least two measured nets")
    design = np.stack([s / m, 1 / m], axis=1)
    (a, b), _, rank, _ = np.linalg.lstsq(design, np.ones_like(m), rcond=None)
    if rank < 2 or not a > 0:
        a, b = float(np.sum(s / m) / np.sum((s / m) ** 2)), 0.0
    return {"scale": float(a), "offset_ms": float(b), "nets": len(s)}


def validate_table(
    space: SearchSpace,
    table: LatencyTable,
    samples: int,
    config: ProfileConfig,
    seed: int = 0,
    figure: str | Path | None = None,
    spread: bool = True,
) -> ValidationResult:
    """`samples` random nets (spread, as `latency validate` draws them) priced and measured."""
    archs = random_architectures(space, samples, seed, spread)
    predicted = [architecture_latency(a, table) for a in archs]  # fails fast on missing keys
    result = score(predicted, measure(archs, config))
    if figure is not None:
        save_figure(result, figure, f"{table.meta.name} ({table.meta.kind})")
    return result


def save_figure(result: ValidationResult, path: str | Path, title: str) -> None:
    """Predicted-vs-measured scatter with the y = x line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(result.measured_ms, result.predicted_ms, s=18)
    lo = min(*result.measured_ms, *result.predicted_ms) * 0.95
    hi = max(*result.measured_ms, *result.predicted_ms) * 1.05
    ax.plot([lo, hi], [lo, hi], color="grey", linestyle="--", linewidth=1, label="y = x")
    ax.set_xlabel("measured end-to-end latency (ms)")
    ax.set_ylabel("table prediction (ms)")
    ax.set_title(f"{title}\nMAPE {result.mape:.1f} %, Spearman {result.spearman:.3f}", fontsize=9)
    ax.legend(loc="upper left")
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=120, format=Path(path).suffix.lstrip(".") or "png")
    plt.close(fig)
