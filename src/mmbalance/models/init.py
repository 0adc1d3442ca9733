"""Weight initialisation shared by the field's codebases (``methods.md`` section 1).

Linear: xavier-normal weights, zero bias. Conv: kaiming-normal, fan_out, ReLU gain.
Normalisation layers: weight 1, bias 0. Matching it matters when results are compared with
published numbers, which all start from this init.

A regression's output heads start at zero instead (:func:`init_regression_head`).
"""

from __future__ import annotations

from torch import nn


def init_weights(module: nn.Module) -> None:
    """Apply the field's initialisation to every sub-module of ``module`` in place."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm)):
            if m.weight is not None:
                nn.init.ones_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def init_regression_head(head: nn.Linear) -> None:
    """Zero weights and bias for a linear head that outputs a regression's targets.

    Xavier-normal on ``Linear(C, T)`` gives an initial prediction of standard deviation about
    ``sqrt(2C / (C + T))`` times the features' RMS: for C = 256 normalised features about 1,
    several times a typical target's spread. The network then spends its first steps cancelling
    a random projection of its own features, and on a few hundred samples it fits that
    cancellation to the training set (an MLP pair with BatchNorm, 410 training samples,
    Adam 1e-3, 20 epochs: validation R^2 0.06 with Xavier, 0.89 from zero;
    docs/regression.md). From zero the first prediction is 0 and the head learns a linear
    regression on features that start from their initialisation; a classification's head keeps
    the field's Xavier init (its softmax is unaffected by a shared offset)."""
    nn.init.zeros_(head.weight)
    if head.bias is not None:
        nn.init.zeros_(head.bias)
