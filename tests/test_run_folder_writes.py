"""Every write into a run folder is whole or absent, and an unwritable folder is a clear error."""

from __future__ import annotations

import errno
import json
import logging
import os
from pathlib import Path

import pytest
import torch
import yaml
from conftest import tiny_config

from mmbalance.cli import main
from mmbalance.errors import RunFolderError
from mmbalance.experiment import warn_thread_mismatch
from mmbalance.training import checkpoint
from mmbalance.training.checkpoint import write_text_atomic
from mmbalance.training.logger import MetricsLogger


def _full_disk(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Every atomic write of a file called ``name`` fails as on a full disk, after the bytes
    were written to the temporary file (the worst moment: a plain write_text would leave a
    truncated file behind)."""
    real = os.replace

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if Path(dst).name == name:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(src, dst)

    monkeypatch.setattr(checkpoint.os, "replace", replace)


def test_write_text_atomic_keeps_the_old_file_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "config.yaml"
    write_text_atomic(path, "a: 1\n")
    assert path.read_text() == "a: 1\n"
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0600
    _full_disk(monkeypatch, "config.yaml")
    with pytest.raises(RunFolderError, match=r"config\.yaml'.*the disk is full"):
        write_text_atomic(path, "a: 2\n")
    assert path.read_text() == "a: 1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]


def test_a_file_where_the_folder_should_be_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "runs"
    blocker.write_text("not a folder")
    with pytest.raises(RunFolderError, match=r"runs/r1/meta\.json"):
        write_text_atomic(blocker / "r1" / "meta.json", "{}")


def test_train_into_a_full_disk_exits_2_and_writes_no_empty_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config(tmp_path).to_dict()))
    _full_disk(monkeypatch, "config.yaml")
    run = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--out", str(run), "--train.epochs=1"]) == 2
    err = capsys.readouterr().err
    assert "could not write" in err and "config.yaml" in err and "disk is full" in err
    assert "Traceback" not in err
    assert not (run / "config.yaml").exists()


def test_metrics_rows_survive_a_failed_csv_rewrite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    logger = MetricsLogger(tmp_path)
    logger.log({"epoch": 0, "loss": 1.0})
    before = (tmp_path / "metrics.csv").read_text()
    _full_disk(monkeypatch, "metrics.csv")
    with pytest.raises(RunFolderError, match=r"metrics\.csv"):
        logger.log({"epoch": 1, "loss": 0.5})
    assert (tmp_path / "metrics.csv").read_text() == before  # the old table, whole
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1]  # the source of truth has both rows


def test_resuming_with_another_thread_count_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    now = torch.get_num_threads()
    (tmp_path / "meta.json").write_text(json.dumps({"torch_threads": now}))
    assert warn_thread_mismatch(tmp_path) is None
    (tmp_path / "meta.json").write_text(json.dumps({"torch_threads": now + 3}))
    with caplog.at_level(logging.WARNING):
        text = warn_thread_mismatch(tmp_path)
    assert text is not None and f"started with {now + 3}" in text and f"with {now}" in text
    assert f"OMP_NUM_THREADS={now + 3}" in caplog.text
    (tmp_path / "meta.json").write_text(json.dumps({"seed": 0}))  # runs from before the field
    assert warn_thread_mismatch(tmp_path) is None


def test_meta_json_records_the_thread_count(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config(tmp_path).to_dict()))
    run = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--out", str(run), "--train.epochs=1"]) == 0
    meta = json.loads((run / "meta.json").read_text())
    assert meta["torch_threads"] == torch.get_num_threads()
