"""How much one net's retrained accuracy moves with the seed, per retrain budget and recipe.

The search-vs-random comparison pairs nets by their retrained test accuracy; if one net's
accuracy spreads over seeds by more than the gap to be shown, no pairing can show it. This
script takes nets of a finished sweep (`--run`, its `results.parquet` and `sweep.yaml`),
retrains each on `--seeds` with the sweep's own recipe (or another peak `--lr`) at each of
`--epochs`, and reports per budget every net's accuracies (test, and valid: the split a choice
may use), their range and the pooled within-net standard deviation. `--twice` runs the first
seed again (run-to-run noise of this CPU's threads). `--pairs` takes the nets of every matched
pair of the run and adds the paired gap (searched − matched random) of their seed means: the
sweep's comparison again under another recipe, with the pairs fixed before it, and how much the
gaps spread beyond what seed noise alone would give. `--supernet` ranks the nets by a trained
super-net (Kendall τ against their seed means). The last line of stdout is one JSON object.

    python benchmarks/retrain_noise.py --run RUN --nets TRIAL ... --seeds 0 1 2 --epochs 10 20
    python benchmarks/retrain_noise.py --run RUN --pairs --seeds 8 9 --epochs 10 --lr 0.0125
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
from nas_core.io import atomic_write_text
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
    p.add_argument("--nets", nargs="+", default=[], help="trial ids of its retrained nets")
    p.add_argument("--pairs", action="store_true", help="every matched pair's two nets too")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, nargs="+", default=[10, 20], help="retrain budgets")
    p.add_argument("--lr", type=float, help="a peak lr instead of the sweep's (recipe check)")
    p.add_argument("--twice", action="store_true", help="the first seed once more (run-to-run)")
    p.add_argument("--out", type=Path, help="keep each retrain here (a rerun reuses it)")
    p.add_argument(
        "--supernet",
        type=Path,
        help="a finished search's folder (config.json, checkpoint.pt): Kendall τ of its "
        "super-net's scores of the nets against their seed means (valid)",
    )
    args = p.parse_args(argv)
    args.seeds = list(dict.fromkeys(args.seeds))  # a seed named twice is one seed
    if len(args.seeds) < 2:
        p.error("--seeds: at least two distinct seeds (a spread needs two)")
    if not (args.nets or args.pairs):
        p.error("name --nets, or --pairs")
    if args.supernet and not (args.supernet / "checkpoint.pt").is_file():
        p.error(f"--supernet: no checkpoint.pt in {args.supernet} (a finished search's folder)")
    from search_vs_random import kendall

    from orchestrator.results import read_results
    from orchestrator.versus_random import gap_statistics, matched_pairs

    started = time.perf_counter()
    spec = load_sweep_spec(args.run / "sweep.yaml")
    rows = read_results(args.run / "results.parquet")
    by_id = {r["trial_id"]: r for r in rows}
    done = [r for r in rows if r["kind"] != "search" and r["status"] == "done"]
    pairs = [(s["trial_id"], m["trial_id"]) for s, m in matched_pairs(done)]
    if args.pairs and not pairs:
        p.error(f"--pairs: {args.run} has no matched pair (a sweep with baseline matched: true)")
    paired = [t for pair in pairs for t in pair] if args.pairs else []
    trials = [*paired, *(t for t in args.nets if t not in paired)]
    scores = _supernet_scores(args.supernet, trials, by_id) if args.supernet else None
    report: dict[str, Any] = {"run": str(args.run), "seeds": args.seeds, "lr": args.lr}
    report["budgets"] = {}
    for epochs in args.epochs:
        nets: dict[str, Any] = {}
        for trial in trials:
            arch = Architecture.from_config(json.loads(by_id[trial]["architecture"]))
            runs = [_retrain(spec, arch, trial, seed, epochs, args) for seed in args.seeds]
            test, valid = [r["test"] for r in runs], [r["valid"] for r in runs]
            nets[trial] = {
                "kind": by_id[trial]["kind"],
                "test": test,
                "valid": valid,
                "test_range_points": 100 * (max(test) - min(test)),
            }
            if args.twice:
                again = _retrain(spec, arch, trial, args.seeds[0], epochs, args, again=True)
                nets[trial]["same_seed_twice_points"] = 100 * abs(again["test"] - test[0])
        budget: dict[str, Any] = {
            "nets": nets,
            "pooled_test_sd_points": 100 * _pooled_sd([n["test"] for n in nets.values()]),
            "pooled_valid_sd_points": 100 * _pooled_sd([n["valid"] for n in nets.values()]),
        }
        if args.pairs:
            gaps = {
                f"{s} − {m}": 100
                * (statistics.fmean(nets[s]["test"]) - statistics.fmean(nets[m]["test"]))
                for s, m in pairs
            }
            budget["s_minus_m_seed_means"] = {
                **gap_statistics(list(gaps.values())),
                "gaps": gaps,
                "gap_sd_points": statistics.stdev(gaps.values()) if len(gaps) > 1 else None,
                "gap_sd_from_seed_noise_points": _noise_of_a_gap(nets, pairs),
            }
        if scores is not None:
            means = [statistics.fmean(nets[t]["valid"]) for t in trials]
            budget["ranking"] = {"supernet": str(args.supernet), **kendall(scores, means)}
        report["budgets"][str(epochs)] = budget
    report["seconds"] = round(time.perf_counter() - started, 1)
    print_summary(report)
    return 0


def _noise_of_a_gap(nets: dict[str, Any], pairs: list[tuple[str, str]]) -> float:
    """How far a pair's gap of seed means would move were its two nets equally good, in
    points: the pooled seed-to-seed SD of the per-seed gap (on common seeds the part of a
    seed's luck both nets share cancels), over √seeds. Gaps that spread beyond this show
    architecture at matched latency."""
    per_seed = [
        [a - b for a, b in zip(nets[s]["test"], nets[m]["test"], strict=True)] for s, m in pairs
    ]
    return 100 * _pooled_sd(per_seed) / len(per_seed[0]) ** 0.5


def _supernet_scores(folder: Path, trials: list[str], by_id: dict[str, Any]) -> list[float]:
    """Each net's valid accuracy in the trained super-net of a finished search's folder, read
    from its final checkpoint (the folder is where it lies now, not where it was written)."""
    from search_vs_random import supernet_accuracy, trained_supernet

    from nas_core.search_config import load_search_config

    config = load_search_config(folder / "config.json").replace(out_dir=str(folder))
    archs = [Architecture.from_config(json.loads(by_id[t]["architecture"])) for t in trials]
    return supernet_accuracy(trained_supernet(config), archs)


def _retrain(
    spec: Any,
    arch: Architecture,
    trial: str,
    seed: int,
    epochs: int,
    args: Any,
    again: bool = False,
) -> dict[str, Any]:
    """One retrain's test and valid accuracy (and the run it belongs to), read back from
    `--out` when it ran before."""
    lr = "" if args.lr is None else f"-lr{args.lr:g}"
    path = args.out and args.out / f"{trial}-e{epochs}{lr}-seed{seed}.json"
    if path and path.exists() and not again:
        found = json.loads(path.read_text())
        if found.get("run", str(args.run.resolve())) != str(args.run.resolve()):
            raise SystemExit(f"{path}: a retrain of {found['run']}; name another --out")
        return found
    config = spec.retrain_config(seed).replace(epochs=epochs, measure_latency=False)
    if args.lr is not None:
        config = config.replace(lr=args.lr)
    result = retrain(arch, config)
    found = {"test": result.test_accuracy, "valid": result.history[-1]["valid/accuracy"]}
    found["run"] = str(args.run.resolve())
    log(f"{epochs} epochs{lr}, {trial} seed {seed}: test {found['test']:.4f}")
    if path and not again:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(found))
    return found


if __name__ == "__main__":
    raise SystemExit(main())
