"""Which latency-table entries price a network: the one derivation of latency keys.

A net.config is walked once, by a walker registered for its net class, and every part of it
becomes a key (`nas_core.latency.keys`). Where the config has a `MixedOp` (a super-net), the
walker gives one key per candidate instead. So a standalone net (ours or an official one) and a
space (its skeleton, serialised with a `MixedOp` at each searchable layer) are priced by the
same code; a space never lists its keys itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from nas_core.errors import ProxylessError
from nas_core.latency import keys as K
from nas_core.ops import op_name
from nas_core.registry import Registry


@dataclass(frozen=True)
class LatencyLayout:
    """The keys of a network: its fixed parts (each counted as often as it occurs), and per
    searchable layer one key per candidate (None where the candidate is free, i.e. Zero)."""

    fixed: tuple[str, ...]
    layers: tuple[tuple[str | None, ...], ...]

    def all_keys(self) -> list[str]:
        """Every distinct key, in order: what a table must hold to price the network."""
        keys = list(self.fixed)
        for layer in self.layers:
            keys.extend(k for k in layer if k is not None)
        return list(dict.fromkeys(keys))


Walker = Callable[[Mapping[str, Any], int], LatencyLayout]
WALKERS: Registry[Walker] = Registry("net latency walker")


def net_layout(config: Mapping[str, Any], resolution: int) -> LatencyLayout:
    """The layout of a net.config (standalone or super-net) at input `resolution`."""
    name = config.get("name") if isinstance(config, Mapping) else None
    if name not in WALKERS:
        raise ProxylessError(f"cannot price a net.config named {name!r}")
    return WALKERS.get(name)(config, resolution)


def _out(size: int, stride: int) -> int:
    return -(-size // stride)


def _candidates(layer: Mapping[str, Any]) -> list[Mapping[str, Any]] | None:
    """A MixedOp's candidate configs; None for a plain layer."""
    return list(layer["candidates"]) if layer["name"] == "MixedOp" else None


def _registered(layer: Mapping[str, Any]) -> str:
    name = op_name(layer)
    if name is None:
        raise ProxylessError(f"cannot price a {layer['name']} that is no registered op: {layer}")
    return name


def _mbconv_key(conv: Mapping[str, Any], size: int, idskip: bool) -> str | None:
    """An MBConv block with `conv` at input `size`; Zero is free."""
    if conv["name"] == "ZeroLayer":
        return None
    if conv["name"] != "MBInvertedConvLayer":
        raise ProxylessError(f"no latency key for a {conv['name']} block of ProxylessNASNets")
    stride = conv["stride"]
    return K.mbconv_key(
        size,
        conv["in_channels"],
        _out(size, stride),
        conv["out_channels"],
        conv["expand_ratio"],
        conv["kernel_size"],
        stride,
        idskip,
    )


@WALKERS.register("ProxylessNASNets")
def _proxyless_nas_nets(config: Mapping[str, Any], resolution: int) -> LatencyLayout:
    first = config["first_conv"]
    size = _out(resolution, first["stride"])
    fixed = [K.conv_key("Conv", resolution, first["in_channels"], size, first["out_channels"])]
    layers = []
    for block in config["blocks"]:
        conv, idskip = block["mobile_inverted_conv"], block["shortcut"] is not None
        candidates = _candidates(conv)
        if candidates is None:
            key = _mbconv_key(conv, size, idskip)
            fixed.extend([key] if key is not None else [])
        else:
            layers.append(tuple(_mbconv_key(c, size, idskip) for c in candidates))
        size = _out(size, (candidates or [conv])[0]["stride"])
    mix, classifier = config["feature_mix_layer"], config["classifier"]
    fixed.append(K.conv_key("Conv_1", size, mix["in_channels"], size, mix["out_channels"]))
    fixed.append(K.logits_key(size, classifier["in_features"], classifier["out_features"]))
    return LatencyLayout(tuple(fixed), tuple(layers))


@WALKERS.register("PyramidTreeNet")
def _pyramid_tree_net(config: Mapping[str, Any], resolution: int) -> LatencyLayout:
    """`tree_block` prices a residual block with identity edges at its copy nodes (the cell's
    leaves); each copy-node edge adds its own `tree_edge` entry."""
    fixed, layers = [K.tree_stem_key(resolution)], []
    size, channels = resolution, 0
    for block in config["blocks"]:
        if block["name"] != "ResidualTreeBlock":
            continue  # the stem and the head: priced by their own keys
        bottle, root = block["in_bottle"], block["cell"]["edges"][0]
        width, stride = bottle["out_channels"], root["stride"]
        fixed.append(K.tree_block_key(size, bottle["in_channels"], width, stride))
        size, channels = _out(size, stride), block["out_bottle"]["out_channels"]
        for edge in _copy_edges(block["cell"]):
            candidates = _candidates(edge)
            if candidates is None:
                fixed.append(K.tree_edge_key(_registered(edge), size, width))
            else:
                layers.append(
                    tuple(K.tree_edge_key(_registered(c), size, width) for c in candidates)
                )
    fixed.append(K.tree_head_key(size, channels, config["classifier"]["out_features"]))
    return LatencyLayout(tuple(fixed), tuple(layers))


def _copy_edges(node: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The edges of every copy node under `node`, in pre-order (the order the space builds)."""
    out = []
    for edge, child in zip(node["edges"], node["child_nodes"], strict=True):
        if node["split_type"] == "copy":
            out.append(edge)
        if child is not None:
            out.extend(_copy_edges(child))
    return out
