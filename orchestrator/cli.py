"""The `proxyless` command line: argument parsing at the edge, one handler per subcommand.

Every user mistake surfaces as a `ProxylessError` and becomes one line on stderr and exit code
2; nothing here keeps global state, and `main(argv)` can be called from tests.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from nas_core.errors import ProxylessError

EXIT_USER_ERROR = 2


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so usage errors are one line and exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ProxylessError(f"{self.prog}: {message}")


def _format_int(n: int) -> str:
    return f"{n:,}"


def cmd_arch_stats(args: argparse.Namespace) -> int:
    """Parameters and MACs of an architecture JSON or an official net.config."""
    from nas_core.architecture import build_net, load_network
    from nas_core.stats import net_stats

    net, resolution, arch = load_network(args.path)
    if args.resolution is not None:
        if args.resolution < 1:
            raise ProxylessError(f"--resolution must be >= 1, got {args.resolution}")
        resolution = args.resolution
        if arch is not None:  # lay the ops out for that resolution (fixed-size pools follow)
            arch = arch.at_resolution(resolution)
            net = build_net(arch)
    stats = net_stats(net, resolution)
    out = {"path": str(args.path), **stats.to_config()}
    if arch is not None:
        out["space"] = arch.space.to_config()
        out["ops"] = list(arch.ops)
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{args.path}")
        if arch is not None:
            print(f"  space       {arch.space.name} {json.dumps(arch.space.to_config())}")
        print(f"  resolution  {resolution}")
        print(f"  params      {_format_int(stats.params)}")
        print(f"  MACs        {_format_int(stats.macs)}")
    return 0


def cmd_arch_derive(args: argparse.Namespace) -> int:
    """Build a space's super-net, initialise α as the official code does, derive by argmax."""
    from nas_core.architecture import build_net
    from nas_core.sampling import step_generator
    from nas_core.spaces import create_space
    from nas_core.stats import count_params, net_stats
    from nas_core.supernet import SuperNet

    space = create_space(
        args.space, B=args.B, F=args.F, resolution=args.resolution, num_classes=args.classes
    )
    supernet = SuperNet(space)
    supernet.arch.init_normal_(step_generator(args.seed, 0))
    arch = supernet.derive()
    stats = net_stats(build_net(arch), space.resolution)
    if args.out:
        arch.save(args.out)
    summary = {
        "space": space.to_config(),
        "searchable_layers": len(supernet.specs),
        "candidates": sum(len(s.candidates) for s in supernet.specs),
        "supernet_params": count_params(supernet),
        "entropy_mean": float(supernet.arch.entropy().mean()),
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
    parser = _Parser(prog="proxyless", description="ProxylessNAS architecture search on Ray.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    arch = sub.add_parser("arch", help="inspect and derive architectures")
    arch_sub = arch.add_subparsers(dest="arch_command", required=True, parser_class=_Parser)

    stats = arch_sub.add_parser("stats", help="params and MACs of an architecture or net.config")
    stats.add_argument("path", help="architecture JSON or official net.config")
    stats.add_argument("--resolution", type=int, default=None, help="input H = W")
    stats.add_argument("--json", action="store_true", help="one JSON object on stdout")
    stats.set_defaults(handler=cmd_arch_stats)

    derive = arch_sub.add_parser("derive", help="build a super-net and derive an architecture")
    derive.add_argument("--space", default="mobilenet", help="mobilenet or pyramid_tree")
    derive.add_argument("--B", type=int, default=None, help="depth knob (blocks per stage)")
    derive.add_argument("--F", type=_number, default=None, help="width knob")
    derive.add_argument("--resolution", type=int, default=None)
    derive.add_argument("--classes", type=int, default=None)
    derive.add_argument("--seed", type=int, default=0)
    derive.add_argument("--out", default=None, help="write the architecture JSON here")
    derive.add_argument("--json", action="store_true")
    derive.set_defaults(handler=cmd_arch_derive)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        handler: Callable[[argparse.Namespace], int] = args.handler
        return handler(args)
    except ProxylessError as e:
        print(f"proxyless: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("proxyless: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
