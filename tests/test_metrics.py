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


def test_linear_probe_ignores_a_unit_dead_on_every_training_sample() -> None:
    """A feature that is 0 on all training samples (a dead ReLU) carries nothing the probe can
    learn; z-scored with a clamped std it became 1e6 on the test samples where it fires and
    decided their class. Centred only, it leaves the probe's predictions to the live feature.
    """
    from mmbalance.reporting.evaluation import probe_accuracy

    gen = torch.Generator().manual_seed(0)
    y = {s: torch.arange(40) % 2 for s in ("train", "val", "test")}
    features = {}
    for s in ("train", "val", "test"):
        live = (2.0 * y[s] - 1.0) + 0.1 * torch.randn(40, generator=gen)  # sign = class
        dead = torch.zeros(40) if s == "train" else 3.0 * (torch.arange(40) % 4 == 0)
        features[s] = torch.stack([live, dead], dim=1)
    result = probe_accuracy(features, y, num_classes=2)
    assert result["val_acc"] == 1.0 and result["test_acc"] == 1.0


def test_fused_probe_reads_what_no_single_modality_holds(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Class = 2 x (bit in modality a) + (bit in modality b): each modality alone can tell
    two classes of four apart at best (50%), the two together all four. The fused probe (one
    linear probe on the concatenated frozen features) must see that; the per-modality probes
    must not."""
    import numpy as np

    from mmbalance.config import ExperimentConfig
    from mmbalance.experiment import run_experiment
    from mmbalance.reporting.evaluation import evaluate_run, fused_probe_accuracy

    gen = np.random.default_rng(0)
    y = np.arange(480) % 4
    a = (2.0 * (y // 2) - 1.0)[:, None] + 0.1 * gen.standard_normal((480, 4))
    b = (2.0 * (y % 2) - 1.0)[:, None] + 0.1 * gen.standard_normal((480, 4))
    np.savez(tmp_path / "data.npz", a=a.astype("float32"), b=b.astype("float32"), labels=y)
    config = ExperimentConfig.from_dict(
        {
            "data": {"name": "arrays", "options": {"root": str(tmp_path)}},
            "method": {"name": "joint"},
            "train": {"epochs": 2},
        }
    )
    result = run_experiment(config, tmp_path / "run")
    meta = (tmp_path / "run" / "meta.json").read_text()
    assert '"data_from_config": true' in meta  # rebuildable, so eval may rebuild it
    evaluation = evaluate_run(result.run_dir)
    for m in ("a", "b"):
        assert evaluation["probe"][m]["test_acc"] <= 0.6
    fused = fused_probe_accuracy(result.run_dir)
    assert fused == evaluation["fused_probe"]
    assert fused["test_acc"] >= 0.95 and fused["val_acc"] >= 0.95
    # a cache written before the fused probe existed is re-evaluated once, not trusted
    cached = tmp_path / "run" / "evaluation.json"
    import json

    old = json.loads(cached.read_text())
    del old["fused_probe"]
    cached.write_text(json.dumps(old))
    assert fused_probe_accuracy(result.run_dir) == fused
    assert "fused_probe" in json.loads(cached.read_text())
