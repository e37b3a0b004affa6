"""`proxyless latency profile | predict | validate`: a device's table, what it predicts, and
how well."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from nas_core.errors import ProxylessError
from orchestrator.cli.args import Parser, add_space_args, default, given, space_from_args


def _profile_config(args: argparse.Namespace, meta: Any = None) -> Any:
    from nas_core.latency.profiler import ProfileConfig

    measure = given(warmup=args.warmup, repeats=args.repeats)
    if meta is not None:  # validate: measure exactly as the table was measured
        return ProfileConfig.matching(meta, **measure)
    return ProfileConfig.from_config(
        given(
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

    space = space_from_args(args)
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


def _fill_in(table: Any, keys: list[str], lut: str, quiet: bool) -> None:
    """Profile the missing keys here, when the table was measured on this very device."""
    from nas_core.latency.profiler import ProfileConfig, profile_keys

    table.meta.require_here(lut, "--fill-in")
    missing = table.missing(keys)
    if missing:
        profile_keys(missing, ProfileConfig.matching(table.meta), table=table, progress=not quiet)
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
                _fill_in(table, arch.space.latency_layout().all_keys(), args.lut, args.json)
            latency = architecture_latency(arch, table)
        else:
            config = net.to_config()  # every field written out, defaults included
            if args.fill_in:
                _fill_in(table, net_config_keys(config, resolution), args.lut, args.json)
            latency = net_config_latency(config, table, resolution)
        out.update(path=str(args.path), resolution=resolution)
    else:
        recorded = table.meta.extra.get("space")  # a profiled table knows its space
        if args.space is None and recorded is None:
            raise ProxylessError(
                f"{args.lut} records no space: give an architecture PATH or --space to predict"
            )
        space = space_from_args(args, default=recorded)
        if args.fill_in:
            _fill_in(table, space.latency_layout().all_keys(), args.lut, args.json)
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
    from nas_core.latency.predictor import architecture_latency
    from nas_core.latency.table import LatencyTable
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
    meta.require_here(args.lut, "validate")
    space = space_from_args(args, default=meta.extra.get("space"))
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
    print(json.dumps(summary) if args.json else validate_text(summary, args, space.name, meta))
    return 0


def validate_text(summary: dict[str, Any], args: argparse.Namespace, space: str, meta) -> str:
    """`latency validate` for a reader: the scores, and what --calibrate stored."""
    text = (
        f"{args.samples} random {space} nets on {meta.name}: MAPE {summary['mape']:.2f} %, "
        f"RMSE {summary['rmse_ms']:.3f} ms, Spearman {summary['spearman']:.3f}; "
        f"figure {summary['figure']}"
    )
    if args.calibrate:
        cal, before = summary["calibration"], summary["uncalibrated"]
        text += (
            f"\ncalibrated {args.lut}: latency = {cal['scale']:.4f} x sum of entries "
            f"{cal['offset_ms']:+.4f} ms (MAPE {before['mape']:.2f} % before, fitted "
            "on these nets: validate again with another --seed for a held-out figure)"
        )
    return text


def _measure_args(p: argparse.ArgumentParser) -> None:
    from nas_core.latency.profiler import ProfileConfig

    p.add_argument(
        "--warmup",
        type=int,
        default=None,
        help=f"untimed runs per entry ({default(ProfileConfig, 'warmup')})",
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=None,
        help=f"timed runs per entry ({default(ProfileConfig, 'repeats')})",
    )


def add_parsers(sub: Any, levels: argparse.ArgumentParser) -> None:
    """`latency profile`, `latency predict` and `latency validate`."""
    from nas_core.latency.profiler import ProfileConfig

    latency = sub.add_parser("latency", help="latency tables: profile, predict, validate")
    lat_sub = latency.add_subparsers(dest="latency_command", required=True, parser_class=Parser)

    profile = lat_sub.add_parser(
        "profile", parents=[levels], help="measure a space's table on this device"
    )
    add_space_args(profile)
    profile.add_argument(
        "--device", default=None, help=f"cpu, cuda or cuda:N ({default(ProfileConfig, 'device')})"
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
    _measure_args(profile)
    profile.add_argument("--out", required=True, help="table to write (.parquet or .yaml)")
    profile.set_defaults(handler=cmd_latency_profile)

    predict = lat_sub.add_parser(
        "predict", parents=[levels], help="latency of an architecture or a space"
    )
    predict.add_argument("path", nargs="?", default=None, help="architecture JSON or net.config")
    predict.add_argument("--lut", required=True, help="latency table (.parquet or official .yaml)")
    add_space_args(predict, default=None)
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
    add_space_args(validate, default=None)
    validate.add_argument("--seed", type=int, default=0, help="seed of the nets (default 0)")
    validate.add_argument("--figure", default=None, help="predicted-vs-measured PNG")
    validate.add_argument(
        "--calibrate",
        action="store_true",
        help="fit latency = a x sum + b on these nets and store it in the table",
    )
    _measure_args(validate)
    validate.add_argument("--json", action="store_true", help="one JSON object on stdout")
    validate.set_defaults(handler=cmd_latency_validate)
