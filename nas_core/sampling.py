"""Path sampling from α through explicit generators.

The generator of step s is a pure function of (search seed, s), so every DDP rank (and a
resumed run) draws the same paths without talking to the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import torch

from nas_core.arch_state import ArchState


class Stream(IntEnum):
    """Every random stream of a run, named once: generator = f(seed, step, stream).

    The numbers are part of every saved run's trajectory: changing one changes what a seed
    means, so a new stream takes a new number.
    """

    WEIGHT_PATHS = 0  # the path each weight step trains
    ARCH = 1  # an arch step's gate samples or REINFORCE draws
    FIXED_PATH = 2  # benchmarks/search_step.py: the one path it times
    LATENCY_SAMPLES = 7  # architectures drawn to validate a latency table
    ALPHA_INIT = 9  # α ~ N(0, std²) at the start of a search
    SHUFFLE = 11  # a loader's permutation of each epoch
    LOADER_WORKERS = 12  # a loader's worker seeds (+ rank)
    AUGMENT = 13  # one sample's random augmentation in one epoch (`sample_seed`)
    SCORING_ORDER = 14  # the fixed order batch-statistics scoring walks a split in


class SplitStream(IntEnum):
    """Streams of a dataset's `split_seed` (a seed of its own, so numbers may repeat Stream's)."""

    TEST = 1  # digits' test split
    VALID = 2  # the train/valid split
    SUBSET = 3  # data.train_subset's draw from the training split


def _seed(*entropy: int) -> int:
    state = np.random.SeedSequence([int(e) for e in entropy]).generate_state(1, np.uint64)
    return int(state[0]) & ((1 << 63) - 1)


def step_generator(seed: int, step: int, stream: int = Stream.WEIGHT_PATHS) -> torch.Generator:
    """A CPU generator seeded from (seed, step, stream) by NumPy's SeedSequence."""
    g = torch.Generator()
    g.manual_seed(_seed(seed, step, stream))
    return g


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of sample `index`'s random augmentation in `epoch`, by NumPy's SeedSequence."""
    return _seed(seed, epoch, Stream.AUGMENT, index)


@dataclass(frozen=True)
class GateSample:
    """The paths one layer involves in a gated (arch) step and which of them is on."""

    involved: tuple[int, ...]
    active_slot: int

    @property
    def active(self) -> int:
        return self.involved[self.active_slot]


def sample_paths(
    arch_state: ArchState, generator: torch.Generator, uniform: bool = False
) -> list[int]:
    """One candidate per layer, drawn from softmax(α) (or uniformly, for warm-up)."""
    out = []
    for a in arch_state.alphas:
        p = torch.ones(a.numel()) if uniform else torch.softmax(a.detach().double().cpu(), 0)
        out.append(int(torch.multinomial(p, 1, generator=generator)))
    return out


def sample_gates(
    arch_state: ArchState, generator: torch.Generator, mode: str = "two"
) -> list[GateSample]:
    """Per layer: `two` — two distinct paths drawn from p, the active one from p renormalised
    over them; `full` — all paths involved, the active one drawn from p."""
    if mode not in ("two", "full"):
        raise ValueError(f"gate mode must be 'two' or 'full', got {mode!r}")
    out = []
    for a in arch_state.alphas:
        p = torch.softmax(a.detach().double().cpu(), 0)
        if mode == "full" or a.numel() < 2:
            involved = tuple(range(a.numel()))
        else:
            involved = tuple(int(i) for i in torch.multinomial(p, 2, generator=generator))
        sub = p[list(involved)]
        out.append(
            GateSample(involved, int(torch.multinomial(sub / sub.sum(), 1, generator=generator)))
        )
    return out
