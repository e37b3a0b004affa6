"""The two ways a net is scored: eval mode (running BN statistics), or each batch's own
statistics with the running ones left untouched, as the official search scores super-net paths.

The super-net's running statistics blend many paths, so eval-mode scores of one path are
biased; batch statistics are what the official code uses for the REINFORCE reward and for the
derived net's valid accuracy during search. Unlike the official `validate(use_train_mode=True)`,
which puts the whole net in train mode, dropout stays off and the running statistics are put
back: scoring neither draws random numbers nor moves what the weight steps see. A trained
standalone net is scored in eval mode.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import torch
from torch import nn

from nas_core.errors import ProxylessError


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
    scoring changes nothing the weight steps see."""
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
