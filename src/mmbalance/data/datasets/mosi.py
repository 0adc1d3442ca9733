"""CMU-MOSI / CMU-MOSEI as the field stores them: one MulT- or MultiBench-style pickle::

    {"train": {"audio": [N, T, 74], "vision": [N, T, 35 | 47], "text": [N, T, 300],
               "labels": [N, 1, 1] or [N, 1] sentiment scores in [-3, 3], "id": ...},
     "valid": {...}, "test": {...}}

(``mosi_data.pkl`` / ``mosi_data_noalign.pkl`` of MulT, ``mosi_raw.pkl`` of MultiBench, MMSA's
``unaligned_50.pkl`` whose scores are ``regression_labels``; an ``.npz`` with keys
``train/audio`` etc. is read too). Modalities are named ``audio``, ``visual``
and ``text``. The class is the field's binary sentiment, ``score < 0 -> 0`` else ``1``
(``label: binary``; ``binary_nonzero`` drops the score-0 samples as the "non-zero Acc-2"
protocol does; ``seven`` rounds the clipped score to 7 classes); the raw score is kept with
every sample (batch key ``score``). ``label: score`` trains on the score itself, a regression
(``data.task: regression``): the field's MAE, Pearson r, Acc-2, F1 and Acc-7 are then computed
from the one regression model's predictions (``mmbalance.tasks``). The pickle is read with
the restricted unpickler: it cannot run code. ``-inf`` audio values (COVAREP's log of 0)
become 0, as in the field's loaders; NaN is an error naming the split and modality.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from mmbalance.data.base import DataSplits
from mmbalance.data.datasets.assemble import assemble_splits
from mmbalance.data.media.safe_pickle import load_pickle
from mmbalance.errors import ConfigError, DataError

# MulT / MultiBench: "labels"; MMSA (Self-MM, ...): "regression_labels"
LABEL_KEYS = ("labels", "regression_labels")
SPLIT_KEYS = {"train": ("train",), "val": ("valid", "val", "dev"), "test": ("test",)}
CLASS_NAMES = {
    "binary": ["negative", "non-negative"],
    "binary_nonzero": ["negative", "positive"],
    "seven": [str(s) for s in range(-3, 4)],
}


@dataclass
class MOSIOptions:
    """``data.options`` of ``mosi``."""

    path: str = ""  # the .pkl (or .npz) file
    # binary / binary_nonzero / seven: classes from the score; score: the score (regression)
    label: Literal["binary", "binary_nonzero", "seven", "score"] = "binary"
    modality_keys: dict[str, str] = field(
        default_factory=lambda: {"audio": "audio", "visual": "vision", "text": "text"}
    )
    standardize: bool = False

    def validate(self, where: str) -> None:
        if not self.path:
            raise ConfigError(f"{where}.path: required; the MOSI/MOSEI .pkl file")


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DataError(f"CMU-MOSI file {str(path)!r} not found")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            out: dict[str, dict[str, Any]] = {}
            for key in z.files:
                split, _, name = key.partition("/")
                out.setdefault(split, {})[name] = z[key]
            return out
    data = load_pickle(path)
    if not isinstance(data, dict):
        raise DataError(f"{str(path)!r}: expected a dict of splits; got {type(data).__name__}")
    return data


def _split(data: dict[str, Any], split: str, path: Path) -> dict[str, Any]:
    for key in SPLIT_KEYS[split]:
        if key in data:
            return data[key]
    raise DataError(
        f"{str(path)!r} has no {split} split: expected one of the keys "
        f"{list(SPLIT_KEYS[split])}; it has {list(data)}"
    )


def labels_from_scores(scores: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Classes from sentiment scores and the mask of samples kept."""
    if mode == "score":
        return scores.astype(np.float32), np.ones_like(scores, bool)
    if mode == "seven":
        return (np.round(np.clip(scores, -3, 3)) + 3).astype(np.int64), np.ones_like(scores, bool)
    keep = scores != 0 if mode == "binary_nonzero" else np.ones_like(scores, bool)
    return (scores >= 0).astype(np.int64), keep


def _arrays(
    part: dict[str, Any], opts: MOSIOptions, modalities: list[str], split: str, path: Path
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    key = next((k for k in LABEL_KEYS if k in part), None)
    if key is None:
        raise DataError(
            f"{str(path)!r} [{split}]: no sentiment scores: expected one of {list(LABEL_KEYS)}; "
            f"it has {list(part)}"
        )
    raw = np.asarray(part[key], dtype=np.float64)
    scores = raw.reshape(raw.shape[0], -1)[:, 0]
    labels, keep = labels_from_scores(scores, opts.label)
    inputs = {}
    for m in modalities:
        key = opts.modality_keys[m]
        if key not in part:
            raise DataError(
                f"{str(path)!r} [{split}]: no {key!r} entry for modality {m!r}; it has {list(part)}"
            )
        x = np.array(part[key], dtype=np.float32)
        if x.shape[0] != scores.shape[0]:
            raise DataError(
                f"{str(path)!r} [{split}][{key!r}]: {x.shape[0]} samples but "
                f"{scores.shape[0]} labels"
            )
        if np.isnan(x).any():
            raise DataError(f"{str(path)!r} [{split}][{key!r}]: holds NaN values")
        x[np.isneginf(x)] = 0.0  # COVAREP log(0); the field's loaders zero these too
        inputs[m] = x[keep]
    return inputs, labels[keep], scores[keep]


def build_mosi(opts: MOSIOptions, cfg: Any) -> DataSplits:
    """The pickle's own train / valid / test splits."""
    path = Path(opts.path)
    modalities = list(cfg.modalities or opts.modality_keys)
    unknown = [m for m in modalities if m not in opts.modality_keys]
    if unknown:
        raise ConfigError(
            f"data.modalities: {unknown} not in data.options.modality_keys "
            f"({list(opts.modality_keys)})"
        )
    regression = opts.label == "score"
    task = getattr(cfg, "task", "classification")
    if regression != (task == "regression"):
        raise ConfigError(
            f"data.options.label: {opts.label!r} with data.task {task!r}: the score is a "
            "regression target (label: score with data.task: regression); binary, "
            "binary_nonzero and seven are classes (data.task: classification)"
        )
    data = _read(path)
    parts = {s: _arrays(_split(data, s, path), opts, modalities, s, path) for s in SPLIT_KEYS}
    names = CLASS_NAMES.get(opts.label)
    splits = assemble_splits(
        parts["train"][:2],
        val=parts["val"][:2],
        test=parts["test"][:2],
        num_classes=None if names is None else len(names),
        standardize=opts.standardize,
        sources={s: {m: f"{path}[{s}]" for m in modalities} for s in SPLIT_KEYS},
        class_names=names,
        name="mosi",
        task=task,
    )
    if regression:
        splits.score_range = (-3.0, 3.0)  # the sentiment scale: Acc-2, F1, Acc-7 derived
    # Given splits keep their order, so the scores line up with the samples.
    for s in SPLIT_KEYS:
        getattr(splits, s).extras["score"] = torch.from_numpy(parts[s][2]).float()
    splits.info.update(path=str(path), label=opts.label)
    return splits
