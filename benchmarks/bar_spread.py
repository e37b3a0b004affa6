"""The spread over seeds of every learned quantity test_search asserts, and the bar it allows.

A bar set a few images under what one CPU measured is a coin toss on another: seeded runs are
deterministic on one CPU and differ on the next (other SIMD kernels, other summation orders).
This script reruns the suite's digits searches (`tests/learned_cases.py`, the very configs the
tests run) at seeds 0..N−1 and prints, per quantity, the values, their range and the bar a test
may assert: min − 3 binomial SE of the 287-image valid split (`learned_cases.bar`). Rerun it
when a test's config changes, and write the printed spread into the test's docstring.

- `bf16`: Proxyless-G at λ₂ = 0 with weight steps in fp32 and in bf16, same seed: valid
  accuracy of each, the first weight step's logits (their largest difference over their range:
  bf16 rounding alone), the first epoch's mean train loss of each (their relative gap: how far
  the trajectories part within an epoch) and the fall of mean α entropy;
- `reinforce`: Proxyless-R at λ₂ = 0 and 3: valid accuracy at 0, the derived nets' table
  latency at both (the test asserts the λ₂ = 3 net is strictly faster);
- `full`: the tiny search with every gate's gradient: the fall of mean α entropy;
- `retrain`: `proxyless retrain` of the tiny space's first-candidate net, 8 epochs, per seed:
  test accuracy (360 test images);
- `sweep`: test_sweep's searches (`learned_cases.SWEEP_SPEC`, λ₂ 0 and 1) in-process on a table
  profiled here, as the sweep profiles one: the derived nets' table latency per λ₂ (the test
  asserts more λ₂ is never slower and the ends strictly ordered).

The last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from nas_core.search import Searcher  # noqa: E402
from tests.learned_cases import (  # noqa: E402
    AMPS,
    BF16_SPACE,
    DIGITS_SPACE,
    RETRAIN_FLAGS,
    SWEEP_SPEC,
    TINY_SPACE,
    bar,
    bf16_case,
    first_ops,
    first_weight_logits,
    full_mode_case,
    logit_gap,
    reinforce_case,
    save_table,
)

DIGITS_TEST_IMAGES = 360


def _spread(values: list[float], with_bar: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {"values": [round(v, 4) for v in values]}
    out["min"], out["max"] = round(min(values), 4), round(max(values), 4)
    if with_bar:
        out["bar"] = round(bar(values), 4)
    return out


def bf16_runs(seeds: list[int], root: Path) -> dict[str, Any]:
    lut = save_table(BF16_SPACE, root / "bf16.parquet")
    found: dict[str, list[float]] = {"off": [], "bf16": [], "loss_gap": [], "entropy_fall": []}
    found["logit_gap"] = [
        logit_gap(*(first_weight_logits(bf16_case(amp, seed, root / "first", lut)) for amp in AMPS))
        for seed in seeds
    ]
    for seed in seeds:
        first_loss = {}
        for amp in AMPS:
            config = bf16_case(amp, seed, root / f"bf16-{seed}-{amp}", lut)
            result = Searcher.from_config(config).run()
            h = result.history
            found[amp].append(result.valid_accuracy)
            first_loss[amp] = h[0]["train/loss"]
            found["entropy_fall"].append(
                h[config.warmup_epochs]["arch/entropy_mean"] - h[-1]["arch/entropy_mean"]
            )
            print(f"bf16 seed {seed} {amp}: {result.valid_accuracy:.4f}", flush=True)
        found["loss_gap"].append(abs(first_loss["bf16"] / first_loss["off"] - 1))
    return {
        "fp32_valid_accuracy": _spread(found["off"]),
        "bf16_valid_accuracy": _spread(found["bf16"]),
        "first_epoch_loss_relative_gap": _spread(found["loss_gap"], with_bar=False),
        "first_step_logit_gap_over_range": _spread(found["logit_gap"], with_bar=False),
        "entropy_fall": _spread(found["entropy_fall"], with_bar=False),
    }


def reinforce_runs(
    seeds: list[int], root: Path, lambdas: tuple[float, float] = (0.0, 3.0)
) -> dict[str, Any]:
    lut = save_table(DIGITS_SPACE, root / "digits.parquet")
    accuracy, ordered, latency = [], [], {lam: [] for lam in lambdas}
    for seed in seeds:
        ms = []
        for lam in lambdas:
            result = Searcher.from_config(
                reinforce_case(lam, seed, root / f"r-{seed}-{lam}", lut)
            ).run()
            if lam == lambdas[0]:
                accuracy.append(result.valid_accuracy)
            ms.append(result.latency_ms)
            latency[lam].append(result.latency_ms)
            print(f"reinforce seed {seed} λ₂ {lam}: {result.valid_accuracy:.4f}", flush=True)
        ordered.append(ms[0] > ms[1])
    return {
        "valid_accuracy_lambda0": _spread(accuracy),
        "latency_ms": {str(lam): _spread(v, with_bar=False) for lam, v in latency.items()},
        "faster_with_more_lambda2": f"{sum(ordered)} of {len(ordered)}",
    }


def full_runs(seeds: list[int], root: Path) -> dict[str, Any]:
    lut = save_table(TINY_SPACE, root / "tiny.parquet")
    falls = []
    for seed in seeds:
        h = Searcher.from_config(full_mode_case(root / f"full-{seed}", lut, seed)).run().history
        falls.append(h[0]["arch/entropy_mean"] - h[-1]["arch/entropy_mean"])
        print(f"full seed {seed}: entropy fall {falls[-1]:.4f}", flush=True)
    return {"entropy_fall": _spread(falls, with_bar=False)}


def retrain_runs(seeds: list[int], root: Path) -> dict[str, Any]:
    import contextlib
    import io

    from orchestrator.cli import main as cli

    arch = root / "first_ops.json"
    first_ops(TINY_SPACE).save(arch)
    accuracy = []
    for seed in seeds:
        out = io.StringIO()
        argv = ["retrain", str(arch), *RETRAIN_FLAGS, "--seed", str(seed), "--json"]
        with contextlib.redirect_stdout(out):
            cli([*argv, "--out", str(root / f"retrain-{seed}")])
        accuracy.append(json.loads(out.getvalue())["test_accuracy"])
        print(f"retrain seed {seed}: test {accuracy[-1]:.4f}", flush=True)
    spread = _spread(accuracy, with_bar=False)
    spread["bar"] = round(bar(accuracy, DIGITS_TEST_IMAGES), 4)
    return {"test_accuracy": spread}


def sweep_runs(seeds: list[int], root: Path) -> dict[str, Any]:
    from orchestrator.sweep import prepare_tables
    from orchestrator.sweep_spec import SweepSpec

    spec = SweepSpec.from_config(SWEEP_SPEC)
    prepare_tables(spec, root)  # this CPU's table, as the sweep profiles it
    lut = str(root / "latency.parquet")
    lambdas = spec.grid["lambda2"].values
    latency: dict[float, list[float]] = {lam: [] for lam in lambdas}
    ordered = 0
    for seed in seeds:
        ms = []
        for lam in lambdas:
            point = {"lambda2": lam, "B": 2, "F": 0.5, "seed": seed, "lut": lut}
            config = spec.search_config(point, out_dir=str(root / f"sweep-{seed}-{lam}"))
            ms.append(Searcher.from_config(config).run().latency_ms)
            latency[lam].append(ms[-1])
            print(f"sweep seed {seed} λ₂ {lam}: {ms[-1]:.3f} ms", flush=True)
        ordered += all(a >= b for a, b in itertools.pairwise(ms)) and ms[0] > ms[-1]
    return {
        "latency_ms": {str(lam): _spread(v, with_bar=False) for lam, v in latency.items()},
        "ordered": f"{ordered} of {len(seeds)}",
    }


CASES = {
    "bf16": bf16_runs,
    "reinforce": reinforce_runs,
    "full": full_runs,
    "retrain": retrain_runs,
    "sweep": sweep_runs,
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default 5)")
    p.add_argument("--only", choices=tuple(CASES), nargs="+", help="some cases (default: all)")
    args = p.parse_args(argv)
    seeds = list(range(args.seeds))
    started = time.perf_counter()
    out: dict[str, Any] = {"seeds": seeds}
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.only or CASES:
            out[case] = CASES[case](seeds, Path(tmp))
    out["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(out, ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
