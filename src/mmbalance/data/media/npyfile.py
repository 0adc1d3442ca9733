"""Reading one ``.npy`` file safely, with errors that say what the file is.

``numpy.load(allow_pickle=False)`` explains a file that is not a ``.npy`` array with text about
pickles ("Cannot load file containing pickled data when allow_pickle=False"), which misleads a
user who wrote a CSV under a ``.npy`` name. The magic bytes tell what the file really is.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mmbalance.errors import DataError

NPY_MAGIC = b"\x93NUMPY"


def what_it_is(head: bytes) -> str:
    """A short description of a file that is not ``.npy``, from its first bytes."""
    if not head:
        return "an empty file"
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive (an .npz? give it as data.options.file, or save each array apart)"
    if head.startswith(b"\x80"):
        return "a Python pickle (pickles are not loaded: they can run code)"
    if head.startswith(b"\x1f\x8b"):
        return "a gzip-compressed file"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"a binary file starting with {head[:8]!r}"
    if all(c.isprintable() or c in "\t\r\n" for c in text):
        first = text.splitlines()[0][:40] if text.splitlines() else ""
        return (
            f"a text file (it starts with {first!r}); load text with numpy.loadtxt and write the "
            "array with numpy.save"
        )
    return f"a binary file starting with {head[:8]!r}"


def read_npy(path: str | Path) -> np.ndarray:
    """``np.load(path, allow_pickle=False)``, refusing with a :class:`DataError` that names the
    file and says what it is when it is not a NumPy array file, or holds Python objects."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            head = fh.read(64)
    except OSError as err:
        raise DataError(f"cannot read {str(path)!r}: {err.strerror or err}") from err
    if not head.startswith(NPY_MAGIC):
        raise DataError(
            f"{str(path)!r} is not a NumPy .npy array file: it is {what_it_is(head)}; "
            "expected an array written by numpy.save"
        )
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as err:
        if "pickle" in str(err):
            raise DataError(
                f"{str(path)!r} holds Python objects (dtype=object), which are not loaded "
                "(unpickling can run code); save a numeric array (e.g. np.stack the rows into "
                "one float array) with numpy.save"
            ) from err
        raise DataError(f"cannot read {str(path)!r} as a .npy array: {err}") from err
    except Exception as err:
        raise DataError(f"cannot read {str(path)!r} as a .npy array: {err}") from err
