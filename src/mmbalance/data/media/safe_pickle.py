"""Reading the field's pickles (CMU-MOSI / MOSEI, Kinetics-Sounds spectrograms) without running
code from them.

``pickle.load`` on an untrusted file executes whatever callable the file names. The datasets'
pickles only hold dicts, lists, strings and numpy arrays, so :func:`load_pickle` resolves only
the handful of globals needed to rebuild those and refuses anything else with an error naming
the file and the global it asked for.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from mmbalance.errors import DataError

# (module, name) pairs a pickle of plain containers and numpy arrays may reference. numpy moved
# its core module to ``numpy._core`` in 2.0; pickles written by either version name one of them.
_ALLOWED = {
    ("builtins", n)
    for n in ("dict", "list", "tuple", "set", "frozenset", "str", "bytes", "int", "float", "bool")
} | {
    ("collections", "OrderedDict"),
    ("collections", "defaultdict"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, fh: Any, source: str) -> None:
        super().__init__(fh, encoding="latin1")  # py2-era pickles (MulT's) hold latin-1 bytes
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise DataError(
            f"{self.source!r} asks to load {module}.{name}; only plain containers and numpy "
            "arrays are read from pickles (a pickle can run code: convert the file to .npz)"
        )


def load_pickle(path: str | Path) -> Any:
    """Unpickle ``path`` allowing only containers, scalars and numpy arrays."""
    source = str(path)
    try:
        with open(path, "rb") as fh:
            return _RestrictedUnpickler(fh, source).load()
    except DataError:
        raise
    except FileNotFoundError as err:
        raise DataError(f"pickle file {source!r} not found") from err
    except Exception as err:
        raise DataError(f"cannot read pickle {source!r}: {err}") from err
