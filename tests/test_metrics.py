from __future__ import annotations

import torch

from mmbalance.training.metrics import accuracy, macro_f1


def test_accuracy_and_macro_f1_against_hand_computation() -> None:
    target = torch.tensor([0, 0, 0, 1, 1, 2])
    pred = torch.tensor([0, 0, 1, 1, 2, 2])
    assert accuracy(pred, target) == 4 / 6
    # class 0: tp 2, support 3, predicted 2 -> F1 = 4/5
    # class 1: tp 1, support 2, predicted 2 -> F1 = 2/4
    # class 2: tp 1, support 1, predicted 2 -> F1 = 2/3
    expected = (4 / 5 + 1 / 2 + 2 / 3) / 3
    assert abs(macro_f1(pred, target, 4) - expected) < 1e-12  # class 3 absent: left out


def test_macro_f1_counts_a_present_but_never_predicted_class_as_zero() -> None:
    target = torch.tensor([0, 1])
    pred = torch.tensor([0, 0])
    # class 0: tp 1, support 1, predicted 2 -> 2/3; class 1: 0
    assert abs(macro_f1(pred, target, 2) - (2 / 3) / 2) < 1e-12
