"""Is the search worth it? ProxylessNAS against random architectures under the same retrain.

Weight-sharing searches often tie random sampling under equal training (Li & Talwalkar, UAI
2019; Yu et al., ICLR 2020). This script answers on a dataset the project reads, in four steps:

1. **Does architecture matter at this budget?** The floor net (every searchable layer Zero, or
   its cheapest op) and the widest net (every layer its slowest op) are retrained on two seeds
   each. A gap under `--min-gap` points of valid accuracy, or a seed spread (range of one net
   over its seeds) above `--max-spread` points, means no arm can win by architecture here:
   the script says so and stops (`--force` goes on anyway, for the diagnostics;
   `--check-only` stops after this step).
2. **The arms**, through `proxyless sweep` itself (`orchestrator.sweep.run_sweep`), one spec:
   S, a λ₂ grid × seeds of searches, each derived net retrained (every search's time is
   charged to S); M, one random net per searched net within ±5 % of its table latency; R,
   `--random` uniform random nets per seed. One recipe, one table (profiled here first).
3. **The comparison**: the paired gap S − M (mean, bootstrap 95 % interval, pairs won, from
   the sweep's own `search_vs_random`), each arm's hypervolume per seed and overall under one
   reference, the random nets' spread, and the trial seconds per arm. With `--retrain-seeds`,
   both nets of every matched pair are retrained on those seeds too and the gap is taken
   again between seed means: one net's retrain spreads by several points over seeds here.
4. **The one-shot ranking diagnostic** (Yu et al.): one more search at the grid's first point;
   its super-net scores every random net with inherited weights (batch-statistics BN over
   class-mixed batches of the valid split), and Kendall τ compares that ranking with the nets'
   valid accuracy after retraining; and each search's epochs (super-net valid accuracy, Zero's
   share, layers whose choice moved, α entropy) beside its net's retrained accuracy.

Every retrain peaks at lr `--retrain-lr` (the official 0.05 at batch 256, scaled to the batch
of 64 here). Choices use the valid split only; the test split only reports. Default:
Fashion-MNIST (Debian's `dataset-fashion-mnist`), ≤ 90 min on 2 cores; `--quick`, a smaller
version, ≤ 15 min. A figure (accuracy against table latency, one marker per arm) is written
beside the JSON, which is the last line of stdout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from console import print_summary, progress_log

from nas_core.architecture import Architecture
from nas_core.io import atomic_write_text
from nas_core.latency.predictor import LatencyModel
from nas_core.retrain import retrain
from orchestrator.pareto import hypervolume
from orchestrator.sweep_spec import SweepSpec

log = progress_log("search_vs_random")

SPACE = {"name": "mobilenet", "B": 2, "F": 0.5, "resolution": 32, "transition_op": "3x3_MBConv6"}
FULL = {"subset": 10000, "warmup": 12, "epochs": 6, "retrain": 10, "random": 3,
        "lambdas": [0.0, 0.01, 0.03], "seeds": [0, 1]}  # fmt: skip
# a floor net that beats the widest by the gap: the budget rewards nets that train fast, so a
# search can win only by finding fast nets (more retrain epochs close the gap, see README)
REVERSED = "; the floor net beats the widest: at this budget the slow nets are under-trained"
# every retrain's peak lr: the official recipe's 0.05 at batch 256, scaled linearly to the batch
# of 64 used here. At 0.05 with batch 64 (4× the official lr per image) the deep nets' training
# blew up in its first epochs on some seeds and one net's accuracy spread by up to 10 points
# over seeds (docs/search_vs_random.md, "A retrain that diverges")
RETRAIN_LR = 0.0125
QUICK = {"subset": 3000, "warmup": 4, "epochs": 2, "retrain": 4, "random": 2,
         "lambdas": [0.0, 0.2], "seeds": [0]}  # fmt: skip


def build_spec(args: argparse.Namespace, lut: str | None) -> SweepSpec:
    """The sweep that runs arms S, M and R."""
    data: dict[str, Any] = {"dataset": args.dataset, "train_subset": args.subset}
    if args.data_dir:
        data["data_dir"] = args.data_dir
    grid: dict[str, Any] = {"lambda2": args.lambdas, "seed": args.seeds}
    if lut is not None:
        grid["lut"] = [lut]
    return SweepSpec.from_config(
        {
            "name": "search_vs_random",
            "storage_path": str(args.out),
            "data": data,
            "space": SPACE,
            "strategy": {"name": "gradient", "arch_lr": args.arch_lr},
            "weights": {"lr": 0.1, "batch_size": 64},
            "search": {"epochs": args.epochs, "warmup_epochs": args.warmup, "arch_every": 2},
            "retrain": {"epochs": args.retrain, "lr": args.retrain_lr, "batch_size": 64},
            "grid": grid,
            "baseline": {"random": args.random, "matched": True},
            "resources": {"workers": 0},
        }
    )


def profile_table(spec: SweepSpec, out: Path) -> str:
    """This CPU's table for the space, profiled once (`prepare_tables`, as a sweep does)."""
    from orchestrator.sweep import prepare_tables

    path = out / "latency.parquet"
    if not path.exists():
        prepare_tables(spec, out)
    return str(path)


