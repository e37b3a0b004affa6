"""The `proxyless` command line: argument parsing at the edge, one module per command group.

Each group (`arch`, `latency`, `run`: search and retrain, `sweeps`: sweep and pareto,
`deploy`: export and evaluate) defines its sub-parsers beside its handlers; a handler parses,
calls one domain function and prints through a renderer that returns text. Every user mistake
surfaces as a `ProxylessError` and becomes one line on stderr and exit code 2; nothing here
keeps global state, and `main(argv)` can be called from tests.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from cluster.connect import ray_environment
from nas_core.errors import ProxylessError
from nas_core.logs import cli_logging
from orchestrator.cli import arch, deploy, latency, run, sweeps
from orchestrator.cli.args import Parser, level, levels_parent

EXIT_USER_ERROR = 2


def _version() -> str:
    """The installed package's version (a source checkout run in place has none)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("proxyless-tune")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    """Every command, in the order `proxyless --help` lists them."""
    parser = Parser(prog="proxyless", description="ProxylessNAS architecture search on Ray.")
    parser.add_argument("--version", action="version", version=f"proxyless {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    levels = levels_parent()
    arch.add_parsers(sub, levels)
    run.add_search_parser(sub, levels)
    run.add_retrain_parser(sub, levels)
    sweeps.add_parsers(sub, levels)
    deploy.add_parsers(sub, levels)
    latency.add_parsers(sub, levels)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        handler: Callable[[argparse.Namespace], int] = args.handler
        # Ray's import-time variables, set before any handler imports Ray
        with cli_logging(level(args)), ray_environment(getattr(args, "address", None)):
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
