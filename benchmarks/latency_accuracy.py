"""How well a latency table profiled on this CPU predicts end-to-end latency here.

Times every entry of a small `mobilenet` space (batch 1, one thread) and 3N random derived
networks, each net built twice, all in one round-robin: the table is profiled in the same
minutes as the nets it predicts, so this shared machine's drift (10-20 % within seconds) is not
counted as model error, and a net's time is the mean of its two builds. The whole-net
correction a·Σ + b is fitted on N spread nets (`latency validate --calibrate` does the same);
N other spread nets, held out, are scored with and without it: MAPE (%), RMSE (ms) and
Spearman. Spread nets reach further towards the space's fastest and slowest nets
(`space_ms_range`) than uniform ones, as a λ₂ sweep's nets do (see `random_architectures`); N
held-out uniform nets, bunched around the mean, are scored too (`*_uniform_nets`).
`spearman_measurement_repeat*` is the Spearman of one build's times against the other's: the
noise of a single build here (the model is scored against the mean of two, which is steadier).
The last line of stdout is one JSON object. Targets (issue 15): MAPE <= 5 % and Spearman
>= 0.97 on the held-out spread nets after calibration.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from console import print_summary

from nas_core.architecture import Architecture, build_net
from nas_core.latency.modules import module_for_key
from nas_core.latency.predictor import LatencyModel, architecture_latency
from nas_core.latency.profiler import ProfileConfig, time_modules
from nas_core.latency.table import LatencyTable
from nas_core.latency.validate import (
    ValidationResult,
    fit_calibration,
    random_architectures,
    save_figure,
    score,
)
from nas_core.spaces import create_space

BUILDS = 2  # independent builds of each net, timed side by side


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--B", type=int, default=3)
    parser.add_argument("--F", type=float, default=0.75)
    parser.add_argument("--resolution", type=int, default=160)
    parser.add_argument("--samples", type=int, default=24, help="N: nets per set")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=80)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--figure", default=None, help="where to save predicted vs measured")
    args = parser.parse_args(argv)

    space = create_space(
        "mobilenet", B=args.B, F=args.F, resolution=args.resolution, num_classes=10
    )
    config = ProfileConfig.from_config(
        {"threads": args.threads, "warmup": 5, "repeats": args.repeats}
    )
    n = args.samples
    spread = random_architectures(space, 2 * n, args.seed, spread=True)
    fit_archs, held_archs = spread[0::2], spread[1::2]
    uniform = random_architectures(space, n, args.seed)
    archs = [*fit_archs, *held_archs, *uniform]
    keys = space.latency_layout().all_keys()
    shape = (3, space.resolution, space.resolution)
    items = [module_for_key(k) for k in keys]
    items += [(build_net(a), shape) for a in archs for _ in range(BUILDS)]
    t0 = time.perf_counter()
    entries = time_modules(items, config)
    seconds = time.perf_counter() - t0
    table = LatencyTable(meta=config.meta())
    for key, entry in zip(keys, entries[: len(keys)], strict=True):
        table.add(key, entry)
    builds = [[e.mean for e in entries[len(keys) + b :: BUILDS]] for b in range(BUILDS)]
    measured = [sum(times) / BUILDS for times in zip(*builds, strict=True)]
    fit_ms, held_ms, uniform_ms = measured[:n], measured[n : 2 * n], measured[2 * n :]

    calibration = fit_calibration([architecture_latency(a, table) for a in fit_archs], fit_ms)
    calibrated = table.with_calibration(calibration)

    def scored(t: LatencyTable, nets: list[Architecture], ms: list[float]) -> ValidationResult:
        return score([architecture_latency(a, t) for a in nets], ms)

    before, after = scored(table, held_archs, held_ms), scored(calibrated, held_archs, held_ms)
    uniform_after = scored(calibrated, uniform, uniform_ms)
    repeat = score(builds[0][n : 2 * n], builds[1][n : 2 * n])
    uniform_repeat = score(builds[0][2 * n :], builds[1][2 * n :])
    model = LatencyModel(space, calibrated)  # the space's fastest, mean and slowest nets
    figure = args.figure or str(Path(tempfile.gettempdir()) / "latency_accuracy.png")
    save_figure(after, figure, f"{table.meta.name}, calibrated, held-out spread nets")
    print_summary(
        {
            "mape": round(after.mape, 3),
            "spearman": round(after.spearman, 4),
            "rmse_ms": round(after.rmse_ms, 4),
            "mape_uncalibrated": round(before.mape, 3),
            "spearman_uncalibrated": round(before.spearman, 4),
            "rmse_ms_uncalibrated": round(before.rmse_ms, 4),
            "spearman_measurement_repeat": round(repeat.spearman, 4),
            "mape_uniform_nets": round(uniform_after.mape, 3),
            "spearman_uniform_nets": round(uniform_after.spearman, 4),
            "spearman_measurement_repeat_uniform_nets": round(uniform_repeat.spearman, 4),
            "calibration": calibration,
            "held_out_samples": after.samples,
            "fit_samples": len(fit_archs),
            "measured_ms_range": [round(min(held_ms), 3), round(max(held_ms), 3)],
            "uniform_measured_ms_range": [round(min(uniform_ms), 3), round(max(uniform_ms), 3)],
            "uniform_expected_ms": round(model.uniform(), 3),
            "space_ms_range": [round(model.fastest(), 3), round(model.slowest(), 3)],
            "entries": len(table),
            "space": space.to_config(),
            "device": table.meta.name,
            "threads": table.meta.threads,
            "repeats": args.repeats,
            "builds_per_net": BUILDS,
            "seconds": round(seconds, 1),
            "figure": figure,
            "targets": {"mape": 5.0, "spearman": 0.97},
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
