"""Regression (issue #25, docs/regression.md): targets, metrics and every method's regression
term checked against a hand computation; the bad inputs refused."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from conftest import tiny_config

import mmbalance as mb
from mmbalance.cli import main
from mmbalance.data.loading import collate
from mmbalance.errors import CapabilityError, ConfigError, DataError
from mmbalance.experiment import build_experiment, run_experiment
from mmbalance.methods import functional as MF
from mmbalance.tasks import Task, mae, pearson, r2, regression_metrics, rmse, sentiment_metrics
from mmbalance.testing import MethodTester

REGRESSION = {
    "task": "regression",
    "options": {
        "num_samples": 240,
        "modalities": {
            "a": {"shape": [12], "strength": 3.0},
            "b": {"shape": [10], "strength": 1.0},
        },
    },
}


def _cfg(tmp_path: Path, **sections: Any):
    return tiny_config(tmp_path, data=REGRESSION, **sections)


# -- metrics, by hand ------------------------------------------------------------------------
def test_regression_metrics_by_hand() -> None:
    y = torch.tensor([1.0, 2.0, 3.0, 4.0])
    p = torch.tensor([1.5, 2.0, 2.0, 5.0])
    # errors 0.5, 0, -1, 1: MAE 2.5 / 4, MSE 2.25 / 4
    assert mae(p, y) == pytest.approx(0.625)
    assert rmse(p, y) == pytest.approx(math.sqrt(0.5625))
    # SS_res 2.25, SS_tot 5 -> R^2 0.55
    assert r2(p, y) == pytest.approx(1 - 2.25 / 5)
    pc, yc = p - p.mean(), y - y.mean()
    assert pearson(p, y) == pytest.approx(float((pc * yc).sum() / (pc.norm() * yc.norm())))
    # two targets: R^2 averaged over them
    y2 = torch.stack([y, 2 * y], 1)
    p2 = torch.stack([p, 2 * y], 1)
    assert r2(p2, y2) == pytest.approx((0.55 + 1.0) / 2)


def test_undefined_metrics_are_none_never_zero_or_nan() -> None:
    y = torch.full((5,), 2.0)
    out = regression_metrics(torch.arange(5.0), y)
    assert out["r2"] is None and out["corr"] is None  # a constant target
    assert out["mae"] == pytest.approx(float((torch.arange(5.0) - 2).abs().mean()))
    assert pearson(torch.full((5,), 1.0), torch.arange(5.0)) is None  # a constant prediction


def test_sentiment_metrics_follow_the_fields_conventions() -> None:
    # targets -2, 0, 0.4, 1.6, -0.3 ; predictions -1.2, 0.3, -0.1, 2.6, -3.4
    y = torch.tensor([-2.0, 0.0, 0.4, 1.6, -0.3])
    p = torch.tensor([-1.2, 0.3, -0.1, 2.6, -3.4])
    out = sentiment_metrics(p, y, -3.0, 3.0)
    # non-zero targets (4): signs agree for -2/-1.2, 1.6/2.6, -0.3/-3.4; not 0.4/-0.1 -> 3/4
    assert out["acc2_non0"] == pytest.approx(0.75)
    # has0 (>= 0 vs < 0) over all 5: -2 ok, 0 vs 0.3 ok, 0.4 vs -0.1 no, ok, ok -> 4/5
    assert out["acc2_has0"] == pytest.approx(0.8)
    # acc7: round(clip): p -> -1, 0, -0, 3, -3 ; y -> -2, 0, 0, 2, -0 -> matches at 2 samples
    assert out["acc7"] == pytest.approx(2 / 5)
    # weighted F1 of non0: truth [F, T, T, F], pred [F, T, F, F]: class F f1 = 2*2/(2+3),
    # class T f1 = 2*1/(2+1); weights 2/4 each
    assert out["f1_non0"] == pytest.approx(0.5 * 0.8 + 0.5 * (2 / 3))


def test_task_losses_by_hand() -> None:
    p = torch.tensor([[1.0], [3.0]])
    y = torch.tensor([0.0, 1.0])
    assert float(Task("regression", "mse").criterion(p, y)) == pytest.approx((1 + 4) / 2)
    assert float(Task("regression", "l1").criterion(p, y)) == pytest.approx((1 + 2) / 2)
    # huber (delta 1): 0.5 * 1^2 = 0.5 and 1 * (2 - 0.5) = 1.5
    assert float(Task("regression", "huber").criterion(p, y)) == pytest.approx(1.0)
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1])
    assert float(Task().criterion(logits, labels)) == pytest.approx(
        float(F.cross_entropy(logits, labels))
    )


# -- methods' regression terms, by hand ---------------------------------------------------
def test_ogms_split_score_is_the_share_of_variance_a_part_explains() -> None:
    y = torch.tensor([0.0, 1.0, 2.0, 3.0])
    part = 0.5 * y + 7.0  # any affine reading of the target: corr 1
    assert float(MF.split_score(part, y)) == pytest.approx(4.0)
    noisy = torch.tensor([0.0, 2.0, 1.0, 3.0])  # corr 0.8 -> 0.64 per sample
    assert float(MF.split_score(noisy, y)) == pytest.approx(4 * 0.8**2)
    assert float(MF.split_score(torch.ones(4), y)) == 0.0


def test_inforeg_regresses_through_per_modality_heads(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, method={"name": "inforeg"})
    _data, model, method = build_experiment(cfg)
    method.build(model)
    assert method.heads is not None  # not the split parts: shares of one prediction


def test_regression_score_is_the_gaussian_density_ratio() -> None:
    y = torch.tensor([0.0, 2.0])  # variance 1
    p = torch.tensor([0.0, 1.0])
    expected = math.exp(0.0) + math.exp(-1 / 2)
    assert float(MF.regression_score(p, y)) == pytest.approx(expected)


def test_target_bins_are_quantile_bins_of_the_training_targets() -> None:
    targets = torch.arange(10.0)
    edges = MF.quantile_edges(targets, 5)
    assert edges.tolist() == pytest.approx([1.8, 3.6, 5.4, 7.2])
    assert MF.target_bins(torch.tensor([0.0, 1.9, 3.6, 9.0]), edges).tolist() == [0, 1, 2, 4]


def test_aim_error_scores_are_a_blocks_clipped_r2() -> None:
    y = torch.tensor([0.0, 1.0, 2.0, 3.0])  # variance 1.25
    pred = torch.tensor([0.0, 1.0, 1.0, 3.0])
    s, loss = MF.regression_score_and_loss(pred, y)
    assert float(loss) == pytest.approx(0.25 / 1.25)
    assert float(s) == pytest.approx(1 - 0.2)
    s_bad, _ = MF.regression_score_and_loss(torch.full((4,), 10.0), y)
    assert float(s_bad) == 0.0  # clipped, as a probability is


def test_aim_regression_scores_blocks_by_target_bins(tmp_path: Path) -> None:
    options = {"latent_dim": 8, "start_epoch": 0, "split_ce": 1.0}  # off by default (below)
    cfg = _cfg(tmp_path, method={"name": "aim", "options": options})
    data, model, method = build_experiment(cfg)
    trainer = mb.Trainer(model, method, data, cfg, tmp_path / "r")
    method.on_fit_start(trainer.state(0, 0, 1))
    edges = MF.quantile_edges(data.train.labels, 5)  # regression_bins: 5 by default
    assert torch.allclose(method.edges, edges)  # from the training targets
    batch = next(iter(trainer.train_loader()))
    out = method.forward(model, batch, trainer.state(0, 0, 1))
    terms = method.loss(out, batch, trainer.state(0, 0, 1))
    # the fused term is the task loss (MSE) of the prediction; the split CE regresses each part
    y = batch["label"]
    fused = F.mse_loss(out.logits.squeeze(1), y)
    assert float(terms["ce"].detach()) == pytest.approx(float(fused.detach()))
    # each modality's part of the fused prediction, calibrated (a_m part + c_m; a = M, c = 0
    # at the start), regresses the target alone
    split = out.split_logits
    cal = method.calibration
    assert cal.scale.tolist() == [[2.0], [2.0]] and cal.shift.tolist() == [[0.0], [0.0]]
    expected = sum(
        float(F.mse_loss((z * cal.scale[j] + cal.shift[j]).squeeze(1), y).detach())
        for j, z in enumerate(split.values())
    )
    assert float(terms["split_ce"].detach()) == pytest.approx(expected, rel=1e-5)
    assert float(terms["mod"].detach()) > 0


def test_aim_regression_default_has_no_split_term(tmp_path: Path) -> None:
    # split_ce unset: 1.0 on a classification's concat fusion, 0.0 on a regression's
    cfg = _cfg(tmp_path, method={"name": "aim", "options": {"latent_dim": 8, "start_epoch": 0}})
    data, model, method = build_experiment(cfg)
    assert method.split_weight(model) == 0.0 and method.calibration is None
    trainer = mb.Trainer(model, method, data, cfg, tmp_path / "r")
    method.on_fit_start(trainer.state(0, 0, 1))
    batch = next(iter(trainer.train_loader()))
    out = method.forward(model, batch, trainer.state(0, 0, 1))
    terms = method.loss(out, batch, trainer.state(0, 0, 1))
    assert "split_ce" not in terms and float(terms["mod"].detach()) > 0


@pytest.mark.parametrize(
    "name", ["joint", "aim", "mmpareto", "mla", "gblending", "ogm", "ogm_ge", "inforeg", "pmr"]
)
def test_regression_capable_methods_train_through_the_real_step(tmp_path: Path, name: str) -> None:
    # AIM from epoch 0: its phase 2 (and the split calibration) within the tester's steps
    options = {"latent_dim": 8, "start_epoch": 0} if name == "aim" else {}
    report = MethodTester(name, options, root=tmp_path, data=REGRESSION).check()
    assert report.expected <= report.reached


def test_mla_fuses_a_regression_by_inverse_validation_error(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, method={"name": "mla"}, train={"epochs": 1})
    data, model, method = build_experiment(cfg)
    trainer = mb.Trainer(model, method, data, cfg, tmp_path / "r")
    batch = next(iter(trainer.train_loader()))
    model.eval()
    with torch.no_grad():  # before any validation error: equal weights
        out = method.predict(model, batch["inputs"])
        assert torch.allclose(out.logits, sum(out.split_logits.values()) / 2, atol=1e-6)
    trainer.train_epoch(0)  # ends with on_train_epoch_end: the validation errors
    # e_m by hand: the shared head's MSE on each modality over the whole validation split
    val = collate([data.val[i] for i in range(len(data.val))])
    model.eval()  # as the method evaluates it (BatchNorm's running statistics)
    with torch.no_grad():
        e = {
            m: float(
                (
                    (method.head(model.encoders[m](val["inputs"][m])).squeeze(1) - val["label"])
                    ** 2
                ).mean()
            )
            for m in ("a", "b")
        }
    assert method.val_errors == pytest.approx(e, rel=1e-5)
    # w_a = (1/e_a) / (1/e_a + 1/e_b) = e_b / (e_a + e_b)
    w_a, w_b = e["b"] / (e["a"] + e["b"]), e["a"] / (e["a"] + e["b"])
    model.eval()
    with torch.no_grad():
        out = method.predict(model, batch["inputs"])
        heads = out.split_logits
        assert torch.allclose(out.logits, w_a * heads["a"] + w_b * heads["b"], atol=1e-6)
        method.options.test_fusion = "equal"
        equal = method.predict(model, batch["inputs"]).logits
        assert torch.allclose(equal, (heads["a"] + heads["b"]) / 2, atol=1e-6)
    # the errors travel with the method's state (best.pt is what the test split is run with)
    restored = mb.create_method("mla", {})
    restored.set_extra_state(method.get_extra_state())
    assert restored.val_errors == method.val_errors


def test_aim_error_mode_trains(tmp_path: Path) -> None:
    options = {"latent_dim": 8, "regression_scores": "error", "start_epoch": 0}
    MethodTester("aim", options, root=tmp_path, data=REGRESSION).check()


@pytest.mark.parametrize("name", ["agm", "opm", "opm_ogm", "diag_relearn", "greedy"])
def test_methods_without_a_regression_form_refuse_it_before_training(
    tmp_path: Path, name: str
) -> None:
    with pytest.raises(CapabilityError, match=rf"method '{name}' cannot train a regression"):
        build_experiment(_cfg(tmp_path, method={"name": name}))


def test_unimodal_regression_trains(tmp_path: Path) -> None:
    MethodTester("unimodal", {"modality": "b"}, root=tmp_path, data=REGRESSION).check()


# -- data and configuration ------------------------------------------------------------------
def test_from_tensors_takes_float_targets_and_refuses_them_for_classification() -> None:
    x = {"a": torch.randn(60, 3), "b": torch.randn(60, 2)}
    y = torch.rand(60)
    data = mb.from_tensors(x, y, task="regression")
    assert data.task == "regression" and data.num_classes == 1
    assert data.train.labels.dtype == torch.float32
    with pytest.raises(DataError, match=r"for numeric targets set data\.task: regression"):
        mb.from_tensors(x, y)
    two = mb.from_tensors(x, torch.rand(60, 2), task="regression")
    assert two.num_classes == 2  # T targets: the head outputs two values


def test_non_finite_targets_are_named_with_their_index(tmp_path: Path) -> None:
    y = np.random.default_rng(0).random(40).astype(np.float32)
    y[7] = np.nan
    root = tmp_path / "d"
    root.mkdir()
    np.save(root / "labels.npy", y)
    np.save(root / "a.npy", np.ones((40, 3), np.float32))
    with pytest.raises(DataError, match=r"labels.npy'\): non-finite target nan at index \(7,\)"):
        mb.build_data(
            mb.load_config(
                None,
                ["--data.name=arrays", f"--data.options.root={root}", "--data.task=regression"],
            ).data
        )


def test_integer_targets_regress_with_a_notice(tmp_path: Path, caplog) -> None:
    x = {"a": torch.randn(60, 3)}
    with caplog.at_level("WARNING", logger="mmbalance"):
        data = mb.from_tensors(x, torch.arange(60) % 3, task="regression")
    assert data.task == "regression"
    assert "3 distinct integers ([0, 1, 2]): class ids?" in caplog.text


def test_constant_training_targets_are_refused() -> None:
    with pytest.raises(DataError, match=r"regression target\(s\) \[0\] take one value"):
        mb.from_tensors({"a": torch.randn(60, 3)}, torch.full((60,), 0.5), task="regression")


def test_config_refuses_metrics_and_losses_of_the_other_task(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="select_metric: got 'val_acc', a classification"):
        _cfg(tmp_path, train={"select_metric": "val_acc"})
    with pytest.raises(
        ConfigError, match=r"train\.loss: got 'mse'; data\.task is 'classification'"
    ):
        tiny_config(tmp_path, train={"loss": "mse"})
    with pytest.raises(ConfigError, match="dataset 'mfeat' has class labels only"):
        run_experiment(
            tiny_config(tmp_path, data={"name": "mfeat", "task": "regression", "options": {}}),
            tmp_path / "r",
        )


def test_selection_on_mae_picks_the_lowest(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, train={"select_metric": "val_mae", "epochs": 4})
    result = run_experiment(cfg, tmp_path / "r")
    maes = [row["val_mae"] for row in result.history]
    assert result.best_epoch == int(np.argmin(maes))


def test_the_cli_trains_a_regression_config_beside_joint_and_alone(tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "reg.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "data": {"name": "synthetic", **REGRESSION},
                "model": {"encoder": {"type": "mlp", "hidden": [16, 16]}},
                "method": {"name": "aim", "options": {"latent_dim": 8}},
                "train": {"epochs": 2, "compare_with_joint": True, "progress": "never"},
            }
        )
    )
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "val R^2  test R^2  test MAE    test r" in out
    for title in ("test R^2, checkpoints", "test MAE, checkpoints", "test Pearson r, checkpoints"):
        assert title in out
    assert "a (probe inside model)" in out and "joint" in out and "alone" in out


def test_mosi_score_is_a_regression_target_with_the_derived_metrics(tmp_path: Path) -> None:
    from layout_fixtures import make_mosi  # the MulT-layout fixture

    path = make_mosi(tmp_path / "mosi_data.pkl")
    cfg = tiny_config(
        tmp_path,
        data={
            "name": "mosi",
            "task": "regression",
            "options": {"path": str(path), "label": "score"},
        },
        model={"encoder": {"type": "transformer", "layers": 1, "d_model": 8, "heads": 2}},
        train={"epochs": 1},
    )
    result = run_experiment(cfg, tmp_path / "run")
    for key in (
        "test_mae",
        "test_corr",
        "test_acc2_has0",
        "test_acc2_non0",
        "test_f1_non0",
        "test_acc7",
    ):
        assert key in result.test
    with pytest.raises(ConfigError, match="the score is a regression target"):
        run_experiment(
            tiny_config(
                tmp_path, data={"name": "mosi", "options": {"path": str(path), "label": "score"}}
            ),
            tmp_path / "bad",
        )


def test_a_regressions_heads_start_at_zero_and_a_classifications_at_xavier() -> None:
    from mmbalance.config import ModelConfig

    shapes = {"a": (6,), "b": (4,)}
    reg = mb.build_model(ModelConfig(), shapes, 2, task="regression")
    assert reg.head.weight.abs().sum() == 0 and reg.head.bias.abs().sum() == 0
    assert all(h.weight.abs().sum() == 0 for h in reg.unimodal_heads.heads.values())
    out = reg({"a": torch.randn(5, 6), "b": torch.randn(5, 4)})
    assert out.logits.abs().sum() == 0  # the first prediction is 0, not a random projection
    cls = mb.build_model(ModelConfig(), shapes, 2)
    # Xavier-normal: std sqrt(2 / (fan_in + fan_out)) = sqrt(2 / 258) on Linear(256, 2)
    assert float(cls.head.weight.std()) == pytest.approx((2 / 258) ** 0.5, rel=0.25)
