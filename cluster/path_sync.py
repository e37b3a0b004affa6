"""Weight synchronisation of one sampled path: the traffic of one compact net, not a super-net.

Every rank samples the same path at every step from (seed, step), so every rank knows which
parameters have gradients without any exchange: after the backward, exactly the fixed parts and
the running candidates have `grad` set (`zero_grad(set_to_none=True)`), in the same
`parameters()` order everywhere. `PathSync` all-reduces (averages) just those gradients,
flattened into a few buckets, and after the optimizer step broadcasts rank 0's BatchNorm
buffers of the same modules, which is what DDP's `broadcast_buffers` did for the whole net.
DDP over the super-net (`find_unused_parameters=True`) moved every candidate's gradient bucket,
zeros for the unused ones, and every candidate's buffers: about 5× the compact net at the
paper's space, growing with the number of candidates.

Paths must really agree for this to be right, so every `check_every` steps the ranks compare
their sampled paths (one all-reduce of 2 × layers integers) and stop with an error if they
differ.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.distributed as dist

from nas_core.errors import ProxylessError
from nas_core.supernet import SuperNet

BUCKET_BYTES = 25 * 1024 * 1024  # DDP's default bucket size


def _buckets(tensors: Sequence[torch.Tensor], limit: int) -> Iterator[list[torch.Tensor]]:
    """Consecutive groups of one dtype of at most `limit` bytes (a larger tensor goes alone)."""
    bucket: list[torch.Tensor] = []
    size = 0
    for t in tensors:
        nbytes = t.numel() * t.element_size()
        if bucket and (size + nbytes > limit or t.dtype != bucket[0].dtype):
            yield bucket
            bucket, size = [], 0
        bucket.append(t)
        size += nbytes
    if bucket:
        yield bucket


def _flat_collective(tensors: Sequence[torch.Tensor], collective, limit: int) -> int:
    """Run `collective` on each flattened bucket in place; the bytes it moved."""
    moved = 0
    for bucket in _buckets(tensors, limit):
        flat = torch.cat([t.reshape(-1) for t in bucket])
        collective(flat)
        offset = 0
        for t in bucket:
            n = t.numel()
            t.copy_(flat[offset : offset + n].view_as(t))
            offset += n
        moved += flat.numel() * flat.element_size()
    return moved


class PathSync:
    """Keeps K ranks' super-nets equal by exchanging only the sampled path's state."""

    def __init__(self, world_size: int, check_every: int = 100) -> None:
        self.world_size, self.check_every = world_size, check_every
        self._bytes, self._steps = 0, 0  # gradient bytes all-reduced since `bytes_per_step`

    def start(self, net: SuperNet) -> None:
        """Every rank takes rank 0's parameters and buffers (once, the whole net)."""
        state = [*net.parameters(), *net.buffers()]
        with torch.no_grad():
            _flat_collective(state, lambda t: dist.broadcast(t, 0), BUCKET_BYTES)

    def gradients(self, net: SuperNet, step: int) -> None:
        """Average the sampled path's gradients over the ranks (after the backward)."""
        if step % self.check_every == 0:
            self.check_paths(net, step)
        grads = [p.grad for p in net.parameters() if p.grad is not None]

        def mean(t: torch.Tensor) -> None:
            dist.all_reduce(t)
            t.div_(self.world_size)

        self._bytes += _flat_collective(grads, mean, BUCKET_BYTES)
        self._steps += 1

    def bytes_per_step(self) -> float:
        """Mean gradient bytes all-reduced per weight step since the last call."""
        mean = self._bytes / max(self._steps, 1)
        self._bytes, self._steps = 0, 0
        return mean

    def buffers(self, net: SuperNet) -> None:
        """Rank 0's BatchNorm statistics of the sampled path on every rank (after the step)."""
        with torch.no_grad():
            _flat_collective(net.active_buffers(), lambda t: dist.broadcast(t, 0), BUCKET_BYTES)

    def check_paths(self, net: SuperNet, step: int) -> None:
        """Raise on every rank if any two ranks run different paths at `step`."""
        path = torch.tensor([op.active for op in net.mixed_ops], dtype=torch.int64)
        device = next(net.parameters()).device
        both = torch.cat([path, -path]).to(device)
        dist.all_reduce(both, op=dist.ReduceOp.MAX)  # → (max over ranks, −min over ranks)
        top, bottom = both.cpu().chunk(2)
        if not torch.equal(top, -bottom):
            raise ProxylessError(
                f"step {step}: the ranks sampled different paths (their seeds or step counters "
                "disagree), so their gradients cannot be averaged"
            )
