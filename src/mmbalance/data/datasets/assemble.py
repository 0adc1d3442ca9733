"""Turn arrays into checked train / validation / test :class:`DataSplits`.

Where a dataset ships no test split, a stratified ``test_fraction`` is held out; where it ships
no validation split, a stratified ``val_fraction`` of train is carved out. Both are seeded with
``split_seed`` and the resulting sizes are recorded in ``DataSplits.info``, so a run can be
reproduced and model selection never touches the test split.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mmbalance.data.base import DataSplits, MultimodalTensorDataset, check_arrays, check_same_shapes
from mmbalance.data.splits import stratified_split, target_strata
from mmbalance.data.standardize import zscore_stats
from mmbalance.errors import DataError

ArrayPair = tuple[Mapping[str, Any], Any]
log = logging.getLogger("mmbalance")


def _check(
    pair: ArrayPair,
    k: int | None,
    sources: Mapping[str, str] | None,
    split: str,
    task: str = "classification",
) -> tuple[dict[str, Tensor], Tensor, int]:
    return check_arrays(pair[0], pair[1], k, sources, split, task)


def _strata(y: Tensor, task: str) -> np.ndarray:
    """What a held-out split is stratified by: the class, or the target's quantile bin."""
    return target_strata(y.numpy()) if task == "regression" else y.numpy()


def _class_like_targets(y: Tensor) -> str | None:
    """A notice when regression targets look like class ids (few distinct integers): counts
    are regressions too, but a classification set given task: regression by mistake is not."""
    values = torch.unique(y)
    if bool((y == y.round()).all()) and values.numel() <= 10:
        return (
            f"the regression targets are {values.numel()} distinct integers "
            f"({[int(v) for v in values.tolist()]}): class ids? (data.task: classification "
            "trains a classifier)"
        )
    return None


def _refuse_label_gaps(given: list[np.ndarray], k: int, source: str | None) -> None:
    """With K inferred as ``max label + 1``, every class in ``0..K-1`` must have a sample
    somewhere: one stray label 7 in 0..2 data would otherwise train an 8-class model
    silently (four classes that never occur, a softmax over them all)."""
    seen, counts = np.unique(
        np.concatenate([g.reshape(-1) for g in given]).astype(np.int64), return_counts=True
    )
    missing = sorted(set(range(k)) - set(seen.tolist()))
    if not missing:
        return
    pairs = zip(seen.tolist(), counts.tolist(), strict=True)
    present = ", ".join(f"{c} (x{n})" for c, n in pairs if c >= 0)
    shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
    where = f" ({source!r})" if source else ""
    raise DataError(
        f"labels{where}: the number of classes would be {k} (largest label + 1) but classes "
        f"{shown} have no sample in any split; labels present: {present}. A stray label? Fix "
        f"the labels, or set data.options.num_classes if the data really has {k} classes"
    )


def assemble_splits(
    train: ArrayPair,
    *,
    val: ArrayPair | None = None,
    test: ArrayPair | None = None,
    num_classes: int | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    standardize: bool = False,
    sources: Mapping[str, Mapping[str, str]] | None = None,
    class_names: list[str] | None = None,
    name: str = "arrays",
    task: str = "classification",
) -> DataSplits:
    """Check ``(inputs, labels)`` pairs and build the three splits.

    Args:
        train: ``({modality: array [N, ...]}, labels [N])``; all of it when val/test are None.
        val, test: optional given splits (same modalities and per-sample shapes).
        num_classes: K; default ``max label + 1`` over all given splits.
        standardize: z-score every feature with the *training* split's mean and std
            (a feature constant in training is only centred: see
            :func:`mmbalance.data.standardize.zscore_stats`).
        sources: per split, the file each modality/labels came from (for error messages).
        task: ``regression``: float targets ``[N]`` / ``[N, T]`` (``num_classes`` is then T,
            the head's outputs), held-out splits stratified by the target's quantile bins.
    """
    sources = sources or {}
    if task == "regression":
        num_classes = None
    elif num_classes is None:
        given = [np.asarray(p[1]) for p in (train, val, test) if p is not None]
        # empty or non-numeric labels are left to check_arrays, which names the problem
        if all(g.size and g.dtype.kind in "iuf" and np.isfinite(g).all() for g in given):
            num_classes = 1 + max(int(np.max(g)) for g in given)
            _refuse_label_gaps(given, num_classes, sources.get("train", {}).get("labels"))
    x, y, k = _check(train, num_classes, sources.get("train"), "train", task)
    info: dict[str, Any] = {"dataset": name, "split_seed": split_seed}
    if task == "regression":
        notice = _class_like_targets(y)
        if notice:
            log.warning("%s: %s", name, notice)
            info["notice"] = notice
    if test is None:
        if test_fraction <= 0:
            raise DataError(f"{name}: no test split given and data.test_fraction is 0")
        keep, held = stratified_split(_strata(y, task), test_fraction, split_seed)
        x_test = {m: v[held] for m, v in x.items()}
        y_test = y[held]
        x, y = {m: v[keep] for m, v in x.items()}, y[keep]
        info["test"] = f"stratified {test_fraction:g} of the data (seed {split_seed})"
    else:
        x_test, y_test, _ = _check(test, k, sources.get("test"), "test", task)
        info["test"] = "given"
    if val is None:
        if val_fraction <= 0:
            raise DataError(f"{name}: no validation split given and data.val_fraction is 0")
        # A different stream from the test split so changing one fraction leaves the other be.
        keep, held = stratified_split(_strata(y, task), val_fraction, split_seed + 1)
        x_val = {m: v[held] for m, v in x.items()}
        y_val = y[held]
        x, y = {m: v[keep] for m, v in x.items()}, y[keep]
        info["val"] = f"stratified {val_fraction:g} of train (seed {split_seed + 1})"
    else:
        x_val, y_val, _ = _check(val, k, sources.get("val"), "val", task)
        info["val"] = "given"
    shapes = {m: tuple(v.shape[1:]) for m, v in x.items()}
    check_same_shapes(shapes, x_val, "val")
    check_same_shapes(shapes, x_test, "test")
    if standardize:
        constant: dict[str, dict[str, int]] = {}
        for m in x:
            mean, scale, fixed = zscore_stats(x[m])
            x[m], x_val[m], x_test[m] = ((v - mean) / scale for v in (x[m], x_val[m], x_test[m]))
            # centred and unscaled, a constant feature is 0 on every training sample: a sample
            # with anything else there holds a value the model never saw in training
            mask = fixed.flatten()
            constant[m] = {
                "features": int(mask.sum()),
                "val_samples": int((x_val[m].flatten(1)[:, mask] != 0).any(1).sum()),
                "test_samples": int((x_test[m].flatten(1)[:, mask] != 0).any(1).sum()),
            }
        info["constant_features"] = constant
    info.update(sizes={"train": len(y), "val": len(y_val), "test": len(y_test)})
    if task == "regression":
        for part, targets in (("train", y), ("val", y_val), ("test", y_test)):
            if targets.reshape(targets.shape[0], -1).shape[1] != k:
                raise DataError(f"{name} {part} targets: {targets.shape}; train has {k} per sample")
        info["targets_train"] = {"mean": float(y.mean()), "std": float(y.std())}
    else:
        info["class_counts_train"] = torch.bincount(y, minlength=k).tolist()
    return DataSplits(
        MultimodalTensorDataset(x, y),
        MultimodalTensorDataset(x_val, y_val),
        MultimodalTensorDataset(x_test, y_test),
        k,
        shapes,
        None if task == "regression" else class_names,
        info,
        task,
    )
