"""`proxyless export` and `proxyless evaluate`: a trained net written for deployment, and
scored on a dataset.

Weights that carry a record (`nas_core.weights_meta`, written by `retrain` beside weights.pt)
supply the dataset, its folder and the resolution; the flags for them are needed only for
weights without one (the published .pth files, ours from before the record), which read exactly
as they always did. A flag that says otherwise than the record is one line, never a silent
choice between the two.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas_core.errors import ProxylessError
from nas_core.logs import get_logger
from orchestrator.cli.args import add_net_args, load_net_arg

if TYPE_CHECKING:
    from nas_core.data import DataConfig
    from nas_core.weights_meta import WeightsMeta

log = get_logger(__name__)


def weights_record(weights: str | None, tmp: str) -> WeightsMeta | None:
    """The record beside `--weights` (a path or storage URI), or None: no --weights, or
    weights without one."""
    from nas_core.weights_meta import WeightsMeta, meta_name
    from orchestrator.storage import beside, fetch_if_present, file_name

    if weights is None:
        return None
    location = beside(weights, meta_name(file_name(weights)))
    local = fetch_if_present(location, Path(tmp) / "record")
    if local is None:
        return None
    try:
        return WeightsMeta.load(local, where=location)
    except ProxylessError as e:  # e.g. written by a later version: the flags still work
        raise ProxylessError(f"{e} (move the record aside to pass the flags instead)") from None


def settle(flag: str, given: Any, meta: WeightsMeta | None, field: str, weights: str) -> Any:
    """A flag against the weights' record: the flag where there is no record, the record's
    `field` where the flag is unset, one line naming both where they differ."""
    if meta is None:
        return given
    value = getattr(meta, field)
    if given is not None and given != value:
        raise ProxylessError(
            f"{flag} {given} contradicts the weights {weights}: their record has {field} "
            f"{value}; leave {flag} out"
        )
    return value


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
        meta = weights_record(args.weights, tmp)
        resolution = settle("--resolution", args.resolution, meta, "resolution", args.weights)
        dataset = settle("--dataset", args.dataset, meta, "dataset", args.weights)
        loaded = load_net_arg(args, tmp, resolution)
        weights = fetch_to_local(args.weights, Path(tmp) / "weights") if args.weights else None
        facts = deployment_facts(loaded.net, loaded.arch, loaded.resolution, dataset, table, meta)
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
    if args.data is not None:
        parse_data(args.data, 32)  # a malformed --data before any large file is read
    device = resolve_device(args.device, "--device")
    with tempfile.TemporaryDirectory() as tmp:  # both may be storage URIs (s3://, file://)
        meta = weights_record(args.weights, tmp)
        resolution = settle("--resolution", args.resolution, meta, "resolution", args.weights)
        data = evaluation_data(args.data, meta, args.weights)  # before the weights are read
        loaded = load_net_arg(args, tmp, resolution)
        load_weights_file(loaded.net, fetch_to_local(args.weights, Path(tmp) / "weights"))
    data = data.replace(resolution=loaded.resolution)
    result = evaluate_net(loaded.net, data, device, args.batch_size, args.workers)
    summary = {
        "net": str(args.net),
        "weights": str(args.weights),
        "data": args.data or data_text(data),
        "resolution": loaded.resolution,
        "device": str(device),
        **result.to_config(),
    }
    print(json.dumps(summary) if args.json else evaluate_text(summary, result))
    return 0


def evaluation_data(text: str | None, meta: WeightsMeta | None, weights: str) -> DataConfig:
    """What `evaluate` scores on (its resolution is the caller's to set). Weights without a
    record: `--data` (default digits). With one: the data they trained on, split as their
    retrain split it (its `split_seed` draws digits' test images), in `--data`'s folder where
    that names one."""
    from nas_core.data import normalisation
    from nas_core.evaluation import parse_data

    if meta is None:
        return parse_data(text or "digits", 32)
    given = parse_data(text, meta.resolution) if text is not None else None
    settle("--data", given.dataset if given else None, meta, "dataset", weights)
    mean, std = normalisation(meta.dataset)
    if any(abs(a - b) > 1e-6 for a, b in zip((*meta.mean, *meta.std), (*mean, *std), strict=True)):
        log.warning(
            "%s: trained on inputs normalised by mean %s / std %s; this version normalises %s "
            "by %s / %s, so the scores may be off",
            weights,
            list(meta.mean),
            list(meta.std),
            meta.dataset,
            list(mean),
            list(std),
        )
    folder = given.data_dir if given is not None and given.data_dir else meta.data.data_dir
    return meta.data.replace(data_dir=folder, download=False)


def data_text(data: DataConfig) -> str:
    """A data config as `--data` spells it: `digits`, `cifar10:DIR`, …"""
    return f"{data.dataset}:{data.data_dir}" if data.data_dir else data.dataset


def evaluate_text(summary: dict[str, Any], result: Any) -> str:
    """`evaluate` for a reader: what was scored, top-1 / top-5 / loss and throughput."""
    return (
        f"{summary['net']} on {summary['data']} at {summary['resolution']} px "
        f"({result.images} images)\n"
        f"  top-1  {result.top1:.4f}   top-5  {result.top5:.4f}   loss  {result.loss:.4f}\n"
        f"  {result.images_per_s:,.0f} images/s end to end on {summary['device']}"
    )


def add_parsers(sub: Any, levels: argparse.ArgumentParser) -> None:
    """`export` and `evaluate`."""
    exp = sub.add_parser(
        "export", parents=[levels], help="ONNX, TorchScript or official net.config"
    )
    add_net_args(exp, "trained weights")
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
        help="ONNX: record the input mean / std the net was trained with (default: the "
        "weights' record, else none)",
    )
    exp.add_argument(
        "--lut", default=None, help="ONNX: record the net's latency on this table (default: none)"
    )
    exp.set_defaults(handler=cmd_export)

    ev = sub.add_parser(
        "evaluate", parents=[levels], help="top-1 / top-5 of a trained net on a dataset"
    )
    add_net_args(ev, "the weights to score", required=True)
    ev.add_argument(
        "--data",
        default=None,
        help="digits, fashion_mnist[:DIR] or cifar10:DIR (their test splits), or "
        "imagefolder:DIR (DIR/val, else DIR; photos: resize to r/0.875, centre crop r; images "
        "under 64 px: whole, at r; ImageNet mean/std); default: what the weights' record "
        "says, else digits",
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
