"""`proxyless sweep` and `proxyless pareto`: the Ray Tune sweep, and its front redrawn."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from nas_core.errors import ProxylessError
from orchestrator.cli.run import ADDRESS_HELP

KINDS = ("search", "retrain", "random")  # a sweep's rows; random: the baseline's nets
FRONT_KEYS = ("lambda2", "B", "F", "seed", "test_accuracy", "latency_table_ms",
              "latency_measured_ms", "params", "macs", "architecture_path", "weights")  # fmt: skip


def _sweep_spec(args: argparse.Namespace) -> Any:
    """The spec to run: RUN_DIR/sweep.yaml for --resume, else --config's or the demo's."""
    from orchestrator.storage import RunStorage, split_run_location
    from orchestrator.sweep_spec import demo_spec, load_sweep_spec

    if not args.resume:
        spec = load_sweep_spec(args.config) if args.config else demo_spec()
        return spec.with_name(args.name, args.storage_path)
    if args.config:
        raise ProxylessError("--resume takes its spec from RUN_DIR/sweep.yaml; drop --config")
    storage_path, name = split_run_location(args.resume)
    store = RunStorage(storage_path, name)
    if not store.exists("sweep.yaml"):
        raise ProxylessError(f"{store.url()}: no sweep to resume (no sweep.yaml in it)")
    store.pull("sweep.yaml")
    return load_sweep_spec(store.work_dir / "sweep.yaml").with_name(name, storage_path)


def cmd_sweep(args: argparse.Namespace) -> int:
    """Search trials, retrain trials and the Pareto front, as two Ray Tune runs."""
    from cluster.connect import cluster_address
    from orchestrator.sweep import run_sweep

    spec = _sweep_spec(args)
    if cluster_address(args.address) is not None:  # named in the file's terms, before Ray
        try:
            spec.resources.require_concurrency()
        except ProxylessError as e:
            where = args.config or (f"{args.resume}/sweep.yaml" if args.resume else "demo spec")
            raise ProxylessError(f"{where}: {e}") from None
    outcome = run_sweep(spec, address=args.address, resume=bool(args.resume), verbose=args.verbose)
    print(json.dumps(sweep_json(outcome)) if args.json else sweep_text(outcome))
    if outcome.interrupted:
        print(
            f"proxyless: sweep interrupted; continue with: proxyless sweep --resume "
            f"{outcome.location}",
            file=sys.stderr,
        )
        return 130
    if not outcome.summary["trials"]:
        print(
            f"proxyless: no net was retrained, so there is no front (each failed trial's reason "
            f"is in {outcome.location}/results.parquet)",
            file=sys.stderr,
        )
        return 1  # a script or CI job that runs the sweep sees it produced nothing
    return 0


def _failed(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r["status"] in ("failed", "error")]


def sweep_json(outcome: Any) -> dict[str, Any]:
    """`sweep --json`: the summary, trial counts by kind, failures and whether it finished."""
    return {
        "run_dir": outcome.location,
        **outcome.summary,
        "trials": {k: sum(r["kind"] == k for r in outcome.rows) for k in KINDS},
        "failed": len(_failed(outcome.rows)),
        "interrupted": outcome.interrupted,
    }


def sweep_text(outcome: Any) -> str:
    """`sweep` for a reader: failed trials, the fronts, and where results and TensorBoard are."""
    from orchestrator.report import front_text

    run_dir, summary = outcome.location, outcome.summary
    lines = [
        f"{r['kind']} trial {r['trial_id']} {r['status']}: {r['error']}"
        for r in _failed(outcome.rows)
    ]
    if summary["trials"]:
        fronts = len(summary["devices"])
        lines.append(f"\nPareto front{'s' if fronts > 1 else ''}, fastest first:")
        lines.append(front_text(summary))
    lines.append(f"\nresults: {run_dir}/results.parquet  (figure {run_dir}/pareto.png)")
    lines.append(f"TensorBoard: tensorboard --logdir {run_dir}/tensorboard")
    return "\n".join(lines)


def cmd_pareto(args: argparse.Namespace) -> int:
    """Recompute and redraw the front of a finished (or partial) sweep from results.parquet."""
    from orchestrator.fronts import front_rows, mark_pareto, net_name
    from orchestrator.report import front_text, publish
    from orchestrator.results import read_results

    run_dir = Path(args.run_dir)
    rows = read_results(run_dir / "results.parquet")
    latency, references = args.latency, {}
    spec_file = run_dir / "sweep.yaml"
    if spec_file.exists():  # the sweep's own choices, unless a flag says otherwise
        from orchestrator.sweep_spec import load_sweep_spec

        spec = load_sweep_spec(spec_file)
        latency, references = latency or spec.pareto_latency, spec.pareto_reference
    latency = latency or "table"
    summary = mark_pareto(rows, latency, references)
    if not summary["trials"]:
        raise ProxylessError(f"{run_dir}: no finished retrain trial to put on a front")
    publish(run_dir, rows, summary)  # the flags, summary.json and every rendering agree
    if args.json:
        front = [
            {"net": net_name(r), "retrain_trial_id": r["trial_id"], **{k: r[k] for k in FRONT_KEYS}}
            for r in front_rows(rows, latency)
        ]
        print(json.dumps({**summary, "rows": front, "figure": str(run_dir / "pareto.png")}))
    else:
        print(front_text(summary))
        print(f"figure {run_dir / 'pareto.png'}")
    return 0


def add_parsers(sub: Any, levels: argparse.ArgumentParser) -> None:
    """`sweep` and `pareto`."""
    sweep = sub.add_parser(
        "sweep", parents=[levels], help="sweep λ₂ and B/F, retrain, Pareto front (Ray Tune)"
    )
    sweep.add_argument("--config", default=None, help="sweep YAML (default: the digits demo)")
    sweep.add_argument("--name", default=None, help="run name (folder under storage_path)")
    sweep.add_argument(
        "--storage-path", default=None, help="where run folders go: a path or s3://, gs://, file://"
    )
    sweep.add_argument(
        "--resume", default=None, metavar="RUN_DIR", help="continue a sweep (path or URI)"
    )
    sweep.add_argument("--address", default=None, help=ADDRESS_HELP)
    sweep.add_argument("--json", action="store_true", help="one JSON summary on stdout")
    sweep.set_defaults(handler=cmd_sweep)

    pareto = sub.add_parser("pareto", parents=[levels], help="redraw the Pareto front of a sweep")
    pareto.add_argument("run_dir", help="the sweep's run folder (holds results.parquet)")
    pareto.add_argument(
        "--latency",
        choices=["table", "measured"],
        default=None,
        help="which latency the front uses (default: the sweep spec's)",
    )
    pareto.add_argument("--json", action="store_true", help="the front as JSON on stdout")
    pareto.set_defaults(handler=cmd_pareto)
