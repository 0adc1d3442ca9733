from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_config, without_time

from mmbalance.errors import CheckpointError, NonFiniteLossError
from mmbalance.experiment import build_experiment, resume_experiment, run_experiment
from mmbalance.methods.base import Method
from mmbalance.training.checkpoint import load_checkpoint
from mmbalance.training.trainer import Trainer


class Recorder(Method):
    """Records every hook call; optionally crashes or returns NaN at a chosen epoch."""

    name = "recorder"

    def __init__(self, crash_at: int | None = None, nan_at: int | None = None) -> None:
        super().__init__()
        self.calls: list[str] = []
        self.crash_at, self.nan_at = crash_at, nan_at
        self.counter = 0  # method state that must survive a resume

    def setup(self, model, optimizer) -> None:
        self.calls.append("setup")

    def on_fit_start(self, state) -> None:
        # Methods may read train/val statistics; the test split is not reachable from here.
        assert set(state.loaders) == {"train", "val"}
        self.calls.append(f"fit_start:{state.epoch}")

    def on_epoch_start(self, state) -> None:
        self.calls.append(f"epoch_start:{state.epoch}")
        if state.epoch == self.crash_at:
            raise KeyboardInterrupt  # a kill between epochs

    def forward(self, model, batch, state):
        self.calls.append("forward")
        return super().forward(model, batch, state)

    def loss(self, output, batch, state):
        self.calls.append("loss")
        ce = F.cross_entropy(output.logits, batch["label"])
        if state.epoch == self.nan_at and state.step_in_epoch == 1:
            ce = ce * float("nan")
        return {"ce": ce}

    def on_after_backward(self, model, state) -> None:
        # Gradients exist here and the optimiser has not stepped yet.
        assert all(p.grad is not None for p in model.encoders.parameters())
        self.calls.append("after_backward")

    def on_step_end(self, state) -> None:
        self.calls.append("step_end")
        self.counter += 1

    def on_epoch_end(self, state) -> dict[str, float]:
        self.calls.append(f"epoch_end:{state.epoch}")
        return {"counter": float(self.counter)}

    def get_extra_state(self) -> dict[str, Any]:
        return {"counter": self.counter}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.counter = state["counter"]


def _trainer(cfg, run_dir: Path, method: Method) -> Trainer:
    data, model, _ = build_experiment(cfg)
    return Trainer(model, method, data, cfg, run_dir)


def test_every_hook_fires_in_order(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, train={"epochs": 2})
    rec = Recorder()
    trainer = _trainer(cfg, tmp_path / "run", rec)
    trainer.fit()
    steps = len(trainer._loader(trainer.data.train, train=True))
    per_step = ["forward", "loss", "after_backward", "step_end"]
    expected = ["setup", "fit_start:0"]
    for e in range(2):
        expected += [f"epoch_start:{e}", *per_step * steps, f"epoch_end:{e}"]
    assert rec.calls == expected
    rows = [
        json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["method_counter"] for r in rows] == [steps, 2 * steps]


def test_joint_training_learns_and_reports_every_modality(tmp_path: Path) -> None:
    result = run_experiment(tiny_config(tmp_path, train={"epochs": 6}), tmp_path / "run")
    assert result.test["test_acc"] > 0.8  # 3 classes: chance is 1/3
    # The strong modality's unimodal head beats the weak one's (strength 3 vs 1).
    assert result.test["test_acc_a"] > result.test["test_acc_b"] + 0.1
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {
        "config.yaml",
        "meta.json",
        "metrics.jsonl",
        "metrics.csv",
        "summary.json",
        "checkpoints",
    } <= files
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert meta["seed"] == 0 and meta["torch"] == torch.__version__ and "mmbalance" in meta


def test_selection_uses_validation_only(tmp_path: Path) -> None:
    result = run_experiment(tiny_config(tmp_path, train={"epochs": 5}), tmp_path / "run")
    val = [r["val_acc"] for r in result.history]
    assert result.best_epoch == val.index(max(val))  # first epoch with the best val accuracy
    best = result.history[result.best_epoch]
    assert result.test["test_acc"] == best["test_acc"]
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")
    assert ckpt["epoch"] == result.best_epoch


