"""Accuracy and macro-F1, computed from predictions (pure functions, no sklearn needed)."""

from __future__ import annotations

import torch
from torch import Tensor


def accuracy(pred: Tensor, target: Tensor) -> float:
    """Fraction of ``pred == target``."""
    if target.numel() == 0:
        return float("nan")
    return int((pred == target).sum()) / target.numel()


def macro_f1(pred: Tensor, target: Tensor, num_classes: int) -> float:
    """Unweighted mean of per-class F1 over classes present in ``target`` or ``pred``.

    Same convention as scikit-learn's ``f1_score(average="macro")`` with default labels: a class
    neither present nor predicted is left out; one present but never predicted scores 0.
    """
    if target.numel() == 0:
        return float("nan")
    idx = target * num_classes + pred
    conf = torch.bincount(idx, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )
    tp = conf.diag().double()
    support = conf.sum(1).double()  # true count per class
    predicted = conf.sum(0).double()
    present = (support + predicted) > 0
    f1 = torch.where(present, 2 * tp / (support + predicted).clamp_min(1), torch.zeros_like(tp))
    return float(f1[present].mean())
