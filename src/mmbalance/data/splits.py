"""Seeded, stratified splits (train -> train/val, or all -> train/test)."""

from __future__ import annotations

import numpy as np


def stratified_split(
    labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (keep, held_out), holding out ``fraction`` of every class.

    Stratified so that a small validation split still sees every class; each class keeps at
    least one training sample. Deterministic for a given ``seed`` and label array.
    """
    rng = np.random.default_rng(seed)
    keep, held = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(idx.size)]
        n_held = round(fraction * idx.size)
        n_held = min(n_held, idx.size - 1)
        held.append(idx[:n_held])
        keep.append(idx[n_held:])
    return np.sort(np.concatenate(keep)), np.sort(np.concatenate(held))