def ends_of_the_space(spec: SweepSpec, lut: str) -> dict[str, Architecture]:
    """The floor net (each layer's cheapest op: Zero where it has one) and the widest."""
    from nas_core.data import build_datasets
    from nas_core.latency.table import LatencyTable

    config = spec.search_config({"lambda2": 0.0, "lut": lut}, out_dir="unused")
    space = config.build_space(build_datasets(spec.data).num_classes)
    model = LatencyModel(space, LatencyTable.load(lut))
    specs = space.layer_specs()
    pick = {"floor": torch.argmin, "widest": torch.argmax}
    return {
        name: Architecture(
            space, tuple(s.candidates[int(f(c))] for s, c in zip(specs, model.costs, strict=True))
        )
        for name, f in pick.items()
    }


def architecture_matters(spec: SweepSpec, lut: str, seeds: list[int]) -> dict[str, Any]:
    """Step 1: both ends of the space retrained on two seeds; valid accuracy decides."""
    found: dict[str, Any] = {}
    for name, arch in ends_of_the_space(spec, lut).items():
        valid, test = [], []
        for seed in seeds[:2] if len(seeds) > 1 else [seeds[0], seeds[0] + 1]:
            result = retrain(arch, spec.retrain_config(seed).replace(measure_latency=False))
            valid.append(result.history[-1]["valid/accuracy"])
            test.append(result.test_accuracy)
            log(f"{name} seed {seed}: valid {valid[-1]:.4f}")
        found[name] = {"ops": ",".join(arch.ops), "valid": valid, "test": test}
    gap = statistics.fmean(found["widest"]["valid"]) - statistics.fmean(found["floor"]["valid"])
    spread = max(max(v["valid"]) - min(v["valid"]) for v in found.values())
    found["gap_points"], found["seed_spread_points"] = 100 * gap, 100 * spread
    return found


def supernet_accuracy(searcher: Any, archs: list[Architecture]) -> list[float]:
    """Each architecture's valid accuracy in the trained super-net of `searcher` (inherited
    weights, batch-statistics BN over class-mixed batches of the valid split)."""
    from nas_core.batchnorm import mixed_shard
    from nas_core.data import build_datasets
    from nas_core.evaluation import evaluate_sums
    from nas_core.loader import make_loader

    valid = make_loader(mixed_shard(build_datasets(searcher.config.data).valid), 256, False)
    found = []
    for arch in archs:
        specs = arch.space.layer_specs()
        searcher.net.set_paths(
            [s.candidates.index(op) for s, op in zip(specs, arch.ops, strict=True)]
        )
        sums = evaluate_sums(searcher.net, valid, torch.device("cpu"), bn="batch")
        found.append(float(sums[1] / sums[2]))
    return found


def trained_supernet(config: Any) -> Any:
    """The searcher of `config` at the end of its search: run, or read back from its
    checkpoint in `config.out_dir` when it ran before."""
    from nas_core.search import Searcher

    searcher = Searcher.from_config(config)
    searcher.run(resume=True)
    return searcher


