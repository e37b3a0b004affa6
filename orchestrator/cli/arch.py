"""`proxyless arch stats | derive`: what an architecture costs, and a super-net's first draw."""

from __future__ import annotations

import argparse
import json
from typing import Any

from nas_core.errors import ProxylessError
from orchestrator.cli.args import Parser, add_space_args, format_int, space_from_args


def cmd_arch_stats(args: argparse.Namespace) -> int:
    """Parameters and MACs of an architecture JSON or an official net.config; for an
    architecture, the op each layer chose (and its latency share, with --lut)."""
    from nas_core.arch_view import layer_rows
    from nas_core.architecture import load_network
    from nas_core.latency.table import LatencyTable
    from nas_core.stats import net_stats

    loaded = load_network(args.path, args.resolution)
    arch = loaded.arch
    if args.lut is not None and arch is None:
        raise ProxylessError("--lut prices the layers of an architecture JSON, not a net.config")
    stats = net_stats(loaded.net, loaded.resolution)
    out: dict[str, Any] = {"path": str(args.path), **stats.to_config()}
    if arch is not None:
        out["space"] = arch.space.to_config()
        out["ops"] = list(arch.ops)
        table = None if args.lut is None else LatencyTable.load(args.lut)
        out["layers"] = layer_rows(arch, table)
    print(json.dumps(out) if args.json else stats_text(out, loaded.resolution, bool(args.lut)))
    return 0


def stats_text(out: dict[str, Any], resolution: int, priced: bool) -> str:
    """`arch stats` for a reader: the totals, then one line per layer of an architecture."""
    lines = [out["path"]]
    if "space" in out:
        knobs = ", ".join(f"{k} {v}" for k, v in out["space"].items() if k != "name")
        lines.append(f"  space       {out['space']['name']} ({knobs})")
    lines.append(f"  resolution  {resolution}")
    lines.append(f"  params      {format_int(out['params'])}")
    lines.append(f"  MACs        {format_int(out['macs'])}")
    if "layers" in out:
        lat = " latency (share)" if priced else ""
        lines.append(f"  {'layer':<24} {'input':>5} {'channels':>11} {'s':>1}  {'op':<14}{lat}")
        for r in out["layers"]:
            shape = f"{r['in_channels']}->{r['out_channels']}"
            line = f"  {r['layer']:<24} {r['input']:>5} {shape:>11} {r['stride']:>1}  {r['op']:<14}"
            if priced:
                share = r["latency_share"]
                line += f" {r['latency_ms']:.3f} ms" + (f" ({share:.0%})" if share else "")
            lines.append(line)
    return "\n".join(lines)


def cmd_arch_derive(args: argparse.Namespace) -> int:
    """Build a space's super-net, initialise α as the official code does, derive by argmax."""
    from nas_core.architecture import build_net
    from nas_core.sampling import Stream, step_generator
    from nas_core.stats import count_params, net_stats
    from nas_core.supernet import SuperNet

    space = space_from_args(args)
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
    print(json.dumps(summary) if args.json else derive_text(summary, supernet.specs, args.seed))
    return 0


def derive_text(summary: dict[str, Any], specs: Any, seed: int) -> str:
    """`arch derive` for a reader: the super-net, then the derived op of every layer."""
    lines = [
        f"super-net  {summary['space']['name']} {json.dumps(summary['space'])}",
        f"  searchable layers {summary['searchable_layers']}, "
        f"candidate ops {summary['candidates']}",
        f"  super-net params  {format_int(summary['supernet_params'])}",
        f"derived architecture (argmax α, seed {seed})",
    ]
    for spec, op in zip(specs, summary["ops"], strict=True):
        shape = f"{spec.in_channels:>4}->{spec.out_channels:<4} s{spec.stride}"
        lines.append(f"  {spec.name:<22} {shape}  {op}")
    lines.append(f"  params {format_int(summary['params'])}   MACs {format_int(summary['macs'])}")
    if summary["out"]:
        lines.append(f"wrote {summary['out']}")
    return "\n".join(lines)


def add_parsers(sub: Any, levels: argparse.ArgumentParser) -> None:
    """`arch stats` and `arch derive`."""
    arch_cmd = sub.add_parser("arch", help="inspect and derive architectures")
    arch_sub = arch_cmd.add_subparsers(dest="arch_command", required=True, parser_class=Parser)

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
    add_space_args(derive)
    derive.add_argument("--seed", type=int, default=0, help="seed of the α draw (default 0)")
    derive.add_argument("--out", default=None, help="write the architecture JSON here")
    derive.add_argument("--json", action="store_true", help="one JSON object on stdout")
    derive.set_defaults(handler=cmd_arch_derive)
