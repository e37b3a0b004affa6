"""How much one net's retrained accuracy moves with the seed, per retrain budget.

The search-vs-random comparison pairs nets by their retrained test accuracy; if one net's
accuracy spreads over seeds by more than the gap to be shown, no pairing can show it. This
script takes nets of a finished sweep (`--run`, its `results.parquet` and `sweep.yaml`),
retrains each on `--seeds` with the sweep's own recipe at each of `--epochs`, and reports per
budget every net's accuracies (test, and valid: the split a choice may use), their range, the
pooled within-net standard deviation and the same seed run twice (run-to-run noise of this
CPU's threads). The last line of stdout is one JSON object.

    python benchmarks/retrain_noise.py --run RUN --nets TRIAL ... --seeds 0 1 2 --epochs 10 20
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from console import print_summary, progress_log

from nas_core.architecture import Architecture
from nas_core.retrain import retrain
from orchestrator.sweep_spec import load_sweep_spec

log = progress_log("retrain_noise")


def _pooled_sd(groups: list[list[float]]) -> float:
    """The within-net standard deviation, pooled over nets (each net's own mean removed)."""
    square = sum(sum((x - statistics.fmean(g)) ** 2 for x in g) for g in groups)
    return (square / sum(len(g) - 1 for g in groups)) ** 0.5


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=Path, required=True, help="a finished sweep's run folder")
    p.add_argument("--nets", nargs="+", required=True, help="trial ids of its retrained nets")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, nargs="+", default=[10, 20], help="retrain budgets")
    args = p.parse_args(argv)
    if len(set(args.seeds)) < 2:
        p.error("--seeds: at least two distinct seeds (a spread needs two)")
    import pandas as pd

    started = time.perf_counter()
    spec = load_sweep_spec(args.run / "sweep.yaml")
    rows = pd.read_parquet(args.run / "results.parquet").set_index("trial_id")
    report: dict[str, Any] = {"run": str(args.run), "seeds": args.seeds, "budgets": {}}
    for epochs in args.epochs:
        nets: dict[str, Any] = {}
        for trial in args.nets:
            arch = Architecture.from_config(json.loads(rows.loc[trial, "architecture"]))
            test, valid = [], []
            for seed in [*args.seeds, args.seeds[0]]:  # the first seed twice: run-to-run
                config = spec.retrain_config(seed).replace(epochs=epochs, measure_latency=False)
                result = retrain(arch, config)
                test.append(result.test_accuracy)
                valid.append(result.history[-1]["valid/accuracy"])
                log(f"{epochs} epochs, {trial} seed {seed}: test {test[-1]:.4f}")
            nets[trial] = {
                "kind": rows.loc[trial, "kind"],
                "test": test[:-1],
                "valid": valid[:-1],
                "test_range_points": 100 * (max(test[:-1]) - min(test[:-1])),
                "same_seed_twice_points": 100 * abs(test[-1] - test[0]),
            }
        report["budgets"][str(epochs)] = {
            "nets": nets,
            "pooled_test_sd_points": 100 * _pooled_sd([n["test"] for n in nets.values()]),
            "pooled_valid_sd_points": 100 * _pooled_sd([n["valid"] for n in nets.values()]),
        }
    report["seconds"] = round(time.perf_counter() - started, 1)
    print_summary(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
