"""The over-parameterised super-net: every candidate at every searchable layer.

Weights are the module's parameters; α lives in `self.arch_state` (an `ArchState`, not a submodule),
so `supernet.parameters()` is exactly what the weight optimiser and DDP see. Per step the
caller sets which path(s) run: `set_paths` (weight step / eval), `set_gates` (BinaryConnect arch
step, two-path or full), `set_weighted` (DARTS-style, for comparison only).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from nas_core.arch_state import ArchState
from nas_core.architecture import Architecture
from nas_core.errors import ProxylessError
from nas_core.mixed_op import MixedOp
from nas_core.ops import create_op
from nas_core.sampling import GateSample
from nas_core.spaces import LayerSpec, SearchSpace


class SuperNet(nn.Module):
    """A space's network with a `MixedOp` at each searchable layer, plus its `ArchState`."""

    def __init__(self, space: SearchSpace, arch_state: ArchState | None = None) -> None:
        super().__init__()
        self.space = space
        self.specs = space.layer_specs()
        mixed: list[MixedOp] = []

        def make(spec: LayerSpec) -> MixedOp:
            op = MixedOp(
                [
                    create_op(n, spec.in_channels, spec.out_channels, spec.stride)
                    for n in spec.candidates
                ]
            )
            mixed.append(op)
            return op

        self.net = space.build(make)
        self._mixed = tuple(mixed)  # in α order (the build order), not modules() order
        self._fixed_buffers: list[torch.Tensor] | None = None
        if arch_state is None:
            arch_state = ArchState([s.name for s in self.specs], [s.candidates for s in self.specs])
        elif arch_state.candidates != [list(s.candidates) for s in self.specs]:
            raise ProxylessError("ArchState does not match this search space's layers")
        self.arch_state = arch_state

    @property
    def mixed_ops(self) -> tuple[MixedOp, ...]:
        return self._mixed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def active_buffers(self) -> list[torch.Tensor]:
        """The buffers (BN statistics) of the fixed parts and of each layer's running candidate,
        in module order: what a single-path step updates."""
        if self._fixed_buffers is None:
            inside = {id(b) for op in self._mixed for b in op.buffers()}
            self._fixed_buffers = [b for b in self.net.buffers() if id(b) not in inside]
        running = [b for op in self._mixed for b in op.candidates[op.active].buffers()]
        return [*self._fixed_buffers, *running]

    def set_paths(self, indices: Sequence[int]) -> None:
        """Single-path mode: layer i runs candidate indices[i]."""
        for op, i in zip(self._mixed, indices, strict=True):
            op.set_single(i)

    def set_argmax(self) -> None:
        self.set_paths([int(torch.argmax(a)) for a in self.arch_state.alphas])

    def set_gates(
        self, samples: Sequence[GateSample], alphas: Sequence[torch.Tensor] | None = None
    ) -> None:
        """Binary-gate mode; gates are straight-through so α receives the BinaryConnect gradient.

        The softmax runs over the involved paths only (renormalised, as the paper's two-path
        sampling prescribes); with all paths involved this is the full-mode gradient. `alphas`
        (default `self.arch_state.alphas`) may be copies on the net's device, so that the gate
        gradients never leave it; they are picked by integer index, which needs no host sync.
        """
        alphas = self.arch_state.alphas if alphas is None else alphas
        for op, a, s in zip(self._mixed, alphas, samples, strict=True):
            p = torch.softmax(torch.stack([a[i] for i in s.involved]), 0)
            # a row of eye, not `onehot[slot] = 1.0`: that writes a host scalar (a CUDA sync)
            onehot = torch.eye(len(p), dtype=p.dtype, device=p.device)[s.active_slot]
            op.set_gated(s.involved, s.active_slot, onehot - p.detach() + p)

    def set_weighted(self) -> None:
        """DARTS-style continuous relaxation: every candidate runs, weighted by softmax(α)."""
        for op, a in zip(self._mixed, self.arch_state.alphas, strict=True):
            op.set_weighted(torch.softmax(a, 0))

    def derive(self) -> Architecture:
        """argmax α per layer (a chosen Zero leaves the identity shortcut)."""
        return Architecture(self.space, tuple(self.arch_state.argmax()))

    def to_config(self) -> dict[str, Any]:
        return {"space": self.space.to_config(), "arch": self.arch_state.to_config()}

    def zero_init_residual_(self) -> int:
        """Zero the last BN γ of every candidate that sits beside an identity shortcut.

        Each freshly sampled candidate then adds ~nothing to its block, so switching paths
        perturbs the features instead of replacing them (Goyal et al.'s zero-γ). Without it a
        small-budget one-shot search did not learn at all: digits stayed at chance for 24
        epochs. Returns how many BN layers were zeroed.
        """
        zeroed = 0
        for spec, op in zip(self.specs, self._mixed, strict=True):
            if not spec.shortcut:
                continue
            for cand in op.candidates:
                last_bn = [m for m in cand.modules() if isinstance(m, nn.BatchNorm2d)][-1:]
                for bn in last_bn:
                    nn.init.zeros_(bn.weight)
                    zeroed += 1
        return zeroed

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SuperNet:
        return cls(SearchSpace.from_config(config["space"]), ArchState.from_config(config["arch"]))
