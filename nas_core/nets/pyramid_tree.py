"""PyramidNet backbone with tree-structured cells (`PyramidTreeNet`), the paper's CIFAR space.

A cell is a `TreeNode`: its input is allocated to children (copy, or split along channels),
each child runs an edge op then its own sub-tree, and outputs merge (add or concat). A node
with branch BN adds a BN'd sub-tree output to the edge output. Edges may be `MixedOp`s, so the
same classes serve the super-net and the standalone net. Semantics follow the official code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import nn

from nas_core.config import checked_kwargs, config_list, construct, typed
from nas_core.errors import ProxylessError
from nas_core.layers import Channels, Rate, layer_from_config
from nas_core.registry import Registry


def split_list(total: int, parts: int) -> list[int]:
    """Split `total` channels into `parts` near-equal groups (earlier groups get the rest)."""
    sizes = [total // parts] * parts
    for i in range(total % parts):
        sizes[i] += 1
    return sizes


def _drop(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Drop the whole tensor with probability `rate` in training; scale by 1 − rate in eval."""
    if rate <= 0:
        return x
    if not training:
        return x * (1 - rate)
    return torch.zeros_like(x) if float(torch.rand(())) < rate else x


class TreeNode(nn.Module):
    """One node of a tree cell: edges, child sub-trees, allocation and merge scheme."""

    @typed
    def __init__(
        self,
        edges: Sequence[nn.Module],
        child_nodes: Sequence[nn.Module | None],  # TreeNodes (a class cannot name itself here)
        in_channels: Channels,
        out_channels: Channels,
        split_type: Literal["copy", "split"] | None = "copy",
        merge_type: Literal["add", "concat"] | None = "add",
        has_branch_bn: bool = False,
        path_drop_rate: Rate = 0,
    ) -> None:
        super().__init__()
        if len(edges) != len(child_nodes):
            raise ProxylessError("TreeNode: one child node (or null) per edge is needed")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.split_type, self.merge_type = split_type, merge_type
        self.has_branch_bn, self.path_drop_rate = has_branch_bn, path_drop_rate
        self.edges = nn.ModuleList(edges)
        self.child_nodes = nn.ModuleList(child_nodes)
        bns = [nn.BatchNorm2d(d) for d in self.out_dims()] if has_branch_bn else [None] * len(edges)
        self.branch_bns = nn.ModuleList(bns)

    def out_dims(self) -> list[int]:
        n = len(self.edges)
        if self.merge_type == "concat":
            return split_list(self.out_channels, n)
        return [self.out_channels] * n

    def _inputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        n = len(self.edges)
        if self.split_type == "split":
            return list(torch.split(x, split_list(self.in_channels, n), dim=1))
        return [x] * n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        for xi, edge, child, bn in zip(
            self._inputs(x), self.edges, self.child_nodes, self.branch_bns, strict=True
        ):
            y = edge(xi)
            z = y if child is None else child(y)
            y = z if bn is None else bn(z) + y  # official: the branch BN even without a child
            outs.append(_drop(y, self.path_drop_rate, self.training))
        if self.merge_type == "concat":
            return torch.cat(outs, dim=1)
        return outs[0] if len(outs) == 1 else torch.stack(outs).sum(0)

    def to_config(self) -> dict[str, Any]:
        return {
            "name": "TreeNode",
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "split_type": self.split_type,
            "merge_type": self.merge_type,
            "has_branch_bn": self.has_branch_bn,
            "path_drop_rate": self.path_drop_rate,
            "edges": [e.to_config() for e in self.edges],
            "child_nodes": [None if c is None else c.to_config() for c in self.child_nodes],
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> TreeNode:
        kw = checked_kwargs(cls, config, "TreeNode")
        kw["edges"] = [layer_from_config(e) for e in config_list(kw["edges"], "TreeNode.edges")]
        children = config_list(kw["child_nodes"], "TreeNode.child_nodes")
        kw["child_nodes"] = [None if c is None else cls.from_config(c) for c in children]
        return construct(cls, kw, "TreeNode")


class TransitionBlock(nn.Module):
    """A plain sequence of layers (the stem, and the final BN-ReLU-pool)."""

    @typed
    def __init__(self, layers: Sequence[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x

    def to_config(self) -> dict[str, Any]:
        return {"name": "TransitionBlock", "layers": [m.to_config() for m in self.layers]}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> TransitionBlock:
        kw = checked_kwargs(cls, config, "TransitionBlock")
        layers = config_list(kw["layers"], "TransitionBlock.layers")
        return construct(cls, {"layers": [layer_from_config(c) for c in layers]}, "TransitionBlock")


class ResidualTreeBlock(nn.Module):
    """PyramidNet bottleneck block whose 3×3 stage is a tree cell; zero-padded shortcut."""

    @typed
    def __init__(
        self,
        cell: TreeNode,
        in_bottle: nn.Module | None,
        out_bottle: nn.Module | None,
        shortcut: nn.Module,
        final_bn: bool = True,
        cell_drop_rate: Rate = 0,
    ) -> None:
        super().__init__()
        self.cell, self.in_bottle, self.out_bottle, self.shortcut = (
            cell,
            in_bottle,
            out_bottle,
            shortcut,
        )
        self.cell_drop_rate = cell_drop_rate
        out = cell.out_channels if out_bottle is None else out_bottle.out_channels
        self.final_bn = nn.BatchNorm2d(out) if final_bn else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.shortcut(x)
        if self.in_bottle is not None:
            x = self.in_bottle(x)
        x = self.cell(x)
        if self.out_bottle is not None:
            x = self.out_bottle(x)
        if self.final_bn is not None:
            x = self.final_bn(x)
        x = _drop(x, self.cell_drop_rate, self.training)
        pad = x.shape[1] - skip.shape[1]
        if pad > 0:
            skip = nn.functional.pad(skip, (0, 0, 0, 0, 0, pad))
        return skip + x

    def to_config(self) -> dict[str, Any]:
        return {
            "name": "ResidualTreeBlock",
            "cell_drop_rate": self.cell_drop_rate,
            "final_bn": self.final_bn is not None,
            "shortcut": self.shortcut.to_config(),
            "in_bottle": None if self.in_bottle is None else self.in_bottle.to_config(),
            "out_bottle": None if self.out_bottle is None else self.out_bottle.to_config(),
            "cell": self.cell.to_config(),
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ResidualTreeBlock:
        kw = checked_kwargs(cls, config, "ResidualTreeBlock")
        for key in ("in_bottle", "out_bottle", "shortcut"):
            kw[key] = layer_from_config(kw[key])
        kw["cell"] = TreeNode.from_config(kw["cell"])
        return construct(cls, kw, "ResidualTreeBlock")


BLOCKS: Registry[type[nn.Module]] = Registry("PyramidTreeNet block")
BLOCKS.register()(TransitionBlock)
BLOCKS.register()(ResidualTreeBlock)


class PyramidTreeNet(nn.Module):
    """Transition (stem) → residual tree blocks → transition (BN-ReLU-pool) → classifier."""

    @typed
    def __init__(self, blocks: Sequence[nn.Module], classifier: nn.Module) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.classifier(torch.flatten(x, 1))

    def to_config(self) -> dict[str, Any]:
        return {
            "name": "PyramidTreeNet",
            "blocks": [b.to_config() for b in self.blocks],
            "classifier": self.classifier.to_config(),
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> PyramidTreeNet:
        # The official code's own exports also carry these net-level knobs; accept their
        # defaults (no drop), refuse anything that would change the network silently.
        extra = {k: v for k, v in config.items() if k not in ("name", "blocks", "classifier")}
        defaults = {"tree_node_config": {}, "cell_drop_rate": 0, "cell_drop_scheme": "linear"}
        for k, v in extra.items():
            if k not in defaults or (v != defaults[k] and k != "cell_drop_scheme"):
                raise ProxylessError(f"PyramidTreeNet: unsupported key {k}={v!r}")
        blocks = config.get("blocks")
        if not isinstance(blocks, list) or "classifier" not in config:
            raise ProxylessError("PyramidTreeNet: needs a 'blocks' list and a 'classifier'")
        built = []
        for b in blocks:
            name = b.get("name") if isinstance(b, Mapping) else None
            built.append(BLOCKS.get(name).from_config(b))
        classifier = layer_from_config(config["classifier"])
        return construct(cls, {"blocks": built, "classifier": classifier}, "PyramidTreeNet")
