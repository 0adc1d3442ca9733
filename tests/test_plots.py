from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import tiny_config

from mmbalance.cli import main
from mmbalance.errors import ConfigError
from mmbalance.experiment import run_experiment
from mmbalance.reporting.plots import (
    plot_aux_vs_original,
    plot_depth_imbalance,
    plot_modality_accuracy,
    plot_orthogonality,
    plot_run,
)

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def aim_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("aim")
    cfg = tiny_config(
        tmp,
        method={
            "name": "aim",
            "options": {"latent_dim": 8, "dap_steps": 2, "start_epoch": 1, "pam": True},
        },
        train={"epochs": 3},
    )
    run_experiment(cfg, tmp / "run")
    return tmp / "run"


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_figures_plot_the_logged_numbers(aim_run: Path, tmp_path: Path) -> None:
    rows = _rows(aim_run)
    acc = plot_modality_accuracy(aim_run, tmp_path / "f1.png")
    assert acc["a"] == [r["val_acc_a"] for r in rows] and acc["fused"] == [
        r["val_acc"] for r in rows
    ]
    alpha = plot_depth_imbalance(aim_run, tmp_path / "f6.png")
    assert alpha["d2"] == [r["method_alpha_d2"] for r in rows]
    aux = plot_aux_vs_original(aim_run, tmp_path / "f5.png")
    expected = [(r["method_saux_b_d1"] + r["method_saux_b_d2"]) / 2 for r in rows]
    assert aux["b auxiliary"] == pytest.approx(expected)
    ortho = plot_orthogonality(aim_run, tmp_path / "f4.png")
    assert ortho["epoch"] == 2
    diag = [ortho["matrices"]["a"][0][k][k] for k in range(3)]
    assert diag == pytest.approx([1.0, 1.0, 1.0], abs=1e-5)  # cos(p, p) = 1
    for name in ("f1", "f4", "f5", "f6"):
        data = (tmp_path / f"{name}.png").read_bytes()
        assert data.startswith(PNG) and len(data) > 5000


def test_plot_command_writes_what_applies(aim_run: Path, tmp_path: Path, capsys) -> None:
    assert main(["plot", str(aim_run), "--out", str(tmp_path / "p")]) == 0
    names = sorted(p.name for p in (tmp_path / "p").iterdir())
    assert names == [
        "aux_vs_original.png",
        "depth_imbalance.png",
        "modality_accuracy.png",
        "orthogonality.png",
    ]
    joint = run_experiment(tiny_config(tmp_path, train={"epochs": 1}), tmp_path / "joint")
    written = plot_run(joint.run_dir)
    assert [p.name for p in written] == ["modality_accuracy.png"]  # no AIM diagnostics to draw
    with pytest.raises(ConfigError, match="not an AIM run"):
        plot_depth_imbalance(Path(joint.run_dir), tmp_path / "x.png")
