"""Mixed op with path-level binarisation (ProxylessNAS §3.2).

A `MixedOp` holds the candidates of one searchable layer but no α (see `arch_state`). Its mode
is instance state set by the super-net for each step — never a class-global switch:

- *single*: one candidate (sampled or argmax) runs; only it keeps activations, so memory does
  not grow with the number of candidates. Used for weight steps and evaluation.
- *gated*: the output is Σ_j g_j·o_j(x) over the involved paths (two sampled, or all for
  *full*) with binary gates g. Forward runs only the active path; backward recomputes the
  other involved paths without keeping their graphs and returns ∂L/∂g_j = ⟨∂L/∂y, o_j(x)⟩,
  so activation memory is one path's in both modes (full costs N forwards, not N× memory).
  The gates are straight-through tensors (one-hot value, softmax(α) gradient), so autograd
  delivers ∂L/∂α_i = Σ_j ∂L/∂g_j · p_j(δ_ij − p_i) — the BinaryConnect arch gradient.
- *weighted*: DARTS-style Σ_k w_k·o_k(x) over all candidates, kept for comparison (O(N) memory).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from nas_core.config import checked_kwargs, config_list, construct, typed
from nas_core.layers import LAYERS, Layer, layer_from_config
from nas_core.ops import op_name


class _BinaryGateFn(torch.autograd.Function):
    """y = o_active(x) forward; backward gives ∂L/∂x through the active path and ∂L/∂g.

    Autocast-safe: backward recomputes the other paths under the autocast state the forward
    ran in (what `torch.amp.custom_fwd`/`custom_bwd` do, here for whichever device x is on, so
    a bf16 input never meets fp32 weights), and the products ⟨∂L/∂y, o_j(x)⟩ are summed in fp32.
    """

    @staticmethod
    def forward(ctx, x, gates, op, involved, active_slot):
        saved_x = x.detach().requires_grad_(x.requires_grad)
        with torch.enable_grad():
            out = op.candidates[involved[active_slot]](saved_x)
        ctx.op, ctx.involved, ctx.active_slot = op, involved, active_slot
        ctx.gate_device, ctx.gate_dtype = gates.device, gates.dtype  # α may live on the CPU
        device_type = x.device.type
        ctx.autocast = (
            device_type,
            torch.is_autocast_enabled(device_type),
            torch.get_autocast_dtype(device_type),
        )
        ctx.saved_x, ctx.out = saved_x, out
        return out.detach()

    @staticmethod
    def backward(ctx, grad_out):
        saved_x, out = ctx.saved_x, ctx.out
        grad_x = None
        if saved_x.requires_grad and out.requires_grad:
            (grad_x,) = torch.autograd.grad(out, saved_x, grad_out)
        device_type, enabled, dtype = ctx.autocast
        with torch.no_grad(), torch.autocast(device_type, dtype=dtype, enabled=enabled):
            grad32 = grad_out.float()
            gate_grads = []
            for slot, k in enumerate(ctx.involved):
                o = out if slot == ctx.active_slot else ctx.op.candidates[k](saved_x)
                gate_grads.append((grad32 * o.float()).sum())
        del ctx.saved_x, ctx.out
        gate_grad = torch.stack(gate_grads).to(ctx.gate_device, ctx.gate_dtype)
        return grad_x, gate_grad, None, None, None


@LAYERS.register()
class MixedOp(Layer):
    """The candidates of one searchable layer and the path(s) that run this step."""

    config_name = "MixedOp"

    @typed
    def __init__(self, candidates: Sequence[nn.Module]) -> None:
        super().__init__()
        self.candidates = nn.ModuleList(candidates)
        self.mode = "single"
        self.active = 0
        self._involved: list[int] = []
        self._active_slot = 0
        self._gates: torch.Tensor | None = None
        self._weights: torch.Tensor | None = None

    @property
    def names(self) -> list[str]:
        return [op_name(c.to_config()) or type(c).__name__ for c in self.candidates]

    def set_single(self, index: int) -> None:
        """Run only candidate `index`."""
        self.mode, self.active = "single", int(index)
        self._gates = self._weights = None

    def set_gated(self, involved: Sequence[int], active_slot: int, gates: torch.Tensor) -> None:
        """Binary-gate mode over `involved` paths; `gates[active_slot]` is the one that is on."""
        self.mode, self._involved, self._active_slot = "gated", list(involved), int(active_slot)
        self.active = self._involved[self._active_slot]
        self._gates, self._weights = gates, None

    def set_weighted(self, weights: torch.Tensor) -> None:
        """DARTS-style: output the `weights`-weighted sum of every candidate."""
        self.mode, self._weights, self._gates = "weighted", weights, None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "single":
            return self.candidates[self.active](x)
        if self.mode == "gated":
            return _BinaryGateFn.apply(x, self._gates, self, self._involved, self._active_slot)
        return sum(w * c(x) for w, c in zip(self._weights, self.candidates, strict=True))

    def to_config(self) -> dict[str, Any]:
        return {"name": self.config_name, "candidates": [c.to_config() for c in self.candidates]}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> MixedOp:
        kwargs = checked_kwargs(cls, config, cls.config_name)
        candidates = config_list(kwargs["candidates"], "MixedOp.candidates")
        return construct(cls, {"candidates": [layer_from_config(c) for c in candidates]}, "MixedOp")
