"""A derived architecture: the space it came from and one op per searchable layer.

Stored as JSON (`to_config` / `from_config`, validated against the space). `build_net` lays the
chosen ops into the space's skeleton and returns a standalone module in the official classes,
so `build_net(arch).to_config()` is the official net.config export.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from nas_core.errors import ProxylessError
from nas_core.io import atomic_write_text, read_json
from nas_core.nets import NETS, net_from_config
from nas_core.ops import create_op
from nas_core.spaces import SearchSpace


@dataclass(frozen=True)
class Architecture:
    """Space (name + hyperparameters, resolution and classes included) and the chosen ops."""

    space: SearchSpace
    ops: tuple[str, ...]

    def __post_init__(self) -> None:
        specs = self.space.layer_specs()
        if len(self.ops) != len(specs):
            raise ProxylessError(
                f"architecture has {len(self.ops)} ops, space {self.space.name} has {len(specs)} "
                "searchable layers"
            )
        for spec, op in zip(specs, self.ops, strict=True):
            if op not in spec.candidates:
                raise ProxylessError(
                    f"op {op!r} is not a candidate of layer {spec.name} "
                    f"(candidates: {', '.join(spec.candidates)})"
                )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Architecture) and self.to_config() == other.to_config()

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_config(), sort_keys=True))

    def to_config(self) -> dict[str, Any]:
        return {"space": self.space.to_config(), "ops": list(self.ops)}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Architecture:
        if not isinstance(config, Mapping) or set(config) != {"space", "ops"}:
            raise ProxylessError("architecture JSON must have exactly the keys 'space' and 'ops'")
        ops = config["ops"]
        if not isinstance(ops, list) or not all(isinstance(o, str) for o in ops):
            raise ProxylessError("architecture 'ops' must be a list of op names")
        return cls(SearchSpace.from_config(config["space"]), tuple(ops))

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, json.dumps(self.to_config(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Architecture:
        return cls.from_config(read_json(path))

    def at_resolution(self, resolution: int) -> Architecture:
        """The same ops laid out for another input resolution."""
        config = {**self.space.to_config(), "resolution": resolution}
        return Architecture(SearchSpace.from_config(config), self.ops)

    def net_config(self) -> dict[str, Any]:
        """The official-format net.config of this architecture."""
        return build_net(self).to_config()


def build_net(arch: Architecture) -> nn.Module:
    """The standalone network of `arch`, freshly initialised."""
    return arch.space.build(
        lambda spec: create_op(
            arch.ops[spec.index], spec.in_channels, spec.out_channels, spec.stride
        )
    )


def ops_of(space: SearchSpace, chosen: Sequence[int]) -> tuple[str, ...]:
    """Candidate indices per layer → op names."""
    return tuple(s.candidates[i] for s, i in zip(space.layer_specs(), chosen, strict=True))


@dataclass(frozen=True)
class LoadedNetwork:
    """A network file, built: the module, its input resolution and its architecture (None for
    an official net.config, which need not fit any space)."""

    net: nn.Module
    resolution: int
    arch: Architecture | None


def load_network(path: str | Path, resolution: int | None = None) -> LoadedNetwork:
    """Any network file: our architecture JSON or an official net.config.

    `resolution` overrides the file's own (an architecture is laid out again for it, so its
    fixed-size pools follow); an official net.config says none, so ImageNet nets default to 224
    and CIFAR nets to 32 (ours record theirs under `resolution`).
    """
    if resolution is not None and resolution < 1:
        raise ProxylessError(f"--resolution must be >= 1, got {resolution}")
    config = read_json(path)
    if isinstance(config, Mapping) and "space" in config:
        try:
            arch = Architecture.from_config(config)
            if resolution is not None:
                arch = arch.at_resolution(resolution)
        except ProxylessError as e:
            raise ProxylessError(f"{path}: {e}") from None
        return LoadedNetwork(build_net(arch), arch.space.resolution, arch)
    if isinstance(config, Mapping) and config.get("name") in NETS:
        config = dict(config)
        # our exports record it; the official configs say none (ImageNet 224, CIFAR 32)
        natural = config.pop("resolution", 224 if config["name"] == "ProxylessNASNets" else 32)
        if type(natural) is not int or natural < 1:
            raise ProxylessError(f"{path}: resolution must be a positive integer, got {natural!r}")
        try:
            net = net_from_config(config)
        except ProxylessError as e:
            raise ProxylessError(f"{path}: not a valid {config['name']} net.config ({e})") from None
        if resolution is not None and resolution != natural:
            _check_fits(net, resolution, path)
        return LoadedNetwork(net, resolution or natural, None)
    name = config.get("name") if isinstance(config, Mapping) else None
    got = f"name {name!r} is not " if name is not None else "name "
    raise ProxylessError(
        f"{path}: neither an architecture JSON (keys 'space', 'ops') nor an official net.config "
        f"({got}{' or '.join(NETS.names())})"
    )


def _check_fits(net: nn.Module, resolution: int, path: str | Path) -> None:
    """One line, not a shape error later, when a net's fixed-size parts (the CIFAR net's final
    pool) cannot take `resolution`; checked on a meta-device copy, so nothing is computed."""
    import copy

    import torch

    probe = copy.deepcopy(net).to("meta").eval()
    try:
        with torch.no_grad():
            probe(torch.zeros(1, 3, resolution, resolution, device="meta"))
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise ProxylessError(
            f"{path}: input resolution {resolution} does not fit this net ({first})"
        ) from None
