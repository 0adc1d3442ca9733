from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import tiny_config

from mmbalance.cli import main


def _write_config(tmp_path: Path, **sections) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(tiny_config(tmp_path, **sections).to_dict()))
    return path


def _rows(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "time_epoch"} for r in rows]


def test_train_eval_and_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _write_config(tmp_path)
    assert (
        main(["train", "--config", str(cfg), "--out", str(tmp_path / "run"), "--train.epochs=2"])
        == 0
    )
    out = capsys.readouterr().out
    assert "best epoch (selected on validation)" in out and str(tmp_path / "run") in out
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["epochs"] == 2
    assert main(["eval", str(tmp_path / "run")]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["test_acc"] == pytest.approx(summary["test"]["test_acc"])
    assert metrics["val_acc"] == pytest.approx(summary["val"]["val_acc"])
    assert main(["list"]) == 0
    listing = capsys.readouterr().out
    for word in (
        "joint",
        "unimodal",
        "mfeat",
        "synthetic",
        "arrays",
        "resnet18",
        "transformer",
        "mlp",
        "film",
        "gated",
    ):
        assert word in listing


def test_bad_config_and_override_are_refused_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _write_config(tmp_path)
    assert (
        main(["train", "--config", str(cfg), "--out", str(tmp_path / "r1"), "--optim.name=lbfgs"])
        == 2
    )
    err = capsys.readouterr().err
    assert "optim.name: got 'lbfgs'; expected one of 'sgd', 'adam', 'adamw'" in err
    assert not (tmp_path / "r1").exists()
    assert main(["train", "--config", str(cfg), "--data.options.num_classes=1"]) == 2
    assert "data.options.num_classes: got 1; expected >= 2" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--config", str(cfg), "stray"])


def test_run_killed_mid_training_resumes_to_the_uninterrupted_metrics(tmp_path: Path) -> None:
    slow = {
        "data": {
            "options": {
                "num_samples": 6000,
                "num_classes": 3,
                "modalities": {
                    "a": {"shape": [64], "strength": 2.0},
                    "b": {"shape": [64], "strength": 1.0},
                },
            }
        },
        "model": {"encoder": {"type": "mlp", "hidden": [128, 128], "dropout": 0.2}},
        "train": {"epochs": 6},
    }
    cfg = _write_config(tmp_path, **slow)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "mmbalance.cli", "train", "--config", str(cfg)]
    subprocess.run(
        [*cmd, "--out", str(tmp_path / "full")], check=True, env=env, capture_output=True
    )
    proc = subprocess.Popen(
        [*cmd, "--out", str(tmp_path / "killed")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    metrics = tmp_path / "killed" / "metrics.jsonl"
    deadline = time.time() + 900  # generous: a loaded machine trains slowly
    while time.time() < deadline and proc.poll() is None:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= 2:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be killed; make it slower"
    assert metrics.is_file() and metrics.read_text().splitlines(), "no epoch done in 15 minutes"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(_rows(tmp_path / "killed")) < 6
    subprocess.run(
        [*cmd[:3], "train", "--resume", str(tmp_path / "killed")],
        check=True,
        env=env,
        capture_output=True,
    )
    assert _rows(tmp_path / "killed") == _rows(tmp_path / "full")
    full = json.loads((tmp_path / "full" / "summary.json").read_text())
    resumed = json.loads((tmp_path / "killed" / "summary.json").read_text())
    assert resumed["test"] == full["test"] and resumed["best_epoch"] == full["best_epoch"]


def test_no_argument_train_shows_the_imbalance_aim_joint_and_alone(tmp_path: Path, capsys) -> None:
    # the built-in experiment (digits_vec, generated once into ~/.cache/mmbalance): AIM, joint
    # training, each modality alone; probes inside the fused models beside the alone accuracy
    out = tmp_path / "default"
    args = ["train", "--out", str(out), "--train.epochs=2"]
    assert main(args) == 0
    text = capsys.readouterr().out
    runs = {
        "aim": out,
        "joint": tmp_path / "default-joint",
        "audio": tmp_path / "default-audio-alone",
        "visual": tmp_path / "default-visual-alone",
    }
    summary = {k: json.loads((v / "summary.json").read_text()) for k, v in runs.items()}
    evaluation = {
        k: json.loads((runs[k] / "evaluation.json").read_text()) for k in ("aim", "joint")
    }
    lines = {ln.split("  ")[0]: ln.split() for ln in text.splitlines()}
    fused = lines["fused"]
    assert fused[1:] == [
        f"{100 * summary['aim']['test']['test_acc']:.1f}",
        f"{100 * summary['joint']['test']['test_acc']:.1f}",
    ]
    for m in ("audio", "visual"):
        row = lines[f"{m} (probe inside model)"]
        assert row[-3:] == [
            f"{100 * evaluation['aim']['probe'][m]['test_acc']:.1f}",
            f"{100 * evaluation['joint']['probe'][m]['test_acc']:.1f}",
            f"{100 * summary[m]['test']['test_acc']:.1f}",
        ]
    cfg = yaml.safe_load((runs["joint"] / "config.yaml").read_text())
    assert cfg["method"] == {"name": "joint", "options": {}} and cfg["seed"] == 0
    cfg = yaml.safe_load((runs["audio"] / "config.yaml").read_text())
    assert cfg["method"]["name"] == "unimodal" and cfg["method"]["options"]["modality"] == "audio"


def test_hydra_style_overrides_and_print_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``key=value`` works like ``--key=value``; --print-config shows the resolved config (the
    method's every option filled in) and trains nothing."""
    cfg = _write_config(tmp_path, method={"name": "aim", "options": {"lambda_mod": 2}})
    assert main(["train", "--config", str(cfg), "--print-config", "optim.lr=1e-3"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["optim"]["lr"] == 0.001
    assert printed["method"]["options"]["lambda_mod"] == 2.0
    assert printed["method"]["options"]["start_epoch"] == 1  # a default, now written out
    assert not list(tmp_path.glob("runs*"))
    assert main(["train", "--config", str(cfg), "--print-config", "method.options.nope=1"]) == 2
    assert "unknown field(s) nope" in capsys.readouterr().err


def test_config_yaml_is_the_whole_config_and_reproduces_the_run(tmp_path: Path) -> None:
    cfg = _write_config(tmp_path, method={"name": "ogm_ge", "options": {"alpha": 0.3}})
    run = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--out", str(run), "train.epochs=2"]) == 0
    written = yaml.safe_load((run / "config.yaml").read_text())
    assert written["method"]["options"]["alpha"] == 0.3
    assert len(written["method"]["options"]) > 1  # the defaults too, not just what was given
    # each encoder as built: 'auto' resolved from the sample shape, every option written
    given = yaml.safe_load(cfg.read_text())["model"]
    assert given["encoders"] == {}
    for m, spec in written["model"]["encoders"].items():
        assert spec["type"] == "mlp" and spec["hidden"] and "norm" in spec and "dropout" in spec, m
    again = tmp_path / "again"
    assert main(["train", "--config", str(run / "config.yaml"), "--out", str(again)]) == 0
    assert _rows(again) == _rows(run)


def test_encoder_options_are_checked_when_the_config_loads(tmp_path: Path) -> None:
    """A typo in an encoder option is refused at load (before any data is read), naming the
    field; an encoder of another family for one modality does not inherit the base's options."""
    from mmbalance.config import load_config
    from mmbalance.errors import ConfigError

    def load(model: dict) -> None:
        path = tmp_path / "c.yaml"
        cfg = tiny_config(tmp_path).to_dict()
        cfg["model"].update(model)
        path.write_text(yaml.safe_dump(cfg))
        load_config(path)

    with pytest.raises(ConfigError, match=r"model.encoder: unknown field\(s\) layer\b"):
        load({"encoder": {"type": "transformer", "layer": 2}})
    with pytest.raises(ConfigError, match=r"model.encoders.a: unknown field\(s\) widht for any"):
        load({"encoders": {"a": {"widht": 0.5}}})
    with pytest.raises(ConfigError, match=r"model.encoder.type: got 'cnn'; expected one of auto"):
        load({"encoder": {"type": "cnn"}})
    with pytest.raises(ConfigError, match=r"model.encoder.d_model"):
        load({"encoder": {"type": "transformer", "d_model": 0}})
    from mmbalance.models.builder import merge_encoder_specs

    base = {"type": "transformer", "layers": 2}
    assert merge_encoder_specs(base, {"type": "mlp"}) == {"type": "mlp"}
    assert merge_encoder_specs(base, {"heads": 2}) == {**base, "heads": 2}
    assert merge_encoder_specs({"type": "auto", "width": 0.5}, {"type": "resnet18"}) == {
        "type": "resnet18",
        "width": 0.5,
    }
