"""`proxyless search` and `proxyless retrain`: one search, and one derived net trained from
scratch."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from nas_core.config import AMP_MODES
from nas_core.errors import ProxylessError
from nas_core.logs import get_logger
from orchestrator.cli.args import default, format_int, given

log = get_logger(__name__)


def _search_config(args: argparse.Namespace) -> Any:
    """The YAML's config with the flags that override it; `--resume DIR` is the out_dir."""
    from nas_core.search_config import SearchConfig, load_search_config, with_overrides

    config = load_search_config(args.config) if args.config else SearchConfig()
    out = args.out
    if args.resume:  # `--resume DIR`, as in `sweep --resume RUN_DIR`: continue that folder
        if out is not None and out != args.resume:
            raise ProxylessError(f"--resume {args.resume} and --out {out} name two folders")
        out = args.resume
    return with_overrides(
        config,
        out_dir=out,
        lut=args.lut,
        seed=args.seed,
        epochs=args.epochs,
        device=args.device,
        amp=args.amp,
    )


def cmd_search(args: argparse.Namespace) -> int:
    """One single-process ProxylessNAS search from a YAML config."""
    from nas_core.search import Searcher

    config = _search_config(args)
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
        from cluster.resources import worker_gpus
        from cluster.search import run_search

        gpus = worker_gpus(config.device, args.workers, args.gpus_per_worker, "--gpus-per-worker")
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
    print(json.dumps(summary) if args.json else search_text(result, Path(config.out_dir)))
    return 0


def search_text(result: Any, out: Path) -> str:
    """`search` for a reader: the derived net, its cost and score, where TensorBoard reads."""
    lines = [
        f"derived architecture: {out / 'architecture.json'}",
        f"  ops        {', '.join(result.architecture.ops)}",
    ]
    if result.latency_table_ms is not None:
        lines.append(f"  latency    {result.latency_table_ms:.3f} ms (table)")
    lines.append(f"  params     {format_int(result.params)}   MACs {format_int(result.macs)}")
    lines.append(f"  valid acc  {result.valid_accuracy:.4f}")
    lines.append(f"TensorBoard: tensorboard --logdir {out / 'tensorboard'}")
    return "\n".join(lines)


def cmd_retrain(args: argparse.Namespace) -> int:
    """Train a derived architecture from scratch and report what it costs and scores."""
    from nas_core.architecture import Architecture
    from nas_core.retrain import retrain
    from nas_core.retrain_config import RetrainConfig

    arch = Architecture.load(args.arch)
    data = given(
        dataset=args.dataset,
        data_dir=args.data_dir,
        download=args.download,
        resolution=arch.space.resolution,
    )
    config = RetrainConfig.from_config(
        given(
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
    print(json.dumps(result.summary()) if args.json else retrain_text(result, config, args.arch))
    return 0


def retrain_text(result: Any, config: Any, arch_path: str) -> str:
    """`retrain` for a reader: test accuracy, size, and both latencies where known."""
    lines = [
        f"{arch_path} retrained {config.epochs} epochs on {config.data.dataset}",
        f"  test accuracy   {result.test_accuracy:.4f}",
        f"  params          {format_int(result.params)}   MACs {format_int(result.macs)}",
    ]
    if result.latency_table_ms is not None:
        lines.append(f"  latency (table) {result.latency_table_ms:.3f} ms")
    if result.latency_measured_ms is not None:
        how = "1 CPU thread, batch 1" if config.device == "cpu" else f"{config.device}, batch 8"
        lines.append(f"  latency (here)  {result.latency_measured_ms:.3f} ms ({how})")
    return "\n".join(lines)


ADDRESS_HELP = (
    "Ray cluster (host:port; with RAY_AUTH_MODE=token its token is presented); default "
    "RAY_ADDRESS, else a new local Ray on 127.0.0.1"
)


def add_search_parser(sub: Any, levels: argparse.ArgumentParser) -> None:
    """`search`: its YAML, the flags that override it, and the Ray Train workers."""
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
    search.add_argument("--address", default=None, help=ADDRESS_HELP)
    search.set_defaults(handler=cmd_search)


def add_retrain_parser(sub: Any, levels: argparse.ArgumentParser) -> None:
    """`retrain`: the net, its data and the recipe's flags (defaults read from the models)."""
    from nas_core.data import DataConfig
    from nas_core.retrain_config import RetrainConfig

    p = sub.add_parser(
        "retrain", parents=[levels], help="train a derived architecture from scratch"
    )
    p.add_argument("arch", help="architecture JSON")
    p.add_argument(
        "--dataset",
        default=None,
        help=f"digits, fashion_mnist, cifar10 or imagefolder ({default(DataConfig, 'dataset')})",
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="cifar10 / imagefolder root; fashion_mnist's IDX folder (default: Debian's)",
    )
    p.add_argument("--download", action="store_true", help="cifar10: allow downloading")
    p.add_argument("--epochs", type=int, default=None, help=default(RetrainConfig, "epochs"))
    p.add_argument("--lr", type=float, default=None, help=default(RetrainConfig, "lr"))
    p.add_argument(
        "--batch-size", type=int, default=None, help=default(RetrainConfig, "batch_size")
    )
    p.add_argument("--seed", type=int, default=None, help=default(RetrainConfig, "seed"))
    p.add_argument(
        "--device",
        default=None,
        help=f"cpu, cuda or cuda:N: trains and times ({default(RetrainConfig, 'device')})",
    )
    p.add_argument(
        "--amp",
        choices=AMP_MODES,
        default=None,
        help=f"mixed precision ({default(RetrainConfig, 'amp')})",
    )
    p.add_argument("--channels-last", action="store_true", help="NHWC memory format")
    p.add_argument("--compile", action="store_true", help="torch.compile the net for training")
    p.add_argument("--lut", default=None, help="latency table to price the net")
    p.add_argument(
        "--out",
        default=None,
        help="folder for weights.pt, its record weights.meta.json, architecture.json, retrain.json",
    )
    p.add_argument("--json", action="store_true", help="one JSON summary on stdout")
    p.set_defaults(handler=cmd_retrain)
