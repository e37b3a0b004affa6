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
import importlib.util
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from console import print_summary, progress_log

from nas_core.search import Searcher


def _learned_cases() -> ModuleType:
    """tests/learned_cases.py, the very configs the tests run, read from its file: the install
    holds nas_core, cluster and orchestrator, not tests/, so `tests.learned_cases` imports only
    from the repository's root (it imports nothing but the installed packages)."""
    path = Path(__file__).resolve().parents[1] / "tests" / "learned_cases.py"
    spec = importlib.util.spec_from_file_location("learned_cases", path)
    assert spec is not None and spec.loader is not None, path
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cases = _learned_cases()
log = progress_log("bar_spread")

DIGITS_TEST_IMAGES = 360


def _spread(values: list[float], with_bar: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {"values": [round(v, 4) for v in values]}
    out["min"], out["max"] = round(min(values), 4), round(max(values), 4)
    if with_bar:
        out["bar"] = round(cases.bar(values), 4)
    return out


def bf16_runs(seeds: list[int], root: Path) -> dict[str, Any]:
    lut = cases.save_table(cases.BF16_SPACE, root / "bf16.parquet")
    found: dict[str, list[float]] = {"off": [], "bf16": [], "loss_gap": [], "entropy_fall": []}

    def first_logits(amp: str, seed: int) -> Any:
        return cases.first_weight_logits(cases.bf16_case(amp, seed, root / "first", lut))

    found["logit_gap"] = [
        cases.logit_gap(*(first_logits(amp, seed) for amp in cases.AMPS)) for seed in seeds
    ]
    for seed in seeds:
        first_loss = {}
        for amp in cases.AMPS:
            config = cases.bf16_case(amp, seed, root / f"bf16-{seed}-{amp}", lut)
            result = Searcher.from_config(config).run()
            h = result.history
            found[amp].append(result.valid_accuracy)
            first_loss[amp] = h[0]["train/loss"]
            found["entropy_fall"].append(
                h[config.warmup_epochs]["arch/entropy_mean"] - h[-1]["arch/entropy_mean"]
            )
            log(f"bf16 seed {seed} {amp}: {result.valid_accuracy:.4f}")
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
    lut = cases.save_table(cases.DIGITS_SPACE, root / "digits.parquet")
    accuracy, ordered, latency = [], [], {lam: [] for lam in lambdas}
    for seed in seeds:
        ms = []
        for lam in lambdas:
            result = Searcher.from_config(
                cases.reinforce_case(lam, seed, root / f"r-{seed}-{lam}", lut)
            ).run()
            if lam == lambdas[0]:
                accuracy.append(result.valid_accuracy)
            ms.append(result.latency_table_ms)
            latency[lam].append(result.latency_table_ms)
            log(f"reinforce seed {seed} λ₂ {lam}: {result.valid_accuracy:.4f}")
        ordered.append(ms[0] > ms[1])
    return {
        "valid_accuracy_lambda0": _spread(accuracy),
        "latency_ms": {str(lam): _spread(v, with_bar=False) for lam, v in latency.items()},
        "faster_with_more_lambda2": f"{sum(ordered)} of {len(ordered)}",
    }


def full_runs(seeds: list[int], root: Path) -> dict[str, Any]:
    lut = cases.save_table(cases.TINY_SPACE, root / "tiny.parquet")
    falls = []
    for seed in seeds:
        config = cases.full_mode_case(root / f"full-{seed}", lut, seed)
        h = Searcher.from_config(config).run().history
        falls.append(h[0]["arch/entropy_mean"] - h[-1]["arch/entropy_mean"])
        log(f"full seed {seed}: entropy fall {falls[-1]:.4f}")
    return {"entropy_fall": _spread(falls, with_bar=False)}


def retrain_runs(seeds: list[int], root: Path) -> dict[str, Any]:
    import contextlib
    import io

    from orchestrator.cli import main as cli

    arch = root / "first_ops.json"
    cases.first_ops(cases.TINY_SPACE).save(arch)
    accuracy = []
    for seed in seeds:
        out = io.StringIO()
        argv = ["retrain", str(arch), *cases.RETRAIN_FLAGS, "--seed", str(seed), "--json"]
        with contextlib.redirect_stdout(out):
            cli([*argv, "--out", str(root / f"retrain-{seed}")])
        accuracy.append(json.loads(out.getvalue())["test_accuracy"])
        log(f"retrain seed {seed}: test {accuracy[-1]:.4f}")
    spread = _spread(accuracy, with_bar=False)
    spread["bar"] = round(cases.bar(accuracy, DIGITS_TEST_IMAGES), 4)
    return {"test_accuracy": spread}


def sweep_runs(seeds: list[int], root: Path) -> dict[str, Any]:
    from orchestrator.sweep import prepare_tables
    from orchestrator.sweep_spec import SweepSpec

    spec = SweepSpec.from_config(cases.SWEEP_SPEC)
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
            ms.append(Searcher.from_config(config).run().latency_table_ms)
            latency[lam].append(ms[-1])
            log(f"sweep seed {seed} λ₂ {lam}: {ms[-1]:.3f} ms")
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
    print_summary(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
