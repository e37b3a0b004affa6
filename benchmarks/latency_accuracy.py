"""How well a latency table profiled on this CPU predicts end-to-end latency here.

Profiles every entry of a small `mobilenet` space (batch 1, one thread), then measures N
random derived networks end to end and compares with the table's sum of entries: MAPE (%),
RMSE (ms) and Spearman rank correlation. The last line of stdout is one JSON object.
Targets (issue 3): MAPE <= 5 %, Spearman >= 0.95.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nas_core.latency.predictor import LatencyModel
from nas_core.latency.profiler import ProfileConfig, profile_keys
from nas_core.latency.validate import validate_table
from nas_core.spaces import create_space


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--B", type=int, default=3)
    parser.add_argument("--F", type=float, default=0.75)
    parser.add_argument("--resolution", type=int, default=160)
    parser.add_argument("--samples", type=int, default=24)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--figure", default=None, help="where to save predicted vs measured")
    args = parser.parse_args(argv)

    space = create_space(
        "mobilenet", B=args.B, F=args.F, resolution=args.resolution, num_classes=10
    )
    config = ProfileConfig.from_config(
        {"threads": args.threads, "warmup": 5, "repeats": args.repeats}
    )
    t0 = time.perf_counter()
    table = profile_keys(space.latency_layout().all_keys(), config, progress=False)
    t1 = time.perf_counter()
    figure = args.figure or str(Path(tempfile.gettempdir()) / "latency_accuracy.png")
    result = validate_table(space, table, args.samples, config, seed=args.seed, figure=figure)
    t2 = time.perf_counter()
    measured = result.measured_ms
    print(
        json.dumps(
            {
                "mape": round(result.mape, 3),
                "spearman": round(result.spearman, 4),
                "rmse_ms": round(result.rmse_ms, 4),
                "samples": result.samples,
                "measured_ms_range": [round(min(measured), 3), round(max(measured), 3)],
                "uniform_expected_ms": round(LatencyModel(space, table).uniform(), 3),
                "entries": len(table),
                "space": space.to_config(),
                "device": table.meta.name,
                "threads": table.meta.threads,
                "repeats": args.repeats,
                "profile_s": round(t1 - t0, 1),
                "validate_s": round(t2 - t1, 1),
                "figure": figure,
                "targets": {"mape": 5.0, "spearman": 0.95},
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
