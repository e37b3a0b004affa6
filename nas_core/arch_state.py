"""Architecture parameters α of every searchable layer, kept apart from the network weights.

α never lives inside the model (and so never inside DDP): the searcher's arch optimiser, the
cluster's architecture actor and checkpoints all handle this one object. Layers may have
different candidate counts, so α is a list of 1-D leaf tensors, one per layer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from pydantic import Field

from nas_core.config import ConfigModel, FiniteFloat
from nas_core.errors import ProxylessError
from nas_core.ops import ZERO


class ArchLayerConfig(ConfigModel):
    """One layer of an `ArchState` as JSON."""

    name: str
    candidates: tuple[str, ...] = Field(strict=False)  # JSON lists
    alpha: tuple[FiniteFloat, ...] = Field(strict=False)


class ArchStateConfig(ConfigModel):
    """An `ArchState` as JSON: its layers in α order."""

    layers: tuple[ArchLayerConfig, ...] = Field(strict=False)


class ArchState:
    """α logits per searchable layer, with the candidate names they choose between."""

    def __init__(
        self,
        layer_names: Sequence[str],
        candidates: Sequence[Sequence[str]],
        alphas: Sequence[Sequence[float] | torch.Tensor] | None = None,
    ) -> None:
        if len(layer_names) != len(candidates):
            raise ProxylessError("ArchState: one candidate list per layer name is needed")
        self.layer_names = list(layer_names)
        self.candidates = [list(c) for c in candidates]
        if alphas is None:
            alphas = [torch.zeros(len(c)) for c in self.candidates]
        if len(alphas) != len(self.candidates):
            raise ProxylessError(
                f"ArchState: {len(alphas)} alpha vectors for {len(self.candidates)} layers"
            )
        self.alphas: list[torch.Tensor] = []
        for name, cands, a in zip(self.layer_names, self.candidates, alphas, strict=True):
            t = torch.as_tensor(a, dtype=torch.float32).detach().clone()
            if t.shape != (len(cands),) or not torch.isfinite(t).all():
                raise ProxylessError(
                    f"ArchState: alpha of {name} must be {len(cands)} finite numbers"
                )
            self.alphas.append(t.requires_grad_(True))

    def __len__(self) -> int:
        return len(self.alphas)

    def parameters(self) -> list[torch.Tensor]:
        """The α tensors, for an optimiser."""
        return self.alphas

    def init_normal_(self, generator: torch.Generator, std: float = 1e-3) -> ArchState:
        """α ~ N(0, std²), the official initialisation."""
        with torch.no_grad():
            for a in self.alphas:
                a.copy_(torch.randn(a.shape, generator=generator) * std)
        return self

    def probs(self, layer: int) -> torch.Tensor:
        """softmax(α) of one layer, differentiable."""
        return torch.softmax(self.alphas[layer], dim=0)

    def all_probs(self) -> list[torch.Tensor]:
        return [torch.softmax(a, dim=0) for a in self.alphas]

    def entropy(self) -> torch.Tensor:
        """Entropy (nats) of each layer's distribution, shape [layers]."""
        ents = [-(p * torch.log(p.clamp_min(1e-12))).sum() for p in self.all_probs()]
        return torch.stack(ents).detach()

    def argmax(self) -> list[str]:
        """The most likely candidate of every layer (ties go to the first)."""
        return [c[int(torch.argmax(a))] for c, a in zip(self.candidates, self.alphas, strict=True)]

    def zero_share(self) -> float | None:
        """Share of the layers that may choose Zero whose most likely candidate is Zero (None
        when no layer may): the accuracy-only search's collapse shows here first."""
        zero_able = [i for i, c in enumerate(self.candidates) if ZERO in c]
        if not zero_able:
            return None
        chosen = self.argmax()
        return sum(chosen[i] == ZERO for i in zero_able) / len(zero_able)

    def check_finite(self, step: int) -> None:
        """Stop a search whose α turned NaN/inf instead of deriving garbage from it."""
        for name, a in zip(self.layer_names, self.alphas, strict=True):
            if not bool(torch.isfinite(a).all()):
                raise ProxylessError(
                    f"architecture parameters of layer {name} are not finite after step {step} "
                    "(the arch loss overflowed); lower strategy.lambda2 or strategy.arch_lr"
                )

    def zero_grad(self) -> None:
        for a in self.alphas:
            a.grad = None

    def to_config(self) -> dict[str, Any]:
        """JSON-safe: names, candidates and α values."""
        return {
            "layers": [
                {"name": n, "candidates": list(c), "alpha": a.detach().tolist()}
                for n, c, a in zip(self.layer_names, self.candidates, self.alphas, strict=True)
            ]
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ArchState:
        layers = ArchStateConfig.from_config(config).layers
        return cls(
            [layer.name for layer in layers],
            [layer.candidates for layer in layers],
            [layer.alpha for layer in layers],
        )

    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain lists only, so `torch.load(weights_only=True)` can read it."""
        return {
            "layer_names": list(self.layer_names),
            "candidates": [list(c) for c in self.candidates],
            "alphas": [a.detach().clone() for a in self.alphas],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Copy α in place (optimisers holding these tensors stay valid)."""
        if state["candidates"] != self.candidates:
            raise ProxylessError("ArchState: checkpoint was made for another search space")
        with torch.no_grad():
            for a, b in zip(self.alphas, state["alphas"], strict=True):
                a.copy_(torch.as_tensor(b))

    def log_mass(self, involved: Sequence[Sequence[int]]) -> list[float]:
        """log Σ exp α over each layer's `involved` candidates (host floats, float64)."""
        out = []
        for a, inv in zip(self.alphas, involved, strict=True):
            values = a.detach().tolist()
            top = max(values[i] for i in inv)
            out.append(top + math.log(sum(math.exp(values[i] - top) for i in inv)))
        return out

    def rescale_(self, involved: Sequence[Sequence[int]], old: Sequence[float]) -> None:
        """Offset each layer's α[involved] so its `log_mass` is `old` again (its value before
        the update).

        After a two-path update this leaves the probability of every unsampled path unchanged:
        only the mass already held by the two sampled paths is redistributed between them.
        Host arithmetic and one subtraction per layer: α is dozens of tiny tensors, and this
        runs in every arch step, on the architecture actor's critical path.
        """
        with torch.no_grad():
            for a, inv, before, now in zip(
                self.alphas, involved, old, self.log_mass(involved), strict=True
            ):
                delta = [0.0] * len(a)
                for i in inv:
                    delta[i] = now - before
                a.sub_(torch.tensor(delta, dtype=a.dtype, device=a.device))
