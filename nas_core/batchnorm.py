"""The two ways a net is scored: eval mode (running BN statistics), or each batch's own
statistics with the running ones left untouched, as the official search scores super-net paths.

The super-net's running statistics blend many paths, so eval-mode scores of one path are
biased; batch statistics are what the official code uses for the REINFORCE reward and for the
derived net's valid accuracy during search. Unlike the official `validate(use_train_mode=True)`,
which puts the whole net in train mode, dropout stays off and the running statistics are put
back: scoring neither draws random numbers nor moves what the weight steps see. A trained
standalone net is scored in eval mode.

The rule batch-statistics scoring rests on: **each batch mixes the classes as the data does.**
A batch of two or three classes normalised with its own mean and variance loses much of what
tells them apart (a class-sorted image folder scored in index order read 0.26 where the same
net's arch batches read 0.75). Every split scored this way is walked in `mixed_shard`'s fixed,
seeded order (the arch batches of a search and REINFORCE's sampled nets are shuffled already):
the same order on every resume and every rank count, so the ranks' sums still add up to the
whole split's, as the official search's randomly sampled valid loader does not guarantee.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from nas_core.errors import ProxylessError
from nas_core.sampling import Stream, step_generator

SCORING_SEED = 0  # one order for every run: a search's score does not depend on its seed


@contextlib.contextmanager
def eval_mode(net: nn.Module) -> Iterator[None]:
    """`net` in eval mode without gradients; its previous mode afterwards."""
    was = net.training
    net.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        net.train(was)


@contextlib.contextmanager
def batch_statistics(net: nn.Module) -> Iterator[None]:
    """Batch norm on each batch's own statistics (train mode), no gradients, every other
    module (dropout) in eval mode; the buffers the forwards change are restored on exit, so
    scoring changes nothing the weight steps see. Feed it class-mixed batches (`mixed_shard`)."""
    was = net.training
    saved = [b.clone() for b in net.buffers()]
    net.eval()
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.train()
    try:
        with torch.no_grad():
            yield
    finally:
        with torch.no_grad():
            for b, old in zip(net.buffers(), saved, strict=True):
                b.copy_(old)
        net.train(was)


def mixed_shard(dataset: Dataset, rank: int = 0, world_size: int = 1) -> Subset:
    """Rank `rank`'s share of `dataset` in a fixed seeded permutation, for batch-statistics
    scoring: positions rank, rank + world_size, ... of one order, so the shards of K ranks
    partition the split and each batch mixes its classes whatever order the split is stored in
    (an image folder's indices are grouped by class)."""
    n = len(dataset)  # type: ignore[arg-type]
    order = torch.randperm(n, generator=step_generator(SCORING_SEED, 0, Stream.SCORING_ORDER))
    return Subset(dataset, order[rank::world_size].tolist())


def no_single_batches(
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """`batches`, with a last batch of one sample joined to the one before: batch norm on a
    batch's statistics cannot normalise a 1×1 feature map of one image."""
    held = None
    for x, y in batches:
        if held is not None and len(y) == 1:
            x, y = torch.cat([held[0], x]), torch.cat([held[1], y])
        elif held is not None:
            yield held
        held = (x, y)
    if held is not None and len(held[1]) == 1:
        raise ProxylessError(
            "one image cannot be scored with batch statistics: give the valid split (or each "
            "worker's share of it) at least two"
        )
    if held is not None:
        yield held
