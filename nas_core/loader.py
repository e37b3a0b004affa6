"""How batches are drawn: seeded shuffling, sharding by rank, and per-sample augmentation
seeds.

`make_loader` shuffles with a generator seeded from (seed, epoch) and shards by rank itself
(`ShardSampler`), so one permutation serves every world size: the shards of K ranks are the
K-strided slices of the single-process order. A sample's random augmentation is seeded from
(seed, epoch, index) where it is fetched (`TransformedSubset.augment`), so it does not depend on
which process fetches it: the same images whatever the worker count or rank count, loader
workers that persist across epochs (`ShardSampler.set_epoch`, as with torch's
`DistributedSampler`), and a resumed run that repeats one run straight through. torch's
`DistributedSampler` was the other option, rejected: it seeds with `seed + epoch` (seed 1 /
epoch 2 repeats seed 2 / epoch 1) and its order differs from the single-process one, so a
K-worker run is harder to compare with a local run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from nas_core.sampling import Stream, sample_seed, step_generator


class TransformedSubset(Subset):
    """`dataset[indices[i]]` with `transform` applied to its image.

    Lets train and valid share one decoded dataset while only train is augmented. A random
    `transform` (`augment=True`) draws from torch's RNG seeded from (seed, epoch, i) of the
    fetching loader (`SampleKey`), never from the fetching process's own stream.
    """

    def __init__(
        self,
        dataset: Dataset,
        indices: Sequence[int],
        transform: Callable[[Any], Any],
        augment: bool = False,
    ) -> None:
        super().__init__(dataset, [int(i) for i in indices])
        self.transform, self.augment = transform, augment

    def __getitem__(self, idx: int | SampleKey) -> tuple[Any, Any]:
        if not isinstance(idx, SampleKey):
            idx = SampleKey(0, 0, int(idx))
        image, label = self.dataset[self.indices[idx.index]]
        if not self.augment:
            return self.transform(image), label
        with torch.random.fork_rng(devices=[]):  # the fetching process's own stream stays put
            # the CPU generator only: torch.manual_seed would reseed every CUDA device too
            torch.default_generator.manual_seed(sample_seed(idx.seed, idx.epoch, idx.index))
            return self.transform(image), label

    def __getitems__(self, indices: list[int | SampleKey]) -> list[tuple[Any, Any]]:
        # Subset's batched fetch would skip the transform; go item by item instead.
        return [self[i] for i in indices]


class SampleKey(NamedTuple):
    """What a loader asks a dataset for: sample `index` of `epoch` in a run seeded `seed`."""

    seed: int
    epoch: int
    index: int


class _Keyed(Dataset):
    """The dataset a loader fetches from: `SampleKey`s to a `TransformedSubset` (it seeds its
    augmentation from them), plain indices to any other dataset."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self.keyed = isinstance(dataset, TransformedSubset) and dataset.augment

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: SampleKey) -> Any:
        return self.dataset[key if self.keyed else key.index]

    def __getitems__(self, keys: list[SampleKey]) -> list[Any]:
        batch = keys if self.keyed else [k.index for k in keys]
        fetch = getattr(self.dataset, "__getitems__", None)
        return fetch(batch) if fetch is not None else [self.dataset[k] for k in batch]


class ShardSampler(Sampler[int]):
    """Rank `rank`'s share of one permutation of `range(n)` seeded from (seed, epoch).

    With `world_size` > 1 every rank gets the same number of samples (DDP steps in lockstep):
    the permutation is cut to a multiple of `world_size` (`drop_last`) or padded by wrapping
    around, then rank r takes positions r, r + world_size, ... `set_epoch` moves a loader (and
    its persistent workers) on to another epoch.
    """

    def __init__(
        self,
        n: int,
        shuffle: bool,
        seed: int = 0,
        epoch: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.n, self.shuffle, self.seed, self.epoch = n, shuffle, seed, epoch
        self.drop_last, self.rank, self.world_size = drop_last, rank, world_size

    def _order(self) -> list[int]:
        if self.shuffle:
            g = step_generator(self.seed, self.epoch, Stream.SHUFFLE)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        if self.world_size > 1:
            if self.drop_last:
                order = order[: self.n - self.n % self.world_size]
            elif order and self.n % self.world_size:
                pad = self.world_size - self.n % self.world_size
                order += (order * math.ceil(pad / len(order)))[:pad]
        return order[self.rank :: self.world_size]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        return iter(self._order())

    def __len__(self) -> int:
        if self.world_size == 1:
            return self.n
        if self.drop_last:
            return self.n // self.world_size
        return math.ceil(self.n / self.world_size) if self.n else 0


class _KeySampler(Sampler[SampleKey]):
    """A `ShardSampler`'s indices as `SampleKey`s of its (seed, epoch)."""

    def __init__(self, shard: ShardSampler) -> None:
        self.shard = shard

    def set_epoch(self, epoch: int) -> None:
        self.shard.set_epoch(epoch)

    def __iter__(self) -> Iterator[SampleKey]:
        seed, epoch = self.shard.seed, self.shard.epoch  # fixed for this pass
        return (SampleKey(seed, epoch, i) for i in self.shard)

    def __len__(self) -> int:
        return len(self.shard)


def make_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    epoch: int = 0,
    drop_last: bool = False,
    num_workers: int = 0,
    rank: int = 0,
    world_size: int = 1,
    pin_memory: bool = False,
    persistent: bool = False,
) -> DataLoader:
    """A loader whose batches are a pure function of (dataset, seed, epoch, rank, world_size).

    `drop_last` drops both the samples that do not split evenly over the ranks and the last
    incomplete batch. Random augmentation is seeded per sample from (seed, epoch, index), in the
    main process and in workers alike. `persistent` keeps the `num_workers` processes for the
    loader's life: move it to another epoch with `loader.sampler.set_epoch(epoch)`.
    `pin_memory` (for a CUDA consumer) lets `.to(device, non_blocking=True)` copy without a wait.
    """
    if batch_size < 1 or num_workers < 0 or not 0 <= rank < world_size:  # a caller's bug
        raise ValueError(f"make_loader({batch_size=}, {num_workers=}, {rank=}, {world_size=})")
    shard = ShardSampler(len(dataset), shuffle, seed, epoch, drop_last, rank, world_size)
    return DataLoader(
        _Keyed(dataset),
        batch_size=batch_size,
        sampler=_KeySampler(shard),
        drop_last=drop_last,
        num_workers=num_workers,
        generator=step_generator(seed, epoch, Stream.LOADER_WORKERS + rank),
        pin_memory=pin_memory,
        persistent_workers=persistent and num_workers > 0,
    )
