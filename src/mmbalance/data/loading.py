"""From a dataset to the batches a step sees: the training order, the loaders, collation,
the skip log of dropped samples, and the transfer of a batch to the device.

Everything that turns a :class:`torch.utils.data.Dataset` into batches lives here, so the
trainer, the evaluation, the methods that pass over a split (G-Blending, PMR, AIM's class
means) and the benchmarks all load data the same way.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler, default_collate

from mmbalance import distributed as dist
from mmbalance.errors import ConfigError


class LoaderSettings(Protocol):
    """What a loader needs of the data section (``mmbalance.config.DataConfig`` is one);
    loading knows nothing else of the experiment's configuration."""

    batch_size: int
    eval_batch_size: int
    num_workers: int


SKIP_LOG = "skipped_files.tsv"  # in the run folder: split, sample name, why it was dropped


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The shuffling generator of one epoch: a pure function of (seed, epoch).

    Deriving it instead of carrying one generator through the run means a resumed run shuffles
    epoch ``e`` exactly like an uninterrupted one, with no sampler state to checkpoint. It also
    seeds DataLoader workers (their base seed is drawn from it).
    """
    g = torch.Generator()
    g.manual_seed((seed * 1_000_003 + epoch) % 2**63)
    return g


def worker_init(worker_id: int) -> None:
    """Seed numpy and python in a DataLoader worker from the seed torch gave that worker."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


class ShardedEpochSampler(Sampler[int]):
    """Rank ``r`` of ``W`` gets positions ``r, r + W, r + 2W, ...`` of the epoch's permutation
    ``randperm(n, generator=epoch_generator(seed, epoch))``.

    The permutation is a pure function of ``(seed, epoch)`` — not of how many times a loader
    was iterated (progress bars may create an iterator they never use) — so a resumed run
    shuffles like an uninterrupted one. With a per-rank batch of ``B / W`` the ranks' k-th
    batches together are exactly the single process's (``W = 1``) k-th batch of ``B``: the same
    samples, the same gradient. When ``W`` does not divide the dataset the permutation is padded
    with its first indices (as ``DistributedSampler`` does) so every rank runs as many steps.
    """

    def __init__(self, size: int, seed: int, epoch: int, rank: int = 0, world: int = 1) -> None:
        self.size, self.seed, self.epoch, self.rank, self.world = size, seed, epoch, rank, world
        self.per_rank = -(-size // world)

    def __iter__(self) -> Iterator[int]:
        perm = torch.randperm(self.size, generator=epoch_generator(self.seed, self.epoch)).tolist()
        perm += perm[: self.per_rank * self.world - self.size]
        return iter(perm[self.rank :: self.world])

    def __len__(self) -> int:
        return self.per_rank


def collate(samples: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """Default collation minus the samples a skipping dataset dropped (``None``).

    Returns ``None`` when every sample of the batch was dropped; the loader skips such batches.
    """
    kept = [s for s in samples if s is not None]
    if not kept:
        return None
    return default_collate(kept)


def record_skip(path: Path, split: str, name: str, reason: str) -> None:
    """Append one ``split, name, reason`` row to a run's skip log."""
    line = f"{split}\t{name}\t{' '.join(reason.split())}\n"
    # One short O_APPEND write per line: lines from several loader workers do not interleave.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line.encode("utf-8"))
    finally:
        os.close(fd)


def read_skip_log(run_dir: str | Path) -> list[tuple[str, str, str]]:
    """``(split, name, reason)`` rows of a run's skipped-files list (empty when none)."""
    path = Path(run_dir) / SKIP_LOG
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        split, name, reason = line.split("\t", 2)
        rows.append((split, name, reason))
    return rows


class SkippingLoader(DataLoader):
    """A DataLoader that leaves out batches whose every sample a skipping dataset dropped, and
    training batches that dropping left with one sample (BatchNorm cannot train on one)."""

    def __iter__(self) -> Any:
        skipping = getattr(self.dataset, "on_corrupt", "error") == "skip"
        training = isinstance(self.sampler, ShardedEpochSampler)
        for batch in super().__iter__():
            if batch is None or (skipping and training and batch["label"].shape[0] < 2):
                continue
            yield batch


def make_loader(
    dataset: Any,
    cfg: LoaderSettings,
    train: bool,
    epoch: int = 0,
    *,
    seed: int,
    pin_memory: bool = False,
) -> DataLoader:
    """A training loader (shuffled by the epoch's generator, a pure function of ``seed`` and
    ``epoch``) or an evaluation loader.

    Under DDP the training loader gives each rank its shard of the global batch
    (``cfg.batch_size`` is global; see :class:`ShardedEpochSampler`); evaluation loaders are
    not sharded: every rank evaluates the whole split and gets the same metrics.
    """
    batch = cfg.batch_size if train else cfg.eval_batch_size
    sampler = None
    size = len(dataset)
    if train:
        world = dist.world_size()
        if cfg.batch_size % world:
            raise ConfigError(
                f"data.batch_size: {cfg.batch_size} is the global batch and must be divisible "
                f"by the {world} processes"
            )
        batch = cfg.batch_size // world
        # The order is a pure function of (seed, epoch): exact resume, and under DDP the
        # ranks' k-th batches together are the single process's k-th batch.
        sampler = ShardedEpochSampler(size, seed, epoch, dist.rank(), world)
        size = len(sampler)
    # A last training batch of one sample breaks BatchNorm; drop it only in that case.
    drop_last = train and size % batch == 1
    return SkippingLoader(
        dataset,
        batch_size=batch,
        sampler=sampler,
        drop_last=drop_last,
        num_workers=cfg.num_workers,
        worker_init_fn=worker_init if cfg.num_workers else None,
        # Worker base seeds are drawn from this generator (or from the global RNG if absent)
        # every time the loader is iterated; the training order comes from the sampler.
        generator=epoch_generator(seed, epoch if train else -1),
        pin_memory=pin_memory,
        collate_fn=collate,
    )


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Move a collated batch (inputs dict, label, index) to ``device``."""
    return {
        "inputs": {m: x.to(device, non_blocking=True) for m, x in batch["inputs"].items()},
        "label": batch["label"].to(device, non_blocking=True),
        "index": batch["index"],
    }
