"""What a run predicts: classes (classification) or numbers (regression).

``data.task`` chooses. A classification run's targets are class indices in ``[0, K)`` and its
head outputs K logits; a regression run's targets are floats ``[N]`` or ``[N, T]`` and its head
outputs T values. The :class:`Task` carries the loss (``train.loss``: cross-entropy for
classes; ``mse`` by default, ``l1`` or ``huber`` for numbers), the metrics of every split and
modality, and which metric tables lead with (``acc``; ``r2`` for regression, higher better in
both). ``docs/regression.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

TaskKind = Literal["classification", "regression"]
LossName = Literal["auto", "cross_entropy", "mse", "l1", "huber"]
REGRESSION_LOSSES = ("mse", "l1", "huber")
# metric -> whether a higher value is better (selection, tables, paired differences)
HIGHER_IS_BETTER = {
    "acc": True,
    "f1": True,
    "loss": False,
    "mae": False,
    "rmse": False,
    "r2": True,
    "corr": True,
}


@dataclass(frozen=True)
class Task:
    """The prediction task of a run (``data.task``, ``train.loss``)."""

    kind: TaskKind = "classification"
    loss: LossName = "cross_entropy"
    huber_delta: float = 1.0
    # a regression target on a sentiment scale (CMU-MOSI/MOSEI: -3..3): the field's derived
    # metrics (Acc-2, F1, Acc-7) are computed from the same predictions
    score_range: tuple[float, float] | None = None

    @property
    def regression(self) -> bool:
        return self.kind == "regression"

    @property
    def primary(self) -> str:
        """The metric tables lead with: accuracy, or R^2."""
        return "r2" if self.regression else "acc"

    def criterion(self, pred: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
        """The task loss (Eq. 2's cross-entropy for classes; MSE / L1 / Huber for numbers)."""
        if not self.regression:
            return F.cross_entropy(pred, target, reduction=reduction)
        pred = pred.float().reshape(target.shape) if pred.numel() == target.numel() else pred
        target = target.float()
        if self.loss == "l1":
            out = F.l1_loss(pred, target, reduction="none")
        elif self.loss == "huber":
            out = F.huber_loss(pred, target, reduction="none", delta=self.huber_delta)
        else:
            out = F.mse_loss(pred, target, reduction="none")
        out = out.reshape(out.shape[0], -1).mean(1)  # one value per sample, over T targets
        return out.sum() if reduction == "sum" else out if reduction == "none" else out.mean()

    def point(self, logits: Tensor) -> Tensor:
        """The prediction the metrics read: the class, or the values (``[N]`` when T = 1)."""
        if not self.regression:
            return logits.argmax(1)
        return logits.squeeze(1) if logits.dim() == 2 and logits.shape[1] == 1 else logits


def task_from(
    kind: str, loss: str = "auto", score_range: tuple[float, float] | None = None
) -> Task:
    """The :class:`Task` of ``data.task`` and ``train.loss`` (``auto``: cross-entropy for
    classification, MSE for regression)."""
    if loss == "auto":
        loss = "mse" if kind == "regression" else "cross_entropy"
    return Task(kind, loss, score_range=score_range)  # type: ignore[arg-type]


# -- regression metrics (pure functions; undefined -> None, never a silent 0 or NaN) ----------
def _flat(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    return pred.double().reshape(target.shape[0], -1), target.double().reshape(target.shape[0], -1)


def mae(pred: Tensor, target: Tensor) -> float:
    """Mean absolute error (over samples and targets)."""
    p, t = _flat(pred, target)
    return float((p - t).abs().mean())


def rmse(pred: Tensor, target: Tensor) -> float:
    """Root mean squared error."""
    p, t = _flat(pred, target)
    return float((p - t).pow(2).mean().sqrt())


def r2(pred: Tensor, target: Tensor) -> float | None:
    """Coefficient of determination ``1 - SS_res / SS_tot`` per target, averaged over targets
    (scikit-learn's ``r2_score`` with ``uniform_average``); None when a target is constant
    (``SS_tot = 0``: undefined)."""
    p, t = _flat(pred, target)
    ss_tot = (t - t.mean(0)).pow(2).sum(0)
    if bool((ss_tot <= 0).any()):
        return None
    ss_res = (t - p).pow(2).sum(0)
    return float((1 - ss_res / ss_tot).mean())


def pearson(pred: Tensor, target: Tensor) -> float | None:
    """Pearson correlation per target, averaged; None when predictions or targets are
    constant (the correlation is undefined)."""
    p, t = _flat(pred, target)
    pc, tc = p - p.mean(0), t - t.mean(0)
    denom = pc.pow(2).sum(0).sqrt() * tc.pow(2).sum(0).sqrt()
    if bool((denom <= 0).any()):
        return None
    return float(((pc * tc).sum(0) / denom).mean())


def _weighted_f1(pred: Tensor, target: Tensor) -> float:
    """F1 of a binary decision averaged over the two classes weighted by their support
    (scikit-learn's ``average="weighted"``, what the field reports with Acc-2)."""
    total = target.numel()
    out = 0.0
    for c in (False, True):
        tp = float(((pred == c) & (target == c)).sum())
        support = float((target == c).sum())
        predicted = float((pred == c).sum())
        f1 = 2 * tp / (support + predicted) if support + predicted else 0.0
        out += f1 * support / total
    return out


def sentiment_metrics(pred: Tensor, target: Tensor, low: float, high: float) -> dict[str, float]:
    """The derived numbers CMU-MOSI/MOSEI papers report from one regression model, computed as
    the field's reference code does (MulT, ``src/eval_metrics.py: eval_mosei_senti``; MMSA's
    ``metricsTop``), for scores on ``[low, high]`` (-3..3):

    - ``acc2_non0`` / ``f1_non0``: positive (> 0) vs negative (< 0), samples whose target is 0
      left out (the "negative/positive" convention);
    - ``acc2_has0`` / ``f1_has0``: non-negative (>= 0) vs negative, every sample (the
      "negative/non-negative" convention);
    - ``acc7``: predictions and targets clipped to the range and rounded to the 7 integers;
    F1 is the support-weighted F1 of the binary decision.
    """
    p, t = pred.double().reshape(-1), target.double().reshape(-1)
    out: dict[str, float] = {}
    keep = t != 0
    if bool(keep.any()):
        out["acc2_non0"] = float(((p[keep] > 0) == (t[keep] > 0)).double().mean())
        out["f1_non0"] = _weighted_f1(p[keep] > 0, t[keep] > 0)
    out["acc2_has0"] = float(((p >= 0) == (t >= 0)).double().mean())
    out["f1_has0"] = _weighted_f1(p >= 0, t >= 0)
    seven = torch.round(p.clamp(low, high)) == torch.round(t.clamp(low, high))
    out["acc7"] = float(seven.double().mean())
    return out


def regression_metrics(
    pred: Tensor, target: Tensor, score_range: tuple[float, float] | None = None
) -> dict[str, float | None]:
    """MAE, RMSE, R^2 and Pearson r (None where undefined), plus the sentiment numbers when
    the target is a score on ``score_range``."""
    out: dict[str, float | None] = {
        "mae": mae(pred, target),
        "rmse": rmse(pred, target),
        "r2": r2(pred, target),
        "corr": pearson(pred, target),
    }
    if score_range is not None and target.reshape(target.shape[0], -1).shape[1] == 1:
        out.update(sentiment_metrics(pred, target, *score_range))
    return out


def is_defined(value: float | None) -> bool:
    """A metric value that exists (not None, not NaN)."""
    return value is not None and not (isinstance(value, float) and math.isnan(value))
