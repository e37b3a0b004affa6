"""What every command group shares: the parser that raises, flag types, the space and net
flags, and the small rules that turn flags into config fields."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from nas_core.config import ConfigModel
from nas_core.errors import ProxylessError


class Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so usage errors are one line and exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        command = self.prog.removeprefix("proxyless").strip()  # main() prints "proxyless: "
        raise ProxylessError(f"{command}: {message}" if command else message)


def format_int(n: int) -> str:
    return f"{n:,}"


def given(**flags: Any) -> dict[str, Any]:
    """The flags the user set: their argparse default is None, the config models hold the rest."""
    return {k: v for k, v in flags.items() if v is not None}


def level(args: argparse.Namespace) -> int:
    """--verbose: DEBUG; --quiet, or --json (stdout is the JSON): WARNING; else INFO."""
    if args.verbose:
        return logging.DEBUG
    return logging.WARNING if args.quiet or getattr(args, "json", False) else logging.INFO


def default(model: type[ConfigModel], field: str) -> str:
    """`default <value>` for a flag's help, read from the model that holds the default."""
    return f"default {model.model_fields[field].default}"


def levels_parent() -> argparse.ArgumentParser:
    """The parent parser of every command: its logging level (a sweep: Ray workers' output)."""
    levels = argparse.ArgumentParser(add_help=False)
    loudness = levels.add_mutually_exclusive_group()
    loudness.add_argument(
        "-v", "--verbose", action="store_true", help="debug lines (a sweep: Ray workers' logs)"
    )
    loudness.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    return levels


def number(text: str) -> int | float:
    """An int when the text is one (B, F of pyramid_tree), else a float (F of mobilenet)."""
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a comma-separated list of integers: {text!r}"
        ) from None


def name_list(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def add_space_args(parser: argparse.ArgumentParser, default: str | None = "mobilenet") -> None:
    """--space and its knobs (arch derive, latency profile / predict / validate)."""
    parser.add_argument("--space", default=default, help="mobilenet or pyramid_tree")
    parser.add_argument(
        "--B",
        type=number,
        default=None,
        help="blocks per stage (default: mobilenet 4, pyramid_tree 18)",
    )
    parser.add_argument(
        "--F",
        type=number,
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
        "--kernels", type=int_list, default=None, help="mobilenet MBConv kernels (default 3,5,7)"
    )
    parser.add_argument(
        "--expands",
        type=int_list,
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
        type=name_list,
        default=None,
        help="pyramid_tree edge candidates, comma-separated (default: the paper's 7)",
    )


def space_from_args(args: argparse.Namespace, default: dict | None = None):
    """The search space named by --space / --B / --F / --resolution / --classes."""
    from nas_core.spaces import SearchSpace

    config = dict(default or {"name": "mobilenet"})
    if args.space is not None and args.space != config.get("name"):
        config = {"name": args.space}  # another space: the default's knobs do not apply
    knobs = {
        "B": args.B,
        "F": args.F,
        "resolution": args.resolution,
        "num_classes": args.classes,
        "kernels": args.kernels,
        "expands": args.expands,
        "zero": args.zero,
        "transition_op": args.transition_op,
        "candidates": args.candidates,
    }
    return SearchSpace.from_config({**config, **given(**knobs)})


def add_net_args(parser: argparse.ArgumentParser, weights: str, required: bool = False) -> None:
    """What export and evaluate both take: the net file, its weights and resolution, --json."""
    parser.add_argument("net", help="architecture JSON or net.config (ours or official)")
    parser.add_argument(
        "--weights",
        required=required,
        default=None,
        help=f"{weights}: a retrain's weights.pt or an official .pth (state_dict layouts)",
    )
    parser.add_argument(
        "--resolution",
        type=int,
        default=None,
        help="input H = W (default: the weights' record, else the file's; 224/32)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")


def load_net_arg(args: argparse.Namespace, tmp: str, resolution: int | None) -> Any:
    """The `net` file of export / evaluate (a path or storage URI), at `resolution` if given
    (--resolution, or the one the weights record)."""
    from nas_core.architecture import load_network
    from orchestrator.storage import fetch_to_local

    return load_network(fetch_to_local(args.net, Path(tmp) / "net"), resolution)
