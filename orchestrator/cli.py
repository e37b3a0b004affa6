"""The `proxyless` command line: argument parsing at the edge, one handler per subcommand.

Every user mistake surfaces as a `ProxylessError` and becomes one line on stderr and exit code
2; nothing here keeps global state, and `main(argv)` can be called from tests.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from nas_core.config import AMP_MODES, ConfigModel
from nas_core.errors import ProxylessError
from nas_core.logs import cli_logging, get_logger

EXIT_USER_ERROR = 2
log = get_logger(__name__)


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so usage errors are one line and exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        command = self.prog.removeprefix("proxyless").strip()  # main() prints "proxyless: "
        raise ProxylessError(f"{command}: {message}" if command else message)


def _format_int(n: int) -> str:
    return f"{n:,}"


def _given(**flags: Any) -> dict[str, Any]:
    """The flags the user set: their argparse default is None, the config models hold the rest."""
    return {k: v for k, v in flags.items() if v is not None}


def _level(args: argparse.Namespace) -> int:
    """--verbose: DEBUG; --quiet, or --json (stdout is the JSON): WARNING; else INFO."""
    if args.verbose:
        return logging.DEBUG
    return logging.WARNING if args.quiet or getattr(args, "json", False) else logging.INFO


def _default(model: type[ConfigModel], field: str) -> str:
    """`default <value>` for a flag's help, read from the model that holds the default."""
    return f"default {model.model_fields[field].default}"


def cmd_arch_stats(args: argparse.Namespace) -> int:
    """Parameters and MACs of an architecture JSON or an official net.config; for an
    architecture, the op each layer chose (and its latency share, with --lut)."""
    from nas_core.arch_view import layer_rows
    from nas_core.architecture import load_network
    from nas_core.latency.table import LatencyTable
    from nas_core.stats import net_stats

    loaded = load_network(args.path, args.resolution)
    arch, resolution = loaded.arch, loaded.resolution
    if args.lut is not None and arch is None:
        raise ProxylessError("--lut prices the layers of an architecture JSON, not a net.config")
    stats = net_stats(loaded.net, resolution)
    out = {"path": str(args.path), **stats.to_config()}
    if arch is not None:
        out["space"] = arch.space.to_config()
        out["ops"] = list(arch.ops)
        table = None if args.lut is None else LatencyTable.load(args.lut)
        out["layers"] = layer_rows(arch, table)
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"{args.path}")
    if arch is not None:
        knobs = ", ".join(f"{k} {v}" for k, v in arch.space.to_config().items() if k != "name")
        print(f"  space       {arch.space.name} ({knobs})")
    print(f"  resolution  {resolution}")
    print(f"  params      {_format_int(stats.params)}")
    print(f"  MACs        {_format_int(stats.macs)}")
    if arch is not None:
        lat = " latency (share)" if args.lut else ""
        print(f"  {'layer':<24} {'input':>5} {'channels':>11} {'s':>1}  {'op':<14}{lat}")
        for r in out["layers"]:
            shape = f"{r['in_channels']}->{r['out_channels']}"
            line = f"  {r['layer']:<24} {r['input']:>5} {shape:>11} {r['stride']:>1}  {r['op']:<14}"
            if args.lut:
                share = r["latency_share"]
                line += f" {r['latency_ms']:.3f} ms" + (f" ({share:.0%})" if share else "")
            print(line)
    return 0


def cmd_arch_derive(args: argparse.Namespace) -> int:
    """Build a space's super-net, initialise α as the official code does, derive by argmax."""
    from nas_core.architecture import build_net
    from nas_core.sampling import Stream, step_generator
    from nas_core.stats import count_params, net_stats
    from nas_core.supernet import SuperNet

    space = _space_from_args(args)
    supernet = SuperNet(space)
    supernet.arch_state.init_normal_(step_generator(args.seed, 0, Stream.ALPHA_INIT))
    arch = supernet.derive()
    stats = net_stats(build_net(arch), space.resolution)
    if args.out:
        arch.save(args.out)
    summary = {
        "space": space.to_config(),
        "searchable_layers": len(supernet.specs),
        "candidates": sum(len(s.candidates) for s in supernet.specs),
        "supernet_params": count_params(supernet),
        "entropy_mean": float(supernet.arch_state.entropy().mean()),
        "ops": list(arch.ops),
        **stats.to_config(),
        "out": args.out,
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"super-net  {space.name} {json.dumps(space.to_config())}")
        layers, cands = summary["searchable_layers"], summary["candidates"]
        print(f"  searchable layers {layers}, candidate ops {cands}")
        print(f"  super-net params  {_format_int(summary['supernet_params'])}")
        print(f"derived architecture (argmax α, seed {args.seed})")
        for spec, op in zip(supernet.specs, arch.ops, strict=True):
            shape = f"{spec.in_channels:>4}->{spec.out_channels:<4} s{spec.stride}"
            print(f"  {spec.name:<22} {shape}  {op}")
        print(f"  params {_format_int(stats.params)}   MACs {_format_int(stats.macs)}")
        if args.out:
            print(f"wrote {args.out}")
    return 0


