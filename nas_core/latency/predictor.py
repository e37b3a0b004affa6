"""Expected and derived latency from a `LatencyTable`.

E[latency] = fixed parts + Σ_layers Σ_i p_i·T(o_i), differentiable in α (Zero costs 0, the
MBConv `idskip` follows the block's shortcut). A missing entry is an error listing every missing
key in the table's own format — never a silent default (the official code used 200 ms).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

from nas_core.arch_state import ArchState
from nas_core.architecture import Architecture
from nas_core.errors import ProxylessError
from nas_core.latency import keys as K
from nas_core.latency.table import LatencyTable
from nas_core.spaces import SearchSpace


class MissingLatencyError(ProxylessError):
    """The table cannot price some layers; `.keys` lists every missing key."""

    def __init__(self, keys: Sequence[str], table_name: str) -> None:
        self.keys = list(keys)
        n = len(self.keys)
        super().__init__(
            f"latency table {table_name!r} has no entry for {n} layer signature"
            f"{'s' if n != 1 else ''}: {'; '.join(self.keys)}"
        )


def _check(table: LatencyTable, keys: Iterable[str | None]) -> None:
    missing = table.missing(keys)
    if missing:
        raise MissingLatencyError(missing, table.meta.name)


class LatencyModel:
    """A space priced by a table: the fixed cost and one cost vector per searchable layer."""

    def __init__(self, space: SearchSpace, table: LatencyTable) -> None:
        layout = space.latency_layout()
        _check(table, layout.all_keys())
        self.space = space
        self.fixed_ms = sum(table.mean(k) for k in layout.fixed)
        self.costs = [
            torch.tensor([0.0 if k is None else table.mean(k) for k in layer], dtype=torch.float64)
            for layer in layout.layers
        ]

    def expected(self, arch: ArchState) -> torch.Tensor:
        """E[latency] in ms under softmax(α), differentiable in α."""
        total = torch.tensor(self.fixed_ms, dtype=torch.float64)
        for a, cost in zip(arch.alphas, self.costs, strict=True):
            total = total + torch.softmax(a.double(), 0) @ cost.to(a.device)
        return total

    def uniform(self) -> float:
        return self.fixed_ms + sum(float(c.mean()) for c in self.costs)

    def of_indices(self, indices: Sequence[int]) -> float:
        """Latency of the net that takes candidate indices[l] at layer l."""
        return self.fixed_ms + sum(float(c[i]) for c, i in zip(self.costs, indices, strict=True))


def architecture_latency(arch: Architecture, table: LatencyTable) -> float:
    """Sum of the table entries of a derived architecture (only its own ops need entries)."""
    layout = arch.space.latency_layout()
    specs = arch.space.layer_specs()
    chosen = [
        layer[s.candidates.index(op)]
        for layer, s, op in zip(layout.layers, specs, arch.ops, strict=True)
    ]
    keys = [*layout.fixed, *chosen]
    _check(table, keys)
    return sum(table.mean(k) for k in keys if k is not None)


def net_config_keys(config: Mapping[str, Any], resolution: int) -> list[str]:
    """The table keys of an official net.config (ProxylessNASNets or PyramidTreeNet)."""
    name = config.get("name") if isinstance(config, Mapping) else None
    try:
        if name == "ProxylessNASNets":
            return _mobilenet_keys(config, resolution)
        if name == "PyramidTreeNet":
            return _pyramid_keys(config, resolution)
    except (KeyError, TypeError, IndexError) as e:
        raise ProxylessError(f"malformed {name} net.config (missing {e})") from None
    raise ProxylessError(f"cannot price a net.config named {name!r}")


def net_config_latency(config: Mapping[str, Any], table: LatencyTable, resolution: int) -> float:
    keys = net_config_keys(config, resolution)
    _check(table, keys)
    return sum(table.mean(k) for k in keys)


def _mobilenet_keys(config: Mapping[str, Any], resolution: int) -> list[str]:
    first = config["first_conv"]
    size = -(-resolution // first["stride"])
    keys = [K.conv_key("Conv", resolution, first["in_channels"], size, first["out_channels"])]
    channels = first["out_channels"]
    for block in config["blocks"]:
        conv = block["mobile_inverted_conv"]
        if conv["name"] == "ZeroLayer":
            continue
        out = -(-size // conv["stride"])
        keys.append(
            K.mbconv_key(
                size,
                conv["in_channels"],
                out,
                conv["out_channels"],
                conv["expand_ratio"],
                conv["kernel_size"],
                conv["stride"],
                block["shortcut"] is not None,
            )
        )
        size, channels = out, conv["out_channels"]
    mix = config["feature_mix_layer"]
    keys.append(K.conv_key("Conv_1", size, channels, size, mix["out_channels"]))
    keys.append(K.logits_key(size, mix["out_channels"], config["classifier"]["out_features"]))
    return keys


def _pyramid_keys(config: Mapping[str, Any], resolution: int) -> list[str]:
    from nas_core.ops import op_name

    keys = [K.tree_stem_key(resolution)]
    size = resolution
    channels = 0
    for block in config["blocks"]:
        if block["name"] != "ResidualTreeBlock":
            continue
        root = block["cell"]["edges"][0]
        width, stride = block["in_bottle"]["out_channels"], root["stride"]
        keys.append(K.tree_block_key(size, block["in_bottle"]["in_channels"], width, stride))
        size = -(-size // stride)
        edges: list[dict] = []
        _tree_edges(block["cell"], 0, edges)
        keys.extend(K.tree_edge_key(op_name(e) or e["name"], size, width) for e in edges)
        channels = block["out_bottle"]["out_channels"]
    keys.append(K.tree_head_key(size, channels, config["classifier"]["out_features"]))
    return keys


def _tree_edges(node: Mapping[str, Any], depth: int, out: list) -> None:
    for edge, child in zip(node["edges"], node["child_nodes"], strict=True):
        if depth >= 2:
            out.append(edge)
        if child is not None:
            _tree_edges(child, depth + 1, out)
