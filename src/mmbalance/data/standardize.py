"""Z-scoring with training statistics, shared by the loaders and the linear probes."""

from __future__ import annotations

import torch
from torch import Tensor


def zscore_stats(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-feature mean and scale of ``x [N, ...]`` for a z-score, and which features are constant.

    A feature that takes one value on every training sample has no scale to divide by: it is
    centred and left unscaled (scale 1, as scikit-learn's ``StandardScaler`` does). Dividing by
    a clamped std instead (1e-6) turns a value never seen in training - a one-hot symbol absent
    from the training split, or an encoder unit that is dead (ReLU at 0) on every training
    sample but not on every test sample - into an input of 1e6 on validation and test samples.
    """
    mean = x.mean(0, keepdim=True)
    constant = x.amax(0, keepdim=True) == x.amin(0, keepdim=True)
    # near-constant (not constant) features keep a floor so the division stays finite
    std = x.std(0, keepdim=True).clamp_min(1e-6)
    scale = torch.where(constant, torch.ones_like(std), std)
    return mean, scale, constant
