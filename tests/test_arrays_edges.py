"""The arrays layout as a new user meets it: stray labels, planted problems, a text file
named ``.npy``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from mmbalance.cli import main
from mmbalance.config import DataConfig
from mmbalance.data.media.npyfile import read_npy
from mmbalance.data.registry import build_data
from mmbalance.errors import DataError


def _folder(root: Path, labels: np.ndarray, **arrays: np.ndarray) -> Path:
    root.mkdir(parents=True)
    np.save(root / "labels.npy", labels)
    for name, x in arrays.items():
        np.save(root / f"{name}.npy", x)
    return root


def _three_classes(n: int = 60) -> np.ndarray:
    return np.arange(n) % 3


def test_one_stray_label_does_not_make_an_eight_class_model(tmp_path: Path) -> None:
    y = _three_classes()
    y[5] = 7  # one mistyped label among 0..2
    root = _folder(tmp_path / "d", y, a=np.random.default_rng(0).normal(size=(60, 4)))
    with pytest.raises(DataError) as err:
        build_data(DataConfig(name="arrays", options={"root": str(root)}))
    text = str(err.value)
    assert "would be 8" in text and "3, 4, 5, 6 have no sample" in text
    assert "7 (x1)" in text and "labels.npy" in text and "num_classes" in text
    # said on purpose: 8 classes, four of them absent from this data
    data = build_data(DataConfig(name="arrays", options={"root": str(root), "num_classes": 8}))
    assert data.num_classes == 8


def test_validate_lists_every_planted_problem_of_an_arrays_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(1)
    y = _three_classes()
    y[7] = 9  # a stray label (classes 3..8 then have no sample anywhere)
    a = rng.normal(size=(60, 4))
    a[3, 1] = np.nan  # a NaN
    root = tmp_path / "d"
    _folder(root / "train", y, a=a, b=rng.normal(size=(59, 2)))  # b: one sample short
    _folder(root / "test", np.zeros(6, int), a=rng.normal(size=(6, 4)), b=rng.normal(size=(6, 2)))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"data": {"name": "arrays", "options": {"root": str(root)}}}))
    assert main(["validate", str(cfg)]) == 1
    out = capsys.readouterr().out
    assert "b.npy' has 59 samples; labels.npy has 60" in out
    assert "1 sample(s) hold NaN or inf values" in out
    assert "classes [3, 4, 5, 6, 7, 8] have no sample in any split" in out
    assert "test: no samples of 3 class(es): 1, 2, 9" in out  # test holds only class 0
    assert "4 problem(s)" in out


def test_a_clean_arrays_folder_validates_with_class_counts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _folder(tmp_path / "d", _three_classes(), a=np.ones((60, 4)))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"data": {"name": "arrays", "options": {"root": str(root)}}}))
    assert main(["validate", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "no problems found" in out and "(0 " in out
    assert "note:" not in out  # not standardised: nothing to say about constant features


def test_validate_names_features_constant_in_training_when_standardizing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = np.random.default_rng(0).normal(size=(60, 3, 2))
    a[:, 1, :] = 0.0  # a one-hot slot never used in training: 2 of 6 features constant
    root = tmp_path / "d"
    _folder(root / "train", _three_classes(), a=a)
    test_a = np.random.default_rng(1).normal(size=(9, 3, 2))
    test_a[:5, 1, :] = 0.0  # 4 of the 9 test samples use the slot training never used
    _folder(root / "test", _three_classes(9), a=test_a)
    options = {"root": str(root), "standardize": True}
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"data": {"name": "arrays", "options": options}}))
    assert main(["validate", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "note: modality 'a': 2 of 6 features take one value on every training sample" in out
    assert "0 validation and 4 test sample(s) hold another value there" in out


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"0.1,0.2,0.3\n0.4,0.5,0.6\n", "a text file (it starts with '0.1,0.2,0.3')"),
        (b"PK\x03\x04rest", "a zip archive"),
        (b"", "an empty file"),
        (b"\x80\x04\x95 pickled", "a Python pickle"),
    ],
)
def test_a_file_that_is_not_npy_is_described(tmp_path: Path, content: bytes, said: str) -> None:
    path = tmp_path / "audio.npy"
    path.write_bytes(content)
    with pytest.raises(DataError) as err:
        read_npy(path)
    text = str(err.value)
    assert "audio.npy' is not a NumPy .npy array file" in text and said in text
    assert "allow_pickle" not in text  # numpy's misleading explanation is not passed on


def test_an_object_array_is_refused_without_unpickling(tmp_path: Path) -> None:
    path = tmp_path / "text.npy"
    np.save(path, np.array([[1, 2], [3]], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match=r"holds Python objects \(dtype=object\)"):
        read_npy(path)
    np.save(path, np.arange(6.0).reshape(2, 3))
    assert read_npy(path).shape == (2, 3)
