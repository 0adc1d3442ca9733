"""Users' own arrays: one ``.npy`` per modality plus ``labels.npy``, or one ``.npz``.

Layouts accepted under ``options.root`` (first match wins):

- ``train/``, ``val/`` (optional), ``test/`` (optional) sub-folders, each holding the layout below;
- ``<modality>.npy`` files plus ``labels.npy``;
- a single ``data.npz`` (or ``options.file``) with one array per modality and ``labels``.

Missing validation/test splits are carved from train (stratified, seeded). Every file is
checked: sample counts agree, labels are integers in ``[0, K)``, values are finite.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmbalance.data.media.npyfile import read_npy
from mmbalance.data.paths import require_folder
from mmbalance.errors import ConfigError, DataError


@dataclass
class ArraysOptions:
    """``data.options`` of the ``arrays`` dataset."""

    root: str = ""
    file: str = "data.npz"  # used when the folder holds an .npz instead of .npy files
    labels: str = "labels"  # file stem / npz key of the labels
    num_classes: int | None = None
    standardize: bool = False
    class_names: list[str] | None = None

    def validate(self, where: str) -> None:
        if not self.root:
            raise ConfigError(f"{where}.root: required; the folder holding the arrays")
        self.root = str(Path(self.root).expanduser())


def _load_npy(path: Path) -> np.ndarray:
    # allow_pickle=False inside: an array file must not be able to run code.
    return read_npy(path)


def read_folder(
    folder: Path, opts: ArraysOptions, modalities: list[str] | None
) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, str]]:
    """Read one split folder; returns inputs, labels and the file each came from."""
    npz = folder / opts.file
    label_file = folder / f"{opts.labels}.npy"
    if label_file.is_file():
        names = modalities or sorted(p.stem for p in folder.glob("*.npy") if p.stem != opts.labels)
        if not names:
            raise DataError(f"{str(folder)!r}: {label_file.name} found but no modality .npy files")
        inputs, sources = {}, {"labels": str(label_file)}
        for m in names:
            path = folder / f"{m}.npy"
            if not path.is_file():
                raise DataError(
                    f"modality {m!r}: file {str(path)!r} not found; expected <modality>.npy "
                    f"beside {label_file.name}"
                )
            inputs[m], sources[m] = _load_npy(path), str(path)
        return inputs, _load_npy(label_file), sources
    if npz.is_file():
        try:
            archive = np.load(npz, allow_pickle=False)
        except Exception as err:
            raise DataError(f"cannot read {str(npz)!r} as an .npz archive: {err}") from err
        with archive:
            if opts.labels not in archive.files:
                raise DataError(
                    f"{str(npz)!r}: no array named {opts.labels!r}; it holds {archive.files}"
                )
            names = modalities or [k for k in archive.files if k != opts.labels]
            missing = [m for m in names if m not in archive.files]
            if missing:
                raise DataError(
                    f"{str(npz)!r}: no array for modality {missing}; it holds {archive.files}"
                )
            inputs = {m: archive[m] for m in names}
            labels = archive[opts.labels]
        return (
            inputs,
            labels,
            {**{m: f"{npz}[{m}]" for m in names}, "labels": f"{npz}[{opts.labels}]"},
        )
    raise DataError(
        f"{str(folder)!r}: no {label_file.name} (with <modality>.npy files) and no {opts.file}; "
        "expected one of those layouts"
    )


def load_arrays(opts: ArraysOptions, modalities: list[str] | None) -> dict[str, Any]:
    """Read every split present under ``opts.root``; missing splits come back as None."""
    root = require_folder(opts.root, "data.options.root")
    if (root / "train").is_dir():
        out: dict[str, Any] = {}
        for split in ("train", "val", "test"):
            folder = root / split
            out[split] = read_folder(folder, opts, modalities) if folder.is_dir() else None
        return out
    return {"train": read_folder(root, opts, modalities), "val": None, "test": None}