def kendall(shared: list[float], standalone: list[float]) -> dict[str, Any]:
    """Kendall τ of the super-net's scores against the standalone ones, with both lists."""
    from scipy.stats import kendalltau

    tau = kendalltau(shared, standalone) if len(shared) > 2 else None  # no ranking of 2
    return {
        "kendall_tau": None if tau is None else float(tau.statistic),
        "p_value": None if tau is None else float(tau.pvalue),
        "nets": len(shared),
        "supernet_valid_accuracy": [round(a, 4) for a in shared],
        "standalone_valid_accuracy": [round(a, 4) for a in standalone],
    }


def supernet_ranking(spec: SweepSpec, lut: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Step 4: Kendall τ of the super-net's scores of the random nets against their retrained
    valid accuracy. The super-net's search runs once in `out/tau` (a rerun reads it back)."""
    nets = [r for r in rows if r["kind"] == "random" and r["status"] == "done"]
    point = {"lambda2": spec.grid["lambda2"].values[0], "seed": spec.grid["seed"].values[0]}
    config = spec.search_config({**point, "lut": lut}, out_dir=str(Path(spec.storage_path) / "tau"))
    archs = [Architecture.from_config(json.loads(r["architecture"])) for r in nets]
    shared = supernet_accuracy(trained_supernet(config), archs)
    return kendall(shared, [r["valid_accuracy"] for r in nets])


# a search's epochs as its TensorBoard holds them: the diagnostics of a collapse or a wander
DIAGNOSTICS = {
    "supernet_valid_accuracy": "valid/accuracy",  # derived path, batch statistics, mixed order
    "zero_share": "arch/zero_share",
    "changed_layers": "arch/changed_layers",
    "entropy_mean": "arch/entropy_mean",
}


def search_diagnostics(run_dir: Path, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per searched net, its search's epochs (super-net valid accuracy of the derived path, Zero's
    share, layers whose argmax moved, α entropy) beside what the net scored retrained."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    standalone = {
        r["search_trial_id"]: r["valid_accuracy"]
        for r in rows
        if r["kind"] == "retrain" and r["status"] == "done"
    }
    found: dict[str, Any] = {}
    for r in rows:
        if r["kind"] != "search" or r["status"] != "done":
            continue
        events = EventAccumulator(
            str(run_dir / "tensorboard" / "search" / r["trial_id"]), size_guidance={"scalars": 0}
        )
        events.Reload()
        tags = set(events.Tags()["scalars"])
        series = {
            name: [round(e.value, 4) for e in events.Scalars(tag)]
            for name, tag in DIAGNOSTICS.items()
            if tag in tags
        }
        series["retrained_valid_accuracy"] = standalone.get(r["trial_id"])
        found[f"λ₂={r['lambda2']:g} seed {r['seed']}"] = series
    return found


def _arm(r: dict[str, Any]) -> str:
    if r["kind"] != "random":
        return "S"
    return "M" if r.get("matched_to") else "R"


def compare(rows: list[dict[str, Any]], summary: dict[str, Any]) -> dict[str, Any]:
    """Step 3: the arms' numbers from the sweep's rows and summary."""
    (stats,) = summary["devices"].values()
    versus = stats["search_vs_random"]
    nets = [r for r in rows if r["kind"] != "search" and r["status"] == "done"]
    reference = (versus["reference"]["accuracy"], versus["reference"]["latency_ms"])
    arms: dict[str, Any] = {}
    for arm in ("S", "M", "R"):
        mine = [r for r in nets if _arm(r) == arm]
        if not mine:
            continue
        acc = [r["test_accuracy"] for r in mine]
        by_seed = {}
        for seed in sorted({r["seed"] for r in mine}):
            same = [r for r in mine if r["seed"] == seed]
            by_seed[str(seed)] = hypervolume(
                [r["test_accuracy"] for r in same], [r["latency_table_ms"] for r in same], reference
            )
        arms[arm] = {
            "nets": len(mine),
            "test_accuracy": {"min": min(acc), "max": max(acc), "mean": statistics.fmean(acc)},
            "hypervolume": hypervolume(acc, [r["latency_table_ms"] for r in mine], reference),
            "hypervolume_by_seed": by_seed,
            "trial_seconds": sum(
                r.get("time_total_s") or 0.0 for r in rows if _arm(r) == arm
            ),  # S: its searches too
        }
    gap = versus["gap_mean"]
    return {
        "s_minus_m_points": None if gap is None else 100 * gap,
        "s_minus_m_ci95_points": None if gap is None else [100 * v for v in versus["gap_ci95"]],
        "s_minus_m_median_points": None if gap is None else 100 * versus["gap_median"],
        "pairs": versus["pairs"],
        "pairs_won": versus["pairs_won"],
        "unmatched": versus["unmatched"],
        "reference": versus["reference"],
        "arms": arms,
    }


