"""Expected and derived latency from a `LatencyTable`.

E[latency] = fixed parts + Σ_layers Σ_i p_i·T(o_i), differentiable in α (p over a two-path
step's sampled pair in that mode, see `LatencyModel.expected`; Zero costs 0, the
MBConv `idskip` follows the block's shortcut). A calibrated table predicts a·(that sum) + b
(`LatencyTable.scale`, `offset_ms`, fitted on measured whole nets). A missing entry is an
error listing every missing key in the table's own format — never a silent default (the
official code used 200 ms).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

from nas_core.arch_state import ArchState
from nas_core.architecture import Architecture
from nas_core.errors import ProxylessError
from nas_core.latency.layout import net_layout
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
        # a calibrated table's correction a·Σ + b folds into the costs (a·T) and the fixed part
        # (a·fixed + b), so every E[latency] and sum below is calibrated alike
        a = table.scale
        self.fixed_ms = a * sum(table.mean(k) for k in layout.fixed) + table.offset_ms
        self.costs = [
            torch.tensor(
                [0.0 if k is None else a * table.mean(k) for k in layer], dtype=torch.float64
            )
            for layer in layout.layers
        ]
        # the same costs as one (layers × most candidates) matrix, and where its entries are:
        # E[latency] is then a handful of ops whatever the layer count (it runs in every arch
        # step, on the architecture actor's critical path)
        width = max(len(c) for c in self.costs)
        self._mask = torch.tensor([[i < len(c) for i in range(width)] for c in self.costs])
        self._cost_matrix = torch.zeros(self._mask.shape, dtype=torch.float64)
        self._cost_matrix[self._mask] = torch.cat(self.costs)

    def expected(
        self, arch_state: ArchState, involved: Sequence[Sequence[int]] | None = None
    ) -> torch.Tensor:
        """E[latency] in ms under softmax(α), differentiable in α.

        With `involved` (a two-path arch step's sampled pair of each layer) each layer's
        probabilities are renormalised over its pair, as the official code's
        `current_prob_over_ops` does in two-path mode: the latency term then moves only the
        pair's α, like the CE term, and the unsampled paths keep their probability.
        """
        flat = torch.cat(list(arch_state.alphas)).double()
        mask = self._mask.to(flat.device)
        logits = torch.full(mask.shape, -math.inf, dtype=torch.float64, device=flat.device)
        logits = logits.masked_scatter(mask, flat)
        if involved is not None:
            pair = torch.zeros_like(mask)
            for layer, indices in enumerate(involved):
                pair[layer, list(indices)] = True
            logits = logits.masked_fill(~pair, -math.inf)
        probs = torch.softmax(logits, dim=1)
        return self.fixed_ms + (probs * self._cost_matrix.to(flat.device)).sum()

    def uniform(self) -> float:
        return self.fixed_ms + sum(float(c.mean()) for c in self.costs)

    def fastest(self) -> float:
        """The latency of the space's fastest net: every layer its cheapest op."""
        return self.fixed_ms + sum(float(c.min()) for c in self.costs)

    def slowest(self) -> float:
        """The latency of the space's slowest net: every layer its most expensive op."""
        return self.fixed_ms + sum(float(c.max()) for c in self.costs)

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
    return table.scale * sum(table.mean(k) for k in keys if k is not None) + table.offset_ms


def net_config_keys(config: Mapping[str, Any], resolution: int) -> list[str]:
    """The table keys of a standalone net.config, each as often as its part occurs."""
    layout = net_layout(config, resolution)
    if layout.layers:
        raise ProxylessError("a super-net config has no single latency: derive a net first")
    return list(layout.fixed)


def net_config_latency(config: Mapping[str, Any], table: LatencyTable, resolution: int) -> float:
    keys = net_config_keys(config, resolution)
    _check(table, keys)
    return table.scale * sum(table.mean(k) for k in keys) + table.offset_ms
