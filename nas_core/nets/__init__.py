"""Standalone (and super-) network classes in the official net.config formats.

`net_from_config` builds `ProxylessNASNets` or `PyramidTreeNet` from a parsed net.config; every
net's `to_config()` writes the same format back, which is also our export format.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from nas_core.errors import ProxylessError
from nas_core.nets.mobilenet import MobileInvertedResidualBlock, ProxylessNASNets
from nas_core.nets.pyramid_tree import PyramidTreeNet, ResidualTreeBlock, TransitionBlock, TreeNode
from nas_core.registry import Registry

NETS: Registry[type[nn.Module]] = Registry("network")
NETS.register()(ProxylessNASNets)
NETS.register()(PyramidTreeNet)


def net_from_config(config: Mapping[str, Any]) -> nn.Module:
    """Build a whole network from an official-format net.config dict."""
    if not isinstance(config, Mapping) or "name" not in config:
        raise ProxylessError("net config must be a JSON object with a 'name'")
    if not isinstance(config["name"], str):
        raise ProxylessError(f"net config 'name' must be a string, got {config['name']!r}")
    return NETS.get(config["name"]).from_config(config)


__all__ = [
    "NETS",
    "MobileInvertedResidualBlock",
    "ProxylessNASNets",
    "PyramidTreeNet",
    "ResidualTreeBlock",
    "TransitionBlock",
    "TreeNode",
    "net_from_config",
]
