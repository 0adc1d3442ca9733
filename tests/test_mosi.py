"""CMU-MOSI from a MulT / MultiBench pickle."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from layout_fixtures import make_mosi, mosi_arrays

from mmbalance.config import DataConfig
from mmbalance.data import build_data
from mmbalance.data.datasets.mosi import labels_from_scores
from mmbalance.errors import DataError


def _cfg(path: Path, **options) -> DataConfig:
    return DataConfig(name="mosi", options={"path": str(path), **options})


def test_binary_labels_from_scores_and_the_raw_score_kept(tmp_path: Path) -> None:
    path = make_mosi(tmp_path / "mosi_data.pkl")
    raw = mosi_arrays()
    data = build_data(_cfg(path))
    assert data.shapes == {"audio": (8, 74), "visual": (8, 35), "text": (8, 300)}
    assert data.info["sizes"] == {"train": 40, "val": 12, "test": 12}
    scores = raw["test"]["labels"].reshape(-1)
    assert torch.equal(data.test.labels, torch.from_numpy((scores >= 0).astype(np.int64)))
    item = data.test[3]
    assert item["score"] == pytest.approx(float(scores[3]))
    assert data.test.labels[0] == 1  # score exactly 0 -> class 1 (the field's "score < 0 -> 0")
    # -inf (COVAREP's log 0) became 0; the rest of the sequence is untouched
    a = data.train.inputs["audio"]
    assert torch.equal(a[0, 0, :3], torch.zeros(3))
    assert torch.equal(a[0, 1], torch.from_numpy(raw["train"]["audio"][0, 1]))


def test_other_label_rules() -> None:
    scores = np.array([-2.6, -0.4, 0.0, 0.4, 2.6, 3.4])
    labels, keep = labels_from_scores(scores, "binary")
    assert labels.tolist() == [0, 0, 1, 1, 1, 1] and keep.all()
    labels, keep = labels_from_scores(scores, "binary_nonzero")
    assert keep.tolist() == [True, True, False, True, True, True]
    labels, _ = labels_from_scores(scores, "seven")
    assert labels.tolist() == [0, 3, 3, 3, 6, 6]


def test_bad_pickles_are_clear_errors(tmp_path: Path) -> None:
    raw = mosi_arrays()
    raw["valid"]["vision"][1, 2, 3] = np.nan
    path = tmp_path / "nan.pkl"
    path.write_bytes(pickle.dumps(raw))
    with pytest.raises(DataError, match=r"nan\.pkl' \[val\]\['vision'\]: holds NaN"):
        build_data(_cfg(path))
    raw = mosi_arrays()
    del raw["valid"]
    path.write_bytes(pickle.dumps(raw))
    with pytest.raises(DataError, match=r"no val split: expected one of the keys \['valid'"):
        build_data(_cfg(path))
    path.write_bytes(pickle.dumps({"train": {"labels": np.zeros((2, 1)), "exec": eval}}))
    with pytest.raises(DataError, match=r"asks to load builtins\.eval"):
        build_data(_cfg(path))


def test_mmsa_pickles_with_regression_labels(tmp_path: Path) -> None:
    raw = mosi_arrays()
    for part in raw.values():
        scores = part.pop("labels").reshape(-1)
        part["regression_labels"] = scores  # MMSA: [N] scores, extra entries beside them
        part["classification_labels"] = (scores > 0).astype(np.int64)
        part["raw_text"] = np.array(["a"] * len(scores))
    path = tmp_path / "unaligned_50.pkl"
    path.write_bytes(pickle.dumps(raw))
    data = build_data(_cfg(path))
    expected = (raw["test"]["regression_labels"] >= 0).astype(np.int64)
    assert torch.equal(data.test.labels, torch.from_numpy(expected))
