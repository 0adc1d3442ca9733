"""In-memory multimodal datasets, their splits, and the checks every input passes.

A batch is a dict ``{"inputs": {modality: Tensor}, "label": LongTensor, "index": LongTensor}``;
``index`` lets methods keep per-sample state. All checks raise :class:`DataError` naming the
modality (and the file, when the data came from one) and what was expected.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from mmbalance.errors import DataError


class MultimodalTensorDataset(Dataset):
    """Samples ``i`` of every modality tensor plus its label."""

    def __init__(
        self,
        inputs: Mapping[str, Tensor],
        labels: Tensor,
        extras: Mapping[str, Tensor] | None = None,
    ) -> None:
        self.inputs = dict(inputs)
        self.labels = labels
        self.extras = dict(extras or {})  # per-sample targets beside the class, e.g. "score"

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {
            "inputs": {m: x[i] for m, x in self.inputs.items()},
            "label": self.labels[i],
            "index": i,
            **{k: v[i] for k, v in self.extras.items()},
        }

    def subset(self, indices: np.ndarray) -> MultimodalTensorDataset:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return MultimodalTensorDataset(
            {m: x[idx] for m, x in self.inputs.items()},
            self.labels[idx],
            {k: v[idx] for k, v in self.extras.items()},
        )


@dataclass
class DataSplits:
    """Train / validation / test datasets and what the model builder needs to know.

    ``num_classes`` is the number of values the head outputs: K classes, or for a regression
    task (``task == "regression"``) the T targets of each sample."""

    train: Dataset
    val: Dataset
    test: Dataset
    num_classes: int
    shapes: dict[str, tuple[int, ...]]
    class_names: list[str] | None = None
    info: dict[str, Any] = field(default_factory=dict)  # how the splits were made (recorded)
    task: str = "classification"
    # a regression target on a sentiment scale (MOSI: (-3, 3)): the field's derived metrics
    score_range: tuple[float, float] | None = None

    @property
    def modalities(self) -> list[str]:
        return list(self.shapes)


def _source(sources: Mapping[str, str] | None, key: str) -> str:
    if sources and key in sources:
        return f" (file {sources[key]!r})"
    return ""


def check_targets(
    labels: Any, sources: Mapping[str, str] | None = None, split: str = "data"
) -> tuple[Tensor, int]:
    """Regression targets: finite numbers ``[N]`` or ``[N, T]``; returns them as float32 and T.
    A non-finite target is named by file and index."""
    y = np.asarray(labels)
    where_y = f"{split} targets{_source(sources, 'labels')}"
    if y.dtype.kind not in "fiub":
        raise DataError(f"{where_y}: expected numeric regression targets; got dtype {y.dtype}")
    if y.ndim not in (1, 2) or y.shape[0] == 0 or (y.ndim == 2 and y.shape[1] == 0):
        raise DataError(f"{where_y}: expected targets shaped [N] or [N, T]; got {y.shape}")
    if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
        first = np.argwhere(~np.isfinite(y))[0]
        raise DataError(
            f"{where_y}: non-finite target {float(y[tuple(first)])!r} at index "
            f"{tuple(first.tolist())}"
        )
    return torch.as_tensor(y, dtype=torch.float32), 1 if y.ndim == 1 else int(y.shape[1])


def check_arrays(
    inputs: Mapping[str, Any],
    labels: Any,
    num_classes: int | None = None,
    sources: Mapping[str, str] | None = None,
    split: str = "data",
    task: str = "classification",
) -> tuple[dict[str, Tensor], Tensor, int]:
    """Validate and convert user arrays; returns float tensors, the targets and K (classes) or
    T (regression targets per sample).

    Checks: labels are 1-D integers in ``[0, K)`` (regression: finite numbers ``[N]`` or
    ``[N, T]``); every modality has as many samples as there are labels, at least one axis per
    sample, and only finite values.
    """
    if not inputs:
        raise DataError(f"{split}: no modalities given; expected a mapping name -> array")
    if task == "regression":
        y_reg, t = check_targets(labels, sources, split)
        return _check_inputs(inputs, y_reg.shape[0], sources, split), y_reg, t
    y = np.asarray(labels)
    where_y = f"{split} labels{_source(sources, 'labels')}"
    if y.ndim != 1:
        raise DataError(f"{where_y}: expected a 1-D array of class indices; got shape {y.shape}")
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise DataError(
                f"{where_y}: expected integer class indices; got non-integer values (for "
                "numeric targets set data.task: regression, or task='regression' in "
                "from_tensors)"
            )
        y = y.astype(np.int64)
    elif y.dtype.kind not in "iub":
        raise DataError(f"{where_y}: expected integer class indices; got dtype {y.dtype}")
    y = y.astype(np.int64)
    if y.size == 0:
        raise DataError(f"{where_y}: no samples")
    k = int(num_classes) if num_classes is not None else int(y.max()) + 1
    bad = np.flatnonzero((y < 0) | (y >= k))
    if bad.size:
        raise DataError(
            f"{where_y}: label {int(y[bad[0]])} at sample {int(bad[0])} is outside [0, {k}) "
            f"({bad.size} labels out of range); expected integers 0..{k - 1}"
        )
    return _check_inputs(inputs, y.shape[0], sources, split), torch.as_tensor(y), k


def _check_inputs(
    inputs: Mapping[str, Any], n: int, sources: Mapping[str, str] | None, split: str
) -> dict[str, Tensor]:
    """Every modality: numeric, ``[N, ...]`` with ``n`` rows, finite, a usable name."""
    out: dict[str, Tensor] = {}
    for m, arr in inputs.items():
        where = f"{split} modality {m!r}{_source(sources, m)}"
        if not isinstance(m, str) or not m or "." in m:
            # a name keys the model's modules (no '.') and the config's sections (a.b.c paths)
            raise DataError(
                f"{where}: a modality name must be a non-empty string without '.'; rename it "
                "(e.g. 'a_b' for 'a.b')"
            )
        a = arr.detach().cpu().numpy() if isinstance(arr, Tensor) else np.asarray(arr)
        if a.dtype.kind not in "fiub":
            raise DataError(f"{where}: expected a numeric array; got dtype {a.dtype}")
        if a.ndim < 2:
            raise DataError(
                f"{where}: expected shape [N, ...] with at least one feature axis; got {a.shape}"
            )
        if 0 in a.shape[1:]:
            raise DataError(
                f"{where}: per-sample shape {a.shape[1:]} has an empty axis; every axis of a "
                "sample needs at least one element"
            )
        if a.shape[0] != n:
            raise DataError(
                f"{where}: has {a.shape[0]} samples but there are {n} labels; "
                "every modality needs one row per label"
            )
        if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            first = np.argwhere(~np.isfinite(a))[0]
            raise DataError(f"{where}: non-finite value (NaN/inf) at index {tuple(first.tolist())}")
        out[m] = torch.as_tensor(a, dtype=torch.float32)
    return out


def check_same_shapes(
    reference: Mapping[str, tuple[int, ...]], other: Mapping[str, Tensor], split: str
) -> None:
    """Refuse a split whose modalities or per-sample shapes differ from the training split's."""
    if set(reference) != set(other):
        raise DataError(
            f"{split}: modalities {sorted(other)} differ from the training split's "
            f"{sorted(reference)}"
        )
    for m, x in other.items():
        if tuple(x.shape[1:]) != tuple(reference[m]):
            raise DataError(
                f"{split} modality {m!r}: per-sample shape {tuple(x.shape[1:])} differs from the "
                f"training split's {tuple(reference[m])}"
            )


