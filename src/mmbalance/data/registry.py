"""Dataset registry: ``data.name`` -> options dataclass and a builder of :class:`DataSplits`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mmbalance.data.base import DataSplits, check_classes
from mmbalance.data.datasets.arrays import ArraysOptions, load_arrays
from mmbalance.data.datasets.assemble import assemble_splits
from mmbalance.data.datasets.cremad import CremaDOptions, build_cremad
from mmbalance.data.datasets.kinetics_sounds import KineticsSoundsOptions, build_kinetics_sounds
from mmbalance.data.datasets.mfeat import MFeatOptions, load_mfeat
from mmbalance.data.datasets.mosi import MOSIOptions, build_mosi
from mmbalance.data.datasets.synthetic import SyntheticOptions, generate_synthetic
from mmbalance.data.datasets.ucf101 import UCF101Options, build_ucf101
from mmbalance.errors import ConfigError
from mmbalance.structured import from_dict


@dataclass(frozen=True)
class DatasetEntry:
    options_cls: type
    build: Callable[[Any, Any], DataSplits]
    description: str


def _split_kwargs(cfg: Any) -> dict[str, Any]:
    return {
        "val_fraction": cfg.val_fraction,
        "test_fraction": cfg.test_fraction,
        "split_seed": cfg.split_seed,
    }


def _build_synthetic(opts: SyntheticOptions, cfg: Any) -> DataSplits:
    if cfg.modalities is not None:
        unknown = [m for m in cfg.modalities if m not in opts.modalities]
        if unknown:
            raise ConfigError(
                f"data.modalities: synthetic data has no modality {unknown}; "
                f"it has {list(opts.modalities)}"
            )
    inputs, labels = generate_synthetic(opts, cfg.task)
    if cfg.modalities is not None:
        inputs = {m: inputs[m] for m in cfg.modalities}
    return assemble_splits(
        (inputs, labels),
        num_classes=None if cfg.task == "regression" else opts.num_classes,
        name="synthetic",
        task=cfg.task,
        **_split_kwargs(cfg),
    )


def _build_mfeat(opts: MFeatOptions, cfg: Any) -> DataSplits:
    inputs, labels, sources = load_mfeat(opts, cfg.modalities)
    return assemble_splits(
        (inputs, labels),
        num_classes=10,
        standardize=opts.standardize,
        sources={"train": sources},
        class_names=[str(d) for d in range(10)],
        name="mfeat",
        **_split_kwargs(cfg),
    )


def _build_arrays(opts: ArraysOptions, cfg: Any) -> DataSplits:
    splits = load_arrays(opts, cfg.modalities)
    pairs = {s: (v[0], v[1]) if v is not None else None for s, v in splits.items()}
    sources = {s: v[2] for s, v in splits.items() if v is not None}
    train = pairs["train"]
    assert train is not None  # load_arrays always reads a training split (or refuses)
    return assemble_splits(
        train,
        val=pairs["val"],
        test=pairs["test"],
        num_classes=opts.num_classes,
        standardize=opts.standardize,
        sources=sources,
        class_names=opts.class_names,
        name="arrays",
        task=cfg.task,
        **_split_kwargs(cfg),
    )


# the datasets that can hold regression targets (data.task: regression)
REGRESSION_DATASETS = frozenset({"synthetic", "arrays", "mosi"})

DATASETS: dict[str, DatasetEntry] = {
    "synthetic": DatasetEntry(
        SyntheticOptions,
        _build_synthetic,
        "generated, controllable imbalance (vector / sequence / image-like)",
    ),
    "mfeat": DatasetEntry(
        MFeatOptions,
        _build_mfeat,
        "UCI Multiple Features, 10 digits, 6 views (fou fac kar pix zer mor)",
    ),
    "cremad": DatasetEntry(
        CremaDOptions,
        build_cremad,
        "CREMA-D (audio + visual, 6 emotions) in OGM-GE's layout",
    ),
    "kinetics_sounds": DatasetEntry(
        KineticsSoundsOptions,
        build_kinetics_sounds,
        "Kinetics-Sounds (audio + visual, 31 classes): list files, .npy spectrograms, frames",
    ),
    "ucf101": DatasetEntry(
        UCF101Options,
        build_ucf101,
        "UCF-101 (RGB + optical flow u/v, 101 classes): classInd, split lists, frame folders",
    ),
    "mosi": DatasetEntry(
        MOSIOptions,
        build_mosi,
        "CMU-MOSI / MOSEI (audio + visual + text sequences): MulT / MultiBench pickle",
    ),
    "arrays": DatasetEntry(
        ArraysOptions, _build_arrays, "your own arrays: <modality>.npy + labels.npy, or data.npz"
    ),
}


def build_data(cfg: Any) -> DataSplits:
    """Build the splits described by a :class:`mmbalance.config.DataConfig`."""
    if cfg.name not in DATASETS:
        raise ConfigError(f"data.name: got {cfg.name!r}; expected one of {', '.join(DATASETS)}")
    entry = DATASETS[cfg.name]
    task = getattr(cfg, "task", "classification")
    if task == "regression" and cfg.name not in REGRESSION_DATASETS:
        raise ConfigError(
            f"data.task: regression: dataset {cfg.name!r} has class labels only; regression "
            f"targets come from {', '.join(sorted(REGRESSION_DATASETS))} (mosi: label: score)"
        )
    if cfg.generate is not None:
        from mmbalance.data.prepare.generate import ensure_generated

        ensure_generated(cfg.generate, cfg.options["root"])
    opts: Any = from_dict(entry.options_cls, cfg.options, "data.options")
    data = entry.build(opts, cfg)
    root = cfg.options.get("root")
    check_classes(data, f"data ({cfg.name}" + (f", root {root!r})" if root else ")"))
    return data


def from_tensors(
    inputs: Mapping[str, Any],
    labels: Any,
    *,
    val: tuple[Mapping[str, Any], Any] | None = None,
    test: tuple[Mapping[str, Any], Any] | None = None,
    num_classes: int | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.2,
    seed: int = 0,
    standardize: bool = False,
    task: str = "classification",
) -> DataSplits:
    """Splits from in-memory tensors/arrays: the Python API's entry point for users' data.
    ``task="regression"``: float targets ``[N]`` or ``[N, T]`` (docs/regression.md).

    Example:
        >>> import torch
        >>> x = {"audio": torch.randn(100, 8), "video": torch.randn(100, 4)}
        >>> data = from_tensors(x, torch.arange(100) % 2)
        >>> data.num_classes, data.shapes["audio"]
        (2, (8,))
    """
    if task not in ("classification", "regression"):
        raise ConfigError(
            f"from_tensors: task: got {task!r}; expected classification or regression"
        )
    data = assemble_splits(
        (inputs, labels),
        val=val,
        test=test,
        num_classes=num_classes,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        split_seed=seed,
        standardize=standardize,
        name="tensors",
        task=task,
    )
    check_classes(data, "from_tensors")
    return data