def _space_from_args(args: argparse.Namespace, default: dict | None = None):
    """The search space named by --space / --B / --F / --resolution / --classes."""
    from nas_core.spaces import SearchSpace

    config = dict(default or {"name": "mobilenet"})
    if args.space is not None and args.space != config.get("name"):
        config = {"name": args.space}  # another space: the default's knobs do not apply
    for key, value in (
        ("B", args.B),
        ("F", args.F),
        ("resolution", args.resolution),
        ("num_classes", args.classes),
        ("kernels", args.kernels),
        ("expands", args.expands),
        ("zero", args.zero),
        ("transition_op", args.transition_op),
        ("candidates", args.candidates),
    ):
        if value is not None:
            config[key] = value
    return SearchSpace.from_config(config)


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a comma-separated list of integers: {text!r}"
        ) from None


def _name_list(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def _add_space_args(parser: argparse.ArgumentParser, default: str | None = "mobilenet") -> None:
    parser.add_argument("--space", default=default, help="mobilenet or pyramid_tree")
    parser.add_argument(
        "--B",
        type=_number,
        default=None,
        help="blocks per stage (default: mobilenet 4, pyramid_tree 18)",
    )
    parser.add_argument(
        "--F",
        type=_number,
        default=None,
        help="width: mobilenet multiplier (default 1.0), pyramid_tree final width (400)",
    )
    parser.add_argument(
        "--resolution", type=int, default=None, help="input H = W (default: 224 / 32)"
    )
    parser.add_argument(
        "--classes", type=int, default=None, help="number of classes (default: 1000 / 10)"
    )
    parser.add_argument(
        "--kernels", type=_int_list, default=None, help="mobilenet MBConv kernels (default 3,5,7)"
    )
    parser.add_argument(
        "--expands",
        type=_int_list,
        default=None,
        help="mobilenet MBConv expand ratios (default 3,6)",
    )
    parser.add_argument(
        "--zero",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="mobilenet: offer Zero where a block has a shortcut (default yes)",
    )
    parser.add_argument(
        "--transition-op",
        default=None,
        help="mobilenet: fix each stage's first block to this op (default: searched)",
    )
    parser.add_argument(
        "--candidates",
        type=_name_list,
        default=None,
        help="pyramid_tree edge candidates, comma-separated (default: the paper's 7)",
    )


def _profile_config(args: argparse.Namespace, meta=None):
    from nas_core.latency.profiler import ProfileConfig

    measure = _given(warmup=args.warmup, repeats=args.repeats)
    if meta is not None:  # validate: measure exactly as the table was measured
        return ProfileConfig.matching(meta, **measure)
    return ProfileConfig.from_config(
        _given(
            device=args.device,
            threads=args.threads,
            batch_size=args.batch_size,
            cuda_timing=args.cuda_timing,
            **measure,
        )
    )


def cmd_latency_profile(args: argparse.Namespace) -> int:
    """Measure every latency-table entry a space needs on this device (resumable)."""
    from nas_core.latency.predictor import LatencyModel
    from nas_core.latency.profiler import profile_keys

    space = _space_from_args(args)
    config = _profile_config(args)
    keys = space.latency_layout().all_keys()
    table = profile_keys(
        keys, config, out=args.out, extra_meta={"space": space.to_config()},
        progress=not args.quiet,
    )  # fmt: skip
    table.save(args.out)
    uniform = LatencyModel(space, table).uniform()
    meta = table.meta
    plural = "s" if meta.threads != 1 else ""
    threads = f"{meta.threads} thread{plural}, " if meta.kind == "cpu" else ""
    print(
        f"{args.out}: {len(table)} entries on {meta.name} ({meta.kind}, {threads}"
        f"batch {meta.batch_size}, {meta.extra.get('timing')}); "
        f"uniform-α expected latency of {space.name} {uniform:.3f} ms"
    )
    return 0


def _fill_in(table, keys: list[str], lut: str, args: argparse.Namespace) -> None:
    """Profile the missing keys here, when the table was measured on this very device."""
    from nas_core.latency.profiler import ProfileConfig, profile_keys
    from nas_core.latency.table import DeviceMeta

    meta = table.meta
    if meta.kind not in ("cpu", "cuda"):
        raise ProxylessError(f"{lut}: --fill-in needs a table profiled here, not an imported one")
    local = DeviceMeta.local(meta.kind, meta.threads, meta.batch_size)
    if local.name != meta.name:
        raise ProxylessError(
            f"{lut}: --fill-in refused: the table is for {meta.name!r}, this device is "
            f"{local.name!r}"
        )
    missing = table.missing(keys)
    if missing:
        profile_keys(missing, ProfileConfig.matching(meta), table=table, progress=not args.json)
        table.save(lut)
        print(f"filled in {len(missing)} entries of {lut} on this device", file=sys.stderr)


def cmd_latency_predict(args: argparse.Namespace) -> int:
    """Latency of an architecture / net.config, or a space's expected latency at uniform α."""
    from nas_core.architecture import load_network
    from nas_core.latency.predictor import (
        LatencyModel,
        architecture_latency,
        net_config_keys,
        net_config_latency,
    )
    from nas_core.latency.table import LatencyTable

    table = LatencyTable.load(args.lut)
    out: dict = {"lut": str(args.lut), "device": table.meta.name}
    if args.path is not None:
        loaded = load_network(args.path, args.resolution)
        net, resolution, arch = loaded.net, loaded.resolution, loaded.arch
        if arch is not None:
            if args.fill_in:
                layout = arch.space.latency_layout()
                _fill_in(table, layout.all_keys(), args.lut, args)
            latency = architecture_latency(arch, table)
        else:
            config = net.to_config()  # every field written out, defaults included
            if args.fill_in:
                _fill_in(table, net_config_keys(config, resolution), args.lut, args)
            latency = net_config_latency(config, table, resolution)
        out.update(path=str(args.path), resolution=resolution)
    else:
        recorded = table.meta.extra.get("space")  # a profiled table knows its space
        if args.space is None and recorded is None:
            raise ProxylessError(
                f"{args.lut} records no space: give an architecture PATH or --space to predict"
            )
        space = _space_from_args(args, default=recorded)
        if args.fill_in:
            _fill_in(table, space.latency_layout().all_keys(), args.lut, args)
        latency = LatencyModel(space, table).uniform()
        out.update(space=space.to_config(), alpha="uniform")
    out["latency_ms"] = latency
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{latency:.3f} ms  ({out.get('path') or out['space']['name'] + ' at uniform α'})")
    return 0


def cmd_latency_validate(args: argparse.Namespace) -> int:
    """End-to-end latency of random nets here vs the table: MAPE, RMSE, Spearman; with
    --calibrate, fit the whole-net correction on those nets and store it in the table. The nets
    span the space's latency range (`random_architectures(spread=True)`): uniform draws bunch
    around the mean, where noise decides their order and slope and offset blur."""
    from pathlib import Path

    from nas_core.latency.predictor import architecture_latency
    from nas_core.latency.table import DeviceMeta, LatencyTable
    from nas_core.latency.validate import (
        fit_calibration,
        measure,
        random_architectures,
        save_figure,
        score,
    )

    if args.samples < 2:
        raise ProxylessError(f"--samples must be >= 2, got {args.samples}")
    table = LatencyTable.load(args.lut)
    meta = table.meta
    if meta.kind not in ("cpu", "cuda"):
        raise ProxylessError(f"{args.lut}: validate needs a table profiled on this device")
    local = DeviceMeta.local(meta.kind, meta.threads, meta.batch_size)
    if local.name != meta.name:
        raise ProxylessError(
            f"{args.lut}: measured on {meta.name!r}; validate it there (this is {local.name!r})"
        )
    space = _space_from_args(args, default=meta.extra.get("space"))
    figure = args.figure or str(Path(args.lut).with_suffix("")) + ".validation.png"
    archs = random_architectures(space, args.samples, args.seed, spread=True)
    plain = table.with_calibration(None)
    sums = [architecture_latency(a, plain) for a in archs]  # fails fast on missing keys
    measured = measure(archs, _profile_config(args, meta))
    result = score([architecture_latency(a, table) for a in archs], measured)
    summary: dict[str, Any] = {**result.summary(), "calibration": meta.calibration or None}
    if args.calibrate:
        calibration = fit_calibration(sums, measured)
        table = table.with_calibration(calibration)
        table.save(args.lut)
        result = score([architecture_latency(a, table) for a in archs], measured)
        summary.update(
            {"uncalibrated": score(sums, measured).summary(), **result.summary()},
            calibration=calibration,
        )
    save_figure(result, figure, f"{meta.name} ({meta.kind})")
    summary.update(figure=figure, space=space.to_config())
    if args.json:
        print(json.dumps(summary))
        return 0
    print(
        f"{args.samples} random {space.name} nets on {meta.name}: MAPE {result.mape:.2f} %, "
        f"RMSE {result.rmse_ms:.3f} ms, Spearman {result.spearman:.3f}; figure {figure}"
    )
    if args.calibrate:
        before = summary["uncalibrated"]
        print(
            f"calibrated {args.lut}: latency = {calibration['scale']:.4f} x sum of entries "
            f"{calibration['offset_ms']:+.4f} ms (MAPE {before['mape']:.2f} % before, fitted "
            "on these nets: validate again with another --seed for a held-out figure)"
        )
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    """One single-process ProxylessNAS search from a YAML config."""
    from nas_core.search import SearchConfig, Searcher, load_search_config, with_overrides

    config = load_search_config(args.config) if args.config else SearchConfig()
    out = args.out
    if args.resume:  # `--resume DIR`, as in `sweep --resume RUN_DIR`: continue that folder
        if out is not None and out != args.resume:
            raise ProxylessError(f"--resume {args.resume} and --out {out} name two folders")
        out = args.resume
    config = with_overrides(
        config,
        out_dir=out,
        lut=args.lut,
        seed=args.seed,
        epochs=args.epochs,
        device=args.device,
        amp=args.amp,
    )
    total = config.warmup_epochs + config.epochs

    def progress(epoch: int, m: dict) -> None:
        lat = m.get("latency/expected_ms")
        lat_text = f"  E[lat] {lat:.3f} ms" if lat is not None else ""
        log.info(
            f"epoch {epoch + 1}/{total}{' (warm-up)' if m['warmup'] else ''}  "
            f"train acc {m['train/accuracy']:.3f}  valid acc {m['valid/accuracy']:.3f}  "
            f"entropy {m['arch/entropy_mean']:.3f}{lat_text}"
        )

    if args.workers is None and args.gpus_per_worker is not None:
        raise ProxylessError("--gpus-per-worker applies to --workers (Ray Train) searches only")
    if args.workers is not None:
        if args.workers < 1:
            raise ProxylessError(f"--workers must be >= 1, got {args.workers}")
        from cluster.resources import check_gpu_request
        from cluster.search import run_search

        gpus = args.gpus_per_worker
        if gpus is None:  # a whole GPU per worker for a CUDA search, none for a CPU one
            gpus = 1.0 if config.device.startswith("cuda") else 0.0
        check_gpu_request(config.device, args.workers, gpus, "--gpus-per-worker")
        result = run_search(
            config, args.workers, use_gpu=gpus > 0, address=args.address, gpus_per_worker=gpus
        )
    else:
        try:
            searcher = Searcher.from_config(config)  # data, space, table: config mistakes here
        except ProxylessError as e:
            if args.config is None or str(args.config) in str(e):
                raise
            raise ProxylessError(f"{args.config}: {e}") from None
        result = searcher.run(resume=args.resume is not None, on_epoch_end=progress)
    summary = {**result.summary(), "out_dir": config.out_dir}
    if args.json:
        print(json.dumps(summary))
    else:
        out = Path(config.out_dir)
        print(f"derived architecture: {out / 'architecture.json'}")
        print(f"  ops        {', '.join(result.architecture.ops)}")
        if result.latency_ms is not None:
            print(f"  latency    {result.latency_ms:.3f} ms (table)")
        print(f"  params     {_format_int(result.params)}   MACs {_format_int(result.macs)}")
        print(f"  valid acc  {result.valid_accuracy:.4f}")
        print(f"TensorBoard: tensorboard --logdir {out / 'tensorboard'}")
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    """Train a derived architecture from scratch and report what it costs and scores."""
    from nas_core.architecture import Architecture
    from nas_core.retrain import RetrainConfig, retrain

    arch = Architecture.load(args.arch)
    data = _given(
        dataset=args.dataset,
        data_dir=args.data_dir,
        download=args.download,
        resolution=arch.space.resolution,
    )
    config = RetrainConfig.from_config(
        _given(
            data=data,
            epochs=args.epochs,
            lr=args.lr,
            batch_size=args.batch_size,
            seed=args.seed,
            device=args.device,
            amp=args.amp,
            channels_last=args.channels_last,
            compile=args.compile,
            lut=args.lut,
        )
    )
    result = retrain(arch, config, out_dir=args.out)
    summary = result.summary()
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{args.arch} retrained {config.epochs} epochs on {config.data.dataset}")
        print(f"  test accuracy   {result.test_accuracy:.4f}")
        print(f"  params          {_format_int(result.params)}   MACs {_format_int(result.macs)}")
        if result.latency_table_ms is not None:
            print(f"  latency (table) {result.latency_table_ms:.3f} ms")
        if result.latency_measured_ms is not None:
            how = "1 CPU thread, batch 1" if config.device == "cpu" else f"{config.device}, batch 8"
            print(f"  latency (here)  {result.latency_measured_ms:.3f} ms ({how})")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """Search trials, retrain trials and the Pareto front, as two Ray Tune runs."""
    from cluster.search import cluster_address
    from orchestrator.report import front_text
    from orchestrator.storage import RunStorage, split_run_location
    from orchestrator.sweep import run_sweep
    from orchestrator.sweep_spec import demo_spec, load_sweep_spec

    if args.resume:
        if args.config:
            raise ProxylessError("--resume takes its spec from RUN_DIR/sweep.yaml; drop --config")
        storage_path, name = split_run_location(args.resume)
        store = RunStorage(storage_path, name)
        if not store.exists("sweep.yaml"):
            raise ProxylessError(f"{store.url()}: no sweep to resume (no sweep.yaml in it)")
        store.pull("sweep.yaml")
        spec = load_sweep_spec(store.work_dir / "sweep.yaml").with_name(name, storage_path)
    else:
        spec = load_sweep_spec(args.config) if args.config else demo_spec()
        spec = spec.with_name(args.name, args.storage_path)
    if cluster_address(args.address) is not None:  # named in the file's terms, before Ray
        try:
            spec.resources.require_concurrency()
        except ProxylessError as e:
            where = args.config or (f"{args.resume}/sweep.yaml" if args.resume else "demo spec")
            raise ProxylessError(f"{where}: {e}") from None
    outcome = run_sweep(spec, address=args.address, resume=bool(args.resume), verbose=args.verbose)
    run_dir, summary = outcome.location, outcome.summary
    kinds = ("search", "retrain", "random")  # random: the baseline's nets
    counts = {k: sum(r["kind"] == k for r in outcome.rows) for k in kinds}
    failed = [r for r in outcome.rows if r["status"] in ("failed", "error")]
    if args.json:
        print(
            json.dumps(
                {
                    "run_dir": run_dir,
                    **summary,
                    "trials": counts,
                    "failed": len(failed),
                    "interrupted": outcome.interrupted,
                }
            )
        )
    else:
        for r in failed:
            print(f"{r['kind']} trial {r['trial_id']} {r['status']}: {r['error']}")
        if summary["trials"]:
            fronts = len(summary["devices"])
            print(f"\nPareto front{'s' if fronts > 1 else ''}, fastest first:")
            print(front_text(summary))
        print(f"\nresults: {run_dir}/results.parquet  (figure {run_dir}/pareto.png)")
        print(f"TensorBoard: tensorboard --logdir {run_dir}/tensorboard")
    if outcome.interrupted:
        print(
            f"proxyless: sweep interrupted; continue with: proxyless sweep --resume {run_dir}",
            file=sys.stderr,
        )
        return 130
    return 0


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
        keys = (
            "lambda2",
            "B",
            "F",
            "seed",
            "test_accuracy",
            "latency_table_ms",
            "latency_measured_ms",
        )
        front = [
            {
                "net": net_name(r),
                "retrain_trial_id": r["trial_id"],
                **{k: r[k] for k in (*keys, "params", "macs", "architecture_path", "weights")},
            }
            for r in front_rows(rows, latency)
        ]
        print(json.dumps({**summary, "rows": front, "figure": str(run_dir / "pareto.png")}))
    else:
        print(front_text(summary))
        print(f"figure {run_dir / 'pareto.png'}")
    return 0


def _load_net_arg(args: argparse.Namespace, tmp: str) -> Any:
    """The `net` file of export / evaluate (a path or storage URI), at --resolution if given."""
    from nas_core.architecture import load_network
    from orchestrator.storage import fetch_to_local

    return load_network(fetch_to_local(args.net, Path(tmp) / "net"), args.resolution)


def cmd_export(args: argparse.Namespace) -> int:
    """Write an architecture JSON or official net.config as ONNX, TorchScript or net.config."""
    from nas_core.latency.table import LatencyTable
    from orchestrator.export import deployment_facts, export
    from orchestrator.storage import fetch_to_local

    if (args.dataset or args.lut) and args.format != "onnx":
        raise ProxylessError(
            f"export: --dataset and --lut go into ONNX metadata; {args.format} has none"
        )
    table = LatencyTable.load(args.lut) if args.lut else None
    with tempfile.TemporaryDirectory() as tmp:  # both may be storage URIs (s3://, file://)
        loaded = _load_net_arg(args, tmp)
        weights = fetch_to_local(args.weights, Path(tmp) / "weights") if args.weights else None
        facts = deployment_facts(loaded.net, loaded.arch, loaded.resolution, args.dataset, table)
        path = export(
            loaded.net, loaded.resolution, args.format, args.out, weights=weights, facts=facts
        )
    if args.json:
        print(
            json.dumps({"out": str(path), "format": args.format, "resolution": loaded.resolution})
        )
    else:
        print(f"wrote {path} ({args.format})")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Top-1, top-5, loss and images/s of a trained net on a dataset's evaluation split."""
    from nas_core.device import resolve_device
    from nas_core.evaluation import evaluate_net, parse_data
    from nas_core.weights import load_weights_file
    from orchestrator.storage import fetch_to_local

    if args.batch_size < 1:
        raise ProxylessError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.workers is not None and args.workers < 0:
        raise ProxylessError(f"--workers must be >= 0, got {args.workers}")
    parse_data(args.data, 32)  # a malformed --data before any large file is read
    device = resolve_device(args.device, "--device")
    with tempfile.TemporaryDirectory() as tmp:  # both may be storage URIs (s3://, file://)
        loaded = _load_net_arg(args, tmp)
        load_weights_file(loaded.net, fetch_to_local(args.weights, Path(tmp) / "weights"))
    data = parse_data(args.data, loaded.resolution)
    result = evaluate_net(loaded.net, data, device, args.batch_size, args.workers)
    summary = {
        "net": str(args.net),
        "weights": str(args.weights),
        "data": args.data,
        "resolution": loaded.resolution,
        "device": str(device),
        **result.to_config(),
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{args.net} on {args.data} at {loaded.resolution} px ({result.images} images)")
        print(f"  top-1  {result.top1:.4f}   top-5  {result.top5:.4f}   loss  {result.loss:.4f}")
        print(f"  {result.images_per_s:,.0f} images/s end to end on {device}")
    return 0


def _version() -> str:
    """The installed package's version (a source checkout run in place has none)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("proxyless-tune")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _add_net_args(parser: argparse.ArgumentParser, weights: str, required: bool = False) -> None:
    """What export and evaluate both take: the net file, its weights and resolution, --json."""
    parser.add_argument("net", help="architecture JSON or net.config (ours or official)")
    parser.add_argument(
        "--weights",
        required=required,
        default=None,
        help=f"{weights}: a retrain's weights.pt or an official .pth (state_dict layouts)",
    )
    parser.add_argument(
        "--resolution", type=int, default=None, help="input H = W (default: the file's; 224/32)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")


def _number(text: str) -> int | float:
    """An int when the text is one (B, F of pyramid_tree), else a float (F of mobilenet)."""
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    from nas_core.data import DataConfig  # flags' defaults come from the models
    from nas_core.latency.profiler import ProfileConfig
    from nas_core.retrain import RetrainConfig

    parser = _Parser(prog="proxyless", description="ProxylessNAS architecture search on Ray.")
    parser.add_argument("--version", action="version", version=f"proxyless {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    # every command's own logging level (and, for a sweep, the Ray workers' output)
    levels = argparse.ArgumentParser(add_help=False)
    loudness = levels.add_mutually_exclusive_group()
    loudness.add_argument(
        "-v", "--verbose", action="store_true", help="debug lines (a sweep: Ray workers' logs)"
    )
    loudness.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")

    arch_cmd = sub.add_parser("arch", help="inspect and derive architectures")
    arch_sub = arch_cmd.add_subparsers(dest="arch_command", required=True, parser_class=_Parser)

    stats = arch_sub.add_parser(
        "stats", parents=[levels], help="params and MACs of an architecture or net.config"
    )
    stats.add_argument("path", help="architecture JSON or official net.config")
    stats.add_argument("--resolution", type=int, default=None, help="input H = W")
    stats.add_argument(
        "--lut", default=None, help="latency table: each layer's op latency and share"
    )
    stats.add_argument("--json", action="store_true", help="one JSON object on stdout")
    stats.set_defaults(handler=cmd_arch_stats)

    derive = arch_sub.add_parser(
        "derive", parents=[levels], help="build a super-net and derive an architecture"
    )
    _add_space_args(derive)
    derive.add_argument("--seed", type=int, default=0, help="seed of the α draw (default 0)")
    derive.add_argument("--out", default=None, help="write the architecture JSON here")
    derive.add_argument("--json", action="store_true", help="one JSON object on stdout")
    derive.set_defaults(handler=cmd_arch_derive)

    search = sub.add_parser(
        "search",
        parents=[levels],
        help="run one architecture search (one process, or --workers K on Ray Train)",
    )
    search.add_argument("--config", default=None, help="search YAML (default: the digits demo)")
    search.add_argument("--out", default=None, help="output folder (overrides out_dir)")
    search.add_argument("--lut", default=None, help="latency table (overrides lut)")
    search.add_argument("--epochs", type=int, default=None, help="search epochs after warm-up")
    search.add_argument("--seed", type=int, default=None, help="overrides seed (default 0)")
    search.add_argument("--device", default=None, help="cpu, cuda or cuda:N (overrides device)")
    search.add_argument("--amp", choices=AMP_MODES, default=None, help="weight-step precision")
    search.add_argument(
        "--resume",
        nargs="?",
        const="",
        default=None,
        metavar="OUT_DIR",
        help="continue from a checkpoint: OUT_DIR's, or (bare) the config's out_dir",
    )
    search.add_argument("--json", action="store_true", help="one JSON summary on stdout")
    search.add_argument(
        "--workers",
        type=int,
        default=None,
        help="K Ray Train workers, one path synchronised per step (default: this process)",
    )
    search.add_argument("--gpus-per-worker", type=float, default=None, help="GPUs per worker")
    search.add_argument(
        "--address",
        default=None,
        help="Ray cluster (host:port); default RAY_ADDRESS, else a new local Ray on 127.0.0.1",
    )
    search.set_defaults(handler=cmd_search)

    retrain_cmd = sub.add_parser(
        "retrain", parents=[levels], help="train a derived architecture from scratch"
    )
    retrain_cmd.add_argument("arch", help="architecture JSON")
    retrain_cmd.add_argument(
        "--dataset",
        default=None,
        help=f"digits, fashion_mnist, cifar10 or imagefolder ({_default(DataConfig, 'dataset')})",
    )
    retrain_cmd.add_argument(
        "--data-dir",
        default=None,
        help="cifar10 / imagefolder root; fashion_mnist's IDX folder (default: Debian's)",
    )
    retrain_cmd.add_argument("--download", action="store_true", help="cifar10: allow downloading")
    retrain_cmd.add_argument(
        "--epochs", type=int, default=None, help=_default(RetrainConfig, "epochs")
    )
    retrain_cmd.add_argument("--lr", type=float, default=None, help=_default(RetrainConfig, "lr"))
    retrain_cmd.add_argument(
        "--batch-size", type=int, default=None, help=_default(RetrainConfig, "batch_size")
    )
    retrain_cmd.add_argument("--seed", type=int, default=None, help=_default(RetrainConfig, "seed"))
    retrain_cmd.add_argument(
        "--device",
        default=None,
        help=f"cpu, cuda or cuda:N: trains and times ({_default(RetrainConfig, 'device')})",
    )
    retrain_cmd.add_argument(
        "--amp",
        choices=AMP_MODES,
        default=None,
        help=f"mixed precision ({_default(RetrainConfig, 'amp')})",
    )
    retrain_cmd.add_argument("--channels-last", action="store_true", help="NHWC memory format")
    retrain_cmd.add_argument(
        "--compile", action="store_true", help="torch.compile the net for training"
    )
    retrain_cmd.add_argument("--lut", default=None, help="latency table to price the net")
    retrain_cmd.add_argument("--out", default=None, help="folder for weights and retrain.json")
    retrain_cmd.add_argument("--json", action="store_true", help="one JSON summary on stdout")
    retrain_cmd.set_defaults(handler=cmd_retrain)

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
    sweep.add_argument(
        "--address",
        default=None,
        help="Ray cluster (host:port); default RAY_ADDRESS, else a new local Ray on 127.0.0.1",
    )
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

    exp = sub.add_parser(
        "export", parents=[levels], help="ONNX, TorchScript or official net.config"
    )
    _add_net_args(exp, "trained weights")
    exp.add_argument(
        "--format",
        required=True,
        choices=["onnx", "torchscript", "net-config"],
        help="onnx, torchscript or net-config (the official JSON)",
    )
    exp.add_argument("--out", required=True, help="file to write")
    exp.add_argument(
        "--dataset",
        choices=["digits", "fashion_mnist", "cifar10", "imagefolder"],
        default=None,
        help="ONNX: record the input mean / std the net was trained with (default: none)",
    )
    exp.add_argument(
        "--lut", default=None, help="ONNX: record the net's latency on this table (default: none)"
    )
    exp.set_defaults(handler=cmd_export)

    ev = sub.add_parser(
        "evaluate", parents=[levels], help="top-1 / top-5 of a trained net on a dataset"
    )
    _add_net_args(ev, "the weights to score", required=True)
    ev.add_argument(
        "--data",
        default="digits",
        help="digits, fashion_mnist[:DIR] or cifar10:DIR (their test splits), or "
        "imagefolder:DIR (DIR/val, else DIR; photos: resize to r/0.875, centre crop r; images "
        "under 64 px: whole, at r; ImageNet mean/std); default digits",
    )
    ev.add_argument("--batch-size", type=int, default=100, help="default 100")
    ev.add_argument(
        "--workers",
        type=int,
        default=None,
        help="loader processes (default: 0 for digits, else up to 8)",
    )
    ev.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    ev.set_defaults(handler=cmd_evaluate)

    latency = sub.add_parser("latency", help="latency tables: profile, predict, validate")
    lat_sub = latency.add_subparsers(dest="latency_command", required=True, parser_class=_Parser)

    def measure_args(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--warmup",
            type=int,
            default=None,
            help=f"untimed runs per entry ({_default(ProfileConfig, 'warmup')})",
        )
        p.add_argument(
            "--repeats",
            type=int,
            default=None,
            help=f"timed runs per entry ({_default(ProfileConfig, 'repeats')})",
        )

    profile = lat_sub.add_parser(
        "profile", parents=[levels], help="measure a space's table on this device"
    )
    _add_space_args(profile)
    profile.add_argument(
        "--device", default=None, help=f"cpu, cuda or cuda:N ({_default(ProfileConfig, 'device')})"
    )
    profile.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    profile.add_argument(
        "--batch-size", type=int, default=None, help="default 8 on CUDA (the paper's), 1 on CPU"
    )
    profile.add_argument(
        "--cuda-timing",
        choices=["graph", "events"],
        default=None,
        help="CUDA: replayed CUDA graphs (the GPU's time) or eager forwards between events",
    )
    measure_args(profile)
    profile.add_argument("--out", required=True, help="table to write (.parquet or .yaml)")
    profile.set_defaults(handler=cmd_latency_profile)

    predict = lat_sub.add_parser(
        "predict", parents=[levels], help="latency of an architecture or a space"
    )
    predict.add_argument("path", nargs="?", default=None, help="architecture JSON or net.config")
    predict.add_argument("--lut", required=True, help="latency table (.parquet or official .yaml)")
    _add_space_args(predict, default=None)
    predict.add_argument("--fill-in", action="store_true", help="profile missing entries here")
    predict.add_argument("--json", action="store_true", help="one JSON object on stdout")
    predict.set_defaults(handler=cmd_latency_predict)

    validate = lat_sub.add_parser(
        "validate", parents=[levels], help="table vs measured end-to-end latency"
    )
    validate.add_argument("--lut", required=True, help="latency table to validate")
    validate.add_argument(
        "--samples",
        type=int,
        default=20,
        help="random nets measured whole, spread across the space's latency range (default 20)",
    )
    _add_space_args(validate, default=None)
    validate.add_argument("--seed", type=int, default=0, help="seed of the nets (default 0)")
    validate.add_argument("--figure", default=None, help="predicted-vs-measured PNG")
    validate.add_argument(
        "--calibrate",
        action="store_true",
        help="fit latency = a x sum + b on these nets and store it in the table",
    )
    measure_args(validate)
    validate.add_argument("--json", action="store_true", help="one JSON object on stdout")
    validate.set_defaults(handler=cmd_latency_validate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        handler: Callable[[argparse.Namespace], int] = args.handler
        with cli_logging(_level(args)):
            return handler(args)
    except ProxylessError as e:
        keys = getattr(e, "keys", None)
        if keys:  # missing latency entries: one per line, in the table's own key format
            head = str(e).split(": ", 1)[0]
            print(f"proxyless: error: {head}:", *keys, sep="\n", file=sys.stderr)
        else:
            print(f"proxyless: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("proxyless: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