def reseeded_pairs(
    spec: SweepSpec, rows: list[dict[str, Any]], seeds: list[int], out: Path
) -> dict[str, Any]:
    """Step 3b: both nets of every matched pair retrained on `seeds` too, and the paired gap
    of their seed means. One net's retrain spreads by several points over seeds at this
    budget, so one seed per net cannot show a 1-point gap. Each retrain is kept in
    `out/reseeded/`, so a rerun only trains what is missing."""
    from orchestrator.versus_random import gap_statistics, matched_pairs

    pairs = matched_pairs([r for r in rows if r["kind"] != "search" and r["status"] == "done"])
    folder = out / "reseeded"
    folder.mkdir(parents=True, exist_ok=True)

    def accuracies(row: dict[str, Any]) -> list[float]:
        found = [row["test_accuracy"]]
        for seed in (s for s in seeds if s != row["seed"]):
            path = folder / f"{row['trial_id']}-seed{seed}.json"
            if not path.exists():
                arch = Architecture.from_config(json.loads(row["architecture"]))
                result = retrain(arch, spec.retrain_config(seed).replace(measure_latency=False))
                record = {"test_accuracy": result.test_accuracy, "ops": ",".join(arch.ops)}
                atomic_write_text(path, json.dumps(record))
                log(f"{_arm(row)} {row['trial_id']} seed {seed}: test {result.test_accuracy:.4f}")
            found.append(json.loads(path.read_text())["test_accuracy"])
        return found

    table = []
    for s_row, m_row in pairs:
        s_acc, m_acc = accuracies(s_row), accuracies(m_row)
        table.append({
            "pair": f"λ₂={s_row['lambda2']:g} seed {s_row['seed']}",
            "latency_ms": [s_row["latency_table_ms"], m_row["latency_table_ms"]],
            "S": s_acc, "M": m_acc,
            "gap_points": 100 * (statistics.fmean(s_acc) - statistics.fmean(m_acc)),
        })  # fmt: skip
    if not table:
        return {"extra_seeds": seeds, "pairs": 0}
    stats = gap_statistics([p["gap_points"] for p in table])  # in points throughout
    spread = [100 * (max(v) - min(v)) for p in table for v in (p["S"], p["M"])]
    return {
        "extra_seeds": seeds,
        "s_minus_m_points": stats["gap_mean"],
        "s_minus_m_ci95_points": stats["gap_ci95"],
        "s_minus_m_median_points": stats["gap_median"],
        "pairs": stats["pairs"],
        "pairs_won": stats["pairs_won"],
        "net_seed_spread_points": {"median": statistics.median(spread), "max": max(spread)},
        "by_pair": table,
    }