def check_classes(data: DataSplits, where: str) -> None:
    """Refuse data a classifier cannot learn from: fewer than two classes, or a training split
    whose samples all carry one label (loss 0 and 100% accuracy from the first step). A
    regression's training targets must vary (else R^2 and r are undefined, and there is
    nothing to learn)."""
    if data.task == "regression":
        targets = getattr(data.train, "labels", None)
        if isinstance(targets, Tensor) and targets.numel():
            flat = targets.reshape(targets.shape[0], -1)
            constant = [t for t in range(flat.shape[1]) if bool((flat[:, t] == flat[0, t]).all())]
            if constant:
                raise DataError(
                    f"{where}: regression target(s) {constant} take one value "
                    f"({float(flat[0, constant[0]])!r}) on every training sample: nothing to "
                    "learn, and R^2 and r are undefined"
                )
        return
    names = data.class_names or [str(k) for k in range(data.num_classes)]
    if data.num_classes < 2:
        raise DataError(
            f"{where}: {data.num_classes} class ({', '.join(names)}): a classifier needs at "
            "least 2 classes; check the labels (every label is the same)"
        )
    labels = getattr(data.train, "labels", None)
    if isinstance(labels, Tensor) and labels.numel():
        present = torch.unique(labels)
        if present.numel() < 2:
            only = int(present[0])
            name = names[only] if 0 <= only < len(names) else str(only)
            raise DataError(
                f"{where}: every training sample has label {only} ({name!r}); a classifier "
                f"needs training samples of at least 2 of the {data.num_classes} classes"
            )
