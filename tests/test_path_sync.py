"""Path-only weight sync over a real gloo process group of two ranks (no Ray needed).

Each rank takes a weight step on its own batch; with `PathSync` the gradients become the mean
of the two ranks' own gradients, only the sampled path's gradients move, BN statistics follow
rank 0, and ranks that sample different paths stop with an error.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from cluster.path_sync import PathSync
from nas_core.errors import ProxylessError
from nas_core.sampling import sample_paths, step_generator
from nas_core.spaces import create_space
from nas_core.supernet import SuperNet
from tests.outside import two_gloo_ranks

SPACE = {"name": "mobilenet", "B": 2, "F": 0.25, "resolution": 16, "num_classes": 4}


def _net() -> SuperNet:
    torch.manual_seed(0)
    return SuperNet(create_space(**SPACE))


def _grads(net: SuperNet, rank: int) -> dict[str, torch.Tensor]:
    """This rank's own gradients on its own batch, with the net's current path."""
    g = torch.Generator().manual_seed(10 + rank)
    x, y = torch.randn(8, 3, 16, 16, generator=g), torch.randint(0, 4, (8,), generator=g)
    net.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(net(x), y).backward()
    return {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}


def _rank(rank: int) -> None:
    net, sync = _net(), PathSync(2, check_every=1)
    net.set_paths(sample_paths(net.arch_state, step_generator(0, 0)))
    own = _grads(net, rank)
    theirs = [None, None]
    dist.all_gather_object(theirs, own)
    _grads(net, rank)
    sync.gradients(net, step=0)
    for name, p in net.named_parameters():
        if name in own:
            torch.testing.assert_close(p.grad, (theirs[0][name] + theirs[1][name]) / 2)
    moved = sync.bytes_per_step()
    path_bytes = sum(g.numel() * 4 for g in own.values())
    all_bytes = sum(p.numel() * 4 for p in net.parameters())
    assert moved == path_bytes < all_bytes / 2, (moved, path_bytes, all_bytes)
    sync.buffers(net)  # after the step every rank holds rank 0's BN statistics
    stats = [None, None]
    dist.all_gather_object(stats, [b.clone() for b in net.active_buffers()])
    for a, b in zip(*stats, strict=True):
        torch.testing.assert_close(a, b)
    # a rank on another path: both stop, neither averages mismatched gradients
    other = [(i + rank) % len(op.candidates) for i, op in enumerate(net.mixed_ops)]
    net.set_paths(other)
    with pytest.raises(ProxylessError, match="step 7: the ranks sampled different paths"):
        sync.gradients(net, step=7)


def test_two_ranks_average_only_the_sampled_path(tmp_path: Path) -> None:
    two_gloo_ranks(_rank, tmp_path)
