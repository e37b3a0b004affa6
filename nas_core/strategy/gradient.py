"""Proxyless-G: the BinaryConnect gradient through binary gates (paper §3.2.1).

signal: sample two paths per layer (or involve all, `full`), run the held-out batch through
the gated super-net, and return ∂CE/∂α — exact for the involved paths thanks to the
straight-through gates in `SuperNet.set_gates` — with the CE value.
apply: add the latency term, which depends on α only (so it is computed once, where α lives),
take one Adam step, and in two-path mode offset the involved α so the unsampled paths keep
their probability.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nas_core.arch_state import ArchState
from nas_core.device import to_device_async, to_host
from nas_core.errors import ProxylessError
from nas_core.precision import full_precision
from nas_core.sampling import sample_gates
from nas_core.strategy.base import STRATEGIES, Strategy
from nas_core.supernet import SuperNet


@dataclass(frozen=True)
class GradientSignal:
    """∂CE/∂α of one batch (per layer), the CE and accuracy, and the involved paths."""

    grads: tuple[torch.Tensor, ...]
    ce: float
    accuracy: float
    involved: tuple[tuple[int, ...], ...]


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
        grads = [g.clone() for g in packed[:-2].split([len(a) for a in net.arch_state.alphas])]
        ce_value, right = packed[-2:].tolist()
        return GradientSignal(
            tuple(grads),
            ce_value,
            right / len(y),
            tuple(s.involved for s in samples),
        )

    def _latency_factor(
        self, arch_state: ArchState, ce: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(the CE-gradient multiplier, the latency loss term), both functions of α."""
        cfg, one = self.config, torch.ones((), dtype=torch.float64)
        if self.latency is None or cfg.lambda2 == 0:
            return one, torch.zeros((), dtype=torch.float64)
        expected = self.latency.expected(arch_state)
        if cfg.latency_loss == "add":
            return one, cfg.lambda2 * expected / self.target_ms
        factor = (torch.log(expected) / math.log(self.target_ms)) ** cfg.lambda2
        return factor, ce * factor

    def apply(
        self,
        signals: Sequence[GradientSignal],
        arch_state: ArchState,
        optimizer: torch.optim.Optimizer,
    ) -> dict[str, float]:
        if not signals:
            raise ValueError("an arch step needs at least one signal")
        involved = signals[0].involved
        if any(s.involved != involved for s in signals):
            raise ProxylessError("ranks sampled different paths: their step seeds disagree")
        n = len(signals)
        ce = sum(s.ce for s in signals) / n
        ce_grads = [sum(s.grads[i] for s in signals) / n for i in range(len(arch_state))]
        optimizer.zero_grad(set_to_none=True)
        factor, lat_term = self._latency_factor(arch_state, ce)
        if lat_term.requires_grad:
            lat_term.backward()
        with torch.no_grad():
            scale = float(factor.detach())
            for a, g in zip(arch_state.alphas, ce_grads, strict=True):
                total = scale * g.to(a.device, a.dtype)
                a.grad = total if a.grad is None else a.grad + total
        old = [
            a.detach()[list(inv)].clone()
            for a, inv in zip(arch_state.alphas, involved, strict=True)
        ]
        optimizer.step()
        if self.config.grad_mode == "two":
            for layer, (inv, prev) in enumerate(zip(involved, old, strict=True)):
                arch_state.rescale_(layer, inv, prev)
        metrics = {"arch/ce": ce, "arch/accuracy": sum(s.accuracy for s in signals) / n}
        if self.latency is not None:
            metrics["arch/expected_latency_ms"] = float(self.latency.expected(arch_state).detach())
        return metrics
