"""bf16 autocast: the networks run in bfloat16, the methods' statistics stay float32."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from conftest import tiny_config

from mmbalance.experiment import run_experiment
from mmbalance.methods.functional import euclidean_distance, score_and_loss, true_class_score


def test_statistics_are_float32_and_exact_under_autocast() -> None:
    torch.manual_seed(0)
    h = torch.randn(8, 300) * 30 + 100  # large, close vectors: bf16 would lose the distance
    p = h[:3] + 0.01 * torch.randn(3, 300)
    exact = euclidean_distance(h, p)
    with torch.autocast("cpu", torch.bfloat16):
        d = euclidean_distance(h.bfloat16().float(), p)
        s = true_class_score(torch.randn(8, 3).bfloat16(), torch.zeros(8, dtype=torch.long))
        score, _ = score_and_loss(-d, torch.zeros(8, dtype=torch.long))
    assert d.dtype == s.dtype == score.dtype == torch.float32
    h16 = h.bfloat16().float()
    assert torch.allclose(d, euclidean_distance(h16, p), rtol=1e-6)
    # what plain bf16 arithmetic would give for the same distance: far off
    naive = (
        (
            h16.bfloat16().pow(2).sum(1, keepdim=True)
            - 2 * h16.bfloat16() @ p.bfloat16().T
            + p.bfloat16().pow(2).sum(1)
        )
        .float()
        .clamp_min(0)
        .sqrt()
    )
    exact16 = euclidean_distance(h16, p)
    assert (d - exact16).abs().max() < 1e-3 < 1.0 < (naive - exact16).abs().max()
    assert exact.shape == d.shape


def test_bf16_training_runs_every_statistic_finite(tmp_path: Path) -> None:
    fp32 = run_experiment(tiny_config(tmp_path, train={"epochs": 4}), tmp_path / "fp32")
    bf16 = run_experiment(
        tiny_config(tmp_path, train={"epochs": 4, "precision": "bf16"}), tmp_path / "bf16"
    )
    assert abs(bf16.test["test_acc"] - fp32.test["test_acc"]) < 0.1
    aim = run_experiment(
        tiny_config(
            tmp_path,
            method={"name": "aim", "options": {"latent_dim": 8, "start_epoch": 1}},
            train={"epochs": 3, "precision": "bf16"},
        ),
        tmp_path / "aim",
    )
    last = aim.history[-1]
    scores = [v for k, v in last.items() if k.startswith("method_s_")]
    assert scores and all(0.0 <= v <= 1.0 for v in scores)
    assert all(torch.isfinite(torch.tensor(v)) for k, v in last.items() if k.startswith("method_"))


OPTIONS = {
    "aim": {"latent_dim": 8, "start_epoch": 1},
    "unimodal": {"modality": "a"},
    "opm": {"warmup_epochs": 0},
    "opm_ogm": {"warmup_epochs": 0},
    "gblending": {"super_epoch": 1},
    "diag_relearn": {"reinit_epoch": 1},
}


def _methods() -> list[str]:
    from mmbalance.methods import METHODS

    return list(METHODS)


@pytest.mark.parametrize("name", _methods())
def test_every_method_trains_in_bf16(tmp_path: Path, name: str) -> None:
    cfg = tiny_config(
        tmp_path,
        method={"name": name, "options": OPTIONS.get(name, {})},
        train={"epochs": 2, "precision": "bf16"},
    )
    result = run_experiment(cfg, tmp_path / "run")
    assert result.epochs == 2 and math.isfinite(result.history[-1]["train_loss"])
