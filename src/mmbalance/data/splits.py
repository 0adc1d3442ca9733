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


def target_strata(targets: np.ndarray, bins: int = 5) -> np.ndarray:
    """Strata for a regression split: the quantile bin (of ``bins``) of each sample's first
    target, so a held-out split covers the target's range as a stratified one covers the
    classes (ties share a bin; fewer distinct values give fewer bins)."""
    first = np.asarray(targets, dtype=np.float64).reshape(len(targets), -1)[:, 0]
    edges = np.unique(np.quantile(first, np.linspace(0, 1, bins + 1)[1:-1]))
    return np.searchsorted(edges, first, side="right")