def test_selection_without_per_epoch_test_reloads_the_best_weights(tmp_path: Path) -> None:
    a = run_experiment(tiny_config(tmp_path, train={"epochs": 4}), tmp_path / "a")
    b = run_experiment(
        tiny_config(tmp_path, train={"epochs": 4, "test_every_epoch": False}), tmp_path / "b"
    )
    assert "test_acc" not in b.history[0]
    assert b.best_epoch == a.best_epoch
    assert b.test["test_acc"] == pytest.approx(a.test["test_acc"])


def test_interrupted_run_resumes_to_exactly_the_uninterrupted_metrics(tmp_path: Path) -> None:
    cfg = tiny_config(
        tmp_path,
        train={"epochs": 4},
        model={"encoder": {"type": "mlp", "hidden": [16], "dropout": 0.3}},
    )
    full = _trainer(cfg, tmp_path / "full", Recorder())
    full_result = full.fit()
    crashed = _trainer(cfg, tmp_path / "crash", Recorder(crash_at=2))
    with pytest.raises(KeyboardInterrupt):
        crashed.fit()
    assert load_checkpoint(tmp_path / "crash" / "checkpoints" / "last.pt")["epoch"] == 2
    resumed = _trainer(cfg, tmp_path / "crash", Recorder())
    resumed.resume()
    assert resumed.method.counter == full.method.counter // 2  # method state restored
    result = resumed.fit()
    assert without_time(result.history) == without_time(full_result.history)
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k


def test_resume_experiment_continues_a_run_folder(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, train={"epochs": 2}, optim={"scheduler": "none"})
    run_experiment(cfg, tmp_path / "run")
    longer = resume_experiment(tmp_path / "run", ["--train.epochs=3"])
    assert longer.epochs == 3 and len(longer.history) == 3
    uninterrupted = run_experiment(
        tiny_config(tmp_path, train={"epochs": 3}, optim={"scheduler": "none"}), tmp_path / "ref"
    )
    assert without_time(longer.history) == without_time(uninterrupted.history)


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(
    tmp_path: Path,
) -> None:
    cfg = tiny_config(tmp_path, train={"epochs": 4})
    trainer = _trainer(cfg, tmp_path / "run", Recorder(nan_at=2))
    with pytest.raises(NonFiniteLossError) as err:
        trainer.fit()
    msg = str(err.value)
    assert (
        "epoch 3, batch 2" in msg
        and "['ce']" in msg
        and "last.pt" in msg
        and "after epoch 2" in msg
    )
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert ckpt["epoch"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_checkpoints_load_weights_only(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    with path.open("wb") as fh:
        pickle.dump({"format": 1, "payload": _Evil()}, fh)
    with pytest.raises(CheckpointError, match="unreadable or corrupt"):
        load_checkpoint(path)
    (tmp_path / "torn.pt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CheckpointError, match=r"torn\.pt"):
        load_checkpoint(tmp_path / "torn.pt")


def test_run_folder_with_a_run_is_not_overwritten(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, train={"epochs": 1})
    run_experiment(cfg, tmp_path / "run")
    with pytest.raises(Exception, match="already holds a run"):
        run_experiment(cfg, tmp_path / "run")


def test_resume_refuses_a_run_whose_checkpoints_are_gone(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, train={"epochs": 2})
    run_experiment(cfg, tmp_path / "run")
    rows = (tmp_path / "run" / "metrics.jsonl").read_text()
    for name in ("last.pt", "last.prev.pt"):
        (tmp_path / "run" / "checkpoints" / name).unlink(missing_ok=True)
    with pytest.raises(CheckpointError, match=r"last\.prev\.pt are both missing"):
        resume_experiment(tmp_path / "run")
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == rows  # history untouched


def test_a_format_1_checkpoint_is_refused_with_what_to_do(tmp_path: Path) -> None:
    """Checkpoints from before methods became modules hold a hand-written method state that
    today's methods cannot read: refused, naming the format and the way out."""
    old = tmp_path / "last.pt"
    torch.save({"format": 1, "model": {}, "method": {"heads": {}}}, old)
    with pytest.raises(CheckpointError, match=r"format 1.*reads format 2.*git_commit"):
        load_checkpoint(old)