def draw(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    style = {"S": ("o", "tab:red", "searched"), "M": ("x", "tab:blue", "matched random"),
             "R": ("x", "0.5", "uniform random")}  # fmt: skip
    nets = [r for r in rows if r["kind"] != "search" and r["status"] == "done"]
    for arm, (marker, colour, label) in style.items():
        mine = [r for r in nets if _arm(r) == arm]
        ax.scatter(
            [r["latency_table_ms"] for r in mine],
            [r["test_accuracy"] for r in mine],
            marker=marker,
            c=colour,
            label=f"{label} ({len(mine)})",
        )
    for r in nets:
        if _arm(r) == "S":
            ax.annotate(f"λ₂ {r['lambda2']:g}", (r["latency_table_ms"], r["test_accuracy"]),
                        fontsize=6, xytext=(3, 3), textcoords="offset points")  # fmt: skip
    ax.set_xlabel("latency (ms, table of this CPU)")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    ax.set_title("search vs random under one retrain", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="fashion_mnist", help="any dataset the project reads")
    p.add_argument("--data-dir", default=None, help="its folder (fashion_mnist: Debian's)")
    p.add_argument("--quick", action="store_true", help="the ≤ 15-minute version")
    p.add_argument("--subset", type=int, help="training images (stratified)")
    p.add_argument("--lambdas", type=float, nargs="+", help="the λ₂ grid of arm S")
    p.add_argument("--seeds", type=int, nargs="+", help="seeds of every arm")
    p.add_argument("--warmup", type=int, help="warm-up epochs of a search")
    p.add_argument("--epochs", type=int, help="search epochs after warm-up")
    p.add_argument("--retrain", type=int, help="retrain epochs of every net")
    p.add_argument("--random", type=int, help="uniform random nets per seed (arm R)")
    p.add_argument(
        "--retrain-seeds",
        type=int,
        nargs="*",
        default=[],
        help="more retrain seeds for both nets of every matched pair (gap of seed means)",
    )
    p.add_argument("--arch-lr", type=float, default=0.05, help="default 0.05")
    p.add_argument(
        "--retrain-lr",
        type=float,
        default=RETRAIN_LR,
        help=f"peak lr of every retrain (default {RETRAIN_LR}: the official 0.05 at batch 256, "
        "scaled to batch 64)",
    )
    p.add_argument("--min-gap", type=float, default=3.0, help="points (default 3)")
    p.add_argument("--max-spread", type=float, default=0.5, help="points (default 0.5)")
    p.add_argument("--force", action="store_true", help="go on when architecture does not matter")
    p.add_argument(
        "--skip-check", action="store_true", help="no step 1 (its verdict measured already)"
    )
    p.add_argument("--check-only", action="store_true", help="step 1 alone (its verdict, no arms)")
    p.add_argument("--out", type=Path, default=Path("runs/search_vs_random"))
    args = p.parse_args(argv)
    if args.check_only and args.skip_check:
        p.error("--check-only runs step 1 alone; --skip-check leaves it out")
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    report: dict[str, Any] = {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    }
    lut = profile_table(build_spec(args, None), args.out)
    spec = build_spec(args, lut)
    matters = args.skip_check
    if not args.skip_check:
        report["architecture_matters"] = ends = architecture_matters(spec, lut, args.seeds)
        gap, spread = ends["gap_points"], ends["seed_spread_points"]
        matters = gap >= args.min_gap and spread <= args.max_spread
        report["verdict"] = "architecture matters" if matters else (
            f"architecture does not matter beyond noise at this budget: floor-to-widest gap "
            f"{gap:.2f} points (needs ≥ {args.min_gap}), seed spread {spread:.2f} points "
            f"(needs ≤ {args.max_spread})"
        ) + (REVERSED if gap <= -args.min_gap else "")  # fmt: skip
    if (matters or args.force) and not args.check_only:
        from orchestrator.sweep import run_sweep

        outcome = run_sweep(spec)
        report["comparison"] = compare(outcome.rows, outcome.summary)
        if args.retrain_seeds:
            report["seed_means"] = reseeded_pairs(spec, outcome.rows, args.retrain_seeds, args.out)
        report["ranking"] = supernet_ranking(spec, lut, outcome.rows)
        report["search_diagnostics"] = search_diagnostics(outcome.run_dir, outcome.rows)
        figure = args.out / "search_vs_random.png"
        draw(outcome.rows, figure)
        report["figure"] = str(figure)
        report["searched_ops"] = {
            f"λ₂={r['lambda2']:g} seed {r['seed']}": r["ops"]
            for r in outcome.rows
            if r["kind"] == "search" and r["status"] == "done"
        }
    report["seconds"] = round(time.perf_counter() - started, 1)
    print_summary(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
