"""Proxyless-G: the BinaryConnect gradient through binary gates (paper §3.2.1).

signal: sample two paths per layer (or involve all, `full`), run the held-out batch through
the gated super-net, and return ∂CE/∂α — exact for the involved paths thanks to the
straight-through gates in `SuperNet.set_gates` — with the CE value.
apply: add the latency term, which depends on α only (so it is computed once, where α lives;
in two-path mode over each layer's sampled pair, as the official code does), take one Adam
step, and in two-path mode offset the involved α so the unsampled paths keep their
probability.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from nas_core.arch_state import ArchState
from nas_core.device import to_device_async, to_host
from nas_core.errors import ProxylessError
from nas_core.precision import full_precision
from nas_core.ranks import RankGroup
from nas_core.sampling import sample_gates
from nas_core.strategy.base import STRATEGIES, Strategy
from nas_core.supernet import SuperNet


@dataclass(frozen=True)
class GradientSignal:
    """∂CE/∂α of one batch (per layer), the CE and accuracy, and the involved paths.

    Host arrays, not tensors: the signal crosses to the architecture actor every arch step,
    and Ray moves a numpy array several times faster than a tensor.
    """

    grads: tuple[np.ndarray, ...]
    ce: float
    accuracy: float
    involved: tuple[tuple[int, ...], ...]

    def reduce(self, ranks: RankGroup) -> GradientSignal:
        """The mean over the ranks, in one all-reduce; every rank gets it. The ranks must have
        sampled the same gates (the same step seed), which the all-reduce checks on the way."""
        if ranks.world_size == 1:
            return self
        # crc32 < 2**32: K equal codes sum exactly in float64, so their mean is the code again
        code = float(zlib.crc32(repr(self.involved).encode()))
        flat = np.concatenate([*self.grads, [self.ce, self.accuracy, code]])
        mean = ranks.sum(torch.from_numpy(flat)).cpu().numpy() / ranks.world_size
        if mean[-1] != code:
            raise ProxylessError(
                "ranks sampled different gates in one arch step: their step seeds disagree"
            )
        ends = np.cumsum([len(g) for g in self.grads])[:-1]
        grads = tuple(np.split(mean[:-3], ends))
        return GradientSignal(grads, float(mean[-3]), float(mean[-2]), self.involved)


@STRATEGIES.register("gradient")
class GradientStrategy(Strategy):
    def signal(
        self, net: SuperNet, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> GradientSignal:
        # fp32 whatever the caller's autocast says: the gate gradient is a small difference of
        # large products (see nas_core.precision)
        with full_precision(x.device.type):
            samples = sample_gates(net.arch_state, generator, self.config.grad_mode)
            # α copied to the net's device in one piece: gates, gate gradients and ∂CE/∂α stay
            # there, and the host reads them back in one transfer below
            flat = to_device_async(torch.cat([a.detach() for a in net.arch_state.alphas]), x.device)
            flat.requires_grad_(True)
            net.set_gates(samples, flat.split([len(a) for a in net.arch_state.alphas]))
            logits = net(x)
            ce = F.cross_entropy(logits, y)
            # autograd.grad, not backward: weights must not collect gradients in an arch step
            (grad,) = torch.autograd.grad(ce, flat)
            correct = (logits.argmax(1) == y).sum()
        packed = to_host(torch.cat([grad, ce.detach().reshape(1), correct.reshape(1).to(grad)]))
        sizes = [len(a) for a in net.arch_state.alphas]
        grads = tuple(g.numpy().copy() for g in packed[:-2].split(sizes))
        ce_value, right = packed[-2:].tolist()
        return GradientSignal(
            grads,
            ce_value,
            right / len(y),
            tuple(s.involved for s in samples),
        )

    def _latency_factor(
        self,
        arch_state: ArchState,
        ce: float,
        involved: Sequence[Sequence[int]] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(the CE-gradient multiplier, the latency loss term), both functions of α; E over
        each layer's `involved` pair in two-path mode, over every candidate in full mode."""
        cfg, one = self.config, torch.ones((), dtype=torch.float64)
        if self.latency is None or cfg.lambda2 == 0:
            return one, torch.zeros((), dtype=torch.float64)
        expected = self.latency.expected(arch_state, involved)
        if cfg.latency_loss == "add":
            return one, cfg.lambda2 * expected / self.target_ms
        if (e := float(expected.detach())) <= 1:  # log E <= 0: undefined, not a λ₂ problem
            raise ProxylessError(
                f"E[latency] fell to {e:.3g} ms: latency_loss mul needs E above 1 ms "
                "(log E / log T); use latency_loss add for a table this fast"
            )
        factor = (torch.log(expected) / math.log(self.target_ms)) ** cfg.lambda2
        return factor, ce * factor

    def apply(
        self, signal: GradientSignal, arch_state: ArchState, optimizer: torch.optim.Optimizer
    ) -> dict[str, float]:
        involved, ce = signal.involved, signal.ce
        two = self.config.grad_mode == "two"
        optimizer.zero_grad(set_to_none=True)
        factor, lat_term = self._latency_factor(arch_state, ce, involved if two else None)
        if lat_term.requires_grad:
            lat_term.backward()
        with torch.no_grad():
            scale = float(factor.detach())
            for a, g in zip(arch_state.alphas, signal.grads, strict=True):
                total = scale * torch.tensor(g, dtype=a.dtype, device=a.device)
                a.grad = total if a.grad is None else a.grad + total
        old = arch_state.log_mass(involved) if two else []
        optimizer.step()
        if two:
            arch_state.rescale_(involved, old)
        metrics = {"arch/ce": ce, "arch/accuracy": signal.accuracy}
        if self.latency is not None:
            with torch.no_grad():
                metrics["arch/expected_latency_ms"] = float(self.latency.expected(arch_state))
        return metrics
