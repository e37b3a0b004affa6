"""The ranks of one search as its loop sees them: a single process, or a torch process group.

The loop and the strategies reduce over a `RankGroup` without knowing which it is: evaluation
sums its counts, Proxyless-G averages its gate gradients, REINFORCE gathers its samples, the
distributed search hands rank 0's actor reply to every rank (`from_rank0`) and watches the
ranks drift apart (`spread`). A single process is rank 0 of 1, where every reduction is the
identity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.distributed as dist


class RankGroup(Protocol):
    """What a reduction over the search's ranks needs."""

    rank: int
    world_size: int

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """`tensor` summed over the ranks (every rank gets the sum)."""

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Every rank's `tensor` (same shape everywhere) concatenated along dim 0 in rank
        order (every rank gets the whole)."""

    def from_rank0(self, value: Any) -> Any:
        """Rank 0's `value` (any picklable object; the other ranks' are ignored) on every
        rank."""


@dataclass(frozen=True)
class SingleProcess:
    """A search that runs in one process."""

    rank: int = 0
    world_size: int = 1

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def from_rank0(self, value: Any) -> Any:
        return value


@dataclass(frozen=True)
class ProcessGroupRanks:
    """The ranks of the default torch process group (gloo on CPU, NCCL on GPU).

    Collectives run on `device` (NCCL takes only CUDA tensors); each result comes back on the
    device its input was on.
    """

    rank: int
    world_size: int
    device: torch.device

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.world_size == 1:
            return tensor
        on = tensor.to(self.device)
        dist.all_reduce(on)
        return on.to(tensor.device)

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.world_size == 1:
            return tensor
        on = tensor.to(self.device).contiguous()
        parts = [torch.empty_like(on) for _ in range(self.world_size)]
        dist.all_gather(parts, on)
        return torch.cat(parts).to(tensor.device)

    def from_rank0(self, value: Any) -> Any:
        if self.world_size == 1:
            return value
        box = [value]
        # torch picks the device for a pickled object: the CPU on gloo, the current CUDA device
        # on NCCL (Ray Train sets it to this rank's GPU, `device`)
        dist.broadcast_object_list(box, src=0)
        return box[0]


def spread(ranks: RankGroup, tensor: torch.Tensor) -> torch.Tensor:
    """Elementwise max − min of `tensor` over the ranks (0 where they agree; zeros for one
    process), on every rank: one gather."""
    every = ranks.gather(tensor.unsqueeze(0))
    return every.max(0).values - every.min(0).values
