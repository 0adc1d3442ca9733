"""Atomic checkpoint files, loaded with ``weights_only=True``.

A checkpoint is written to a temporary file in the same folder, flushed to disk, then renamed
over the old one: a crash mid-write leaves the previous checkpoint intact, never a half file.
Loading never unpickles arbitrary objects, so a checkpoint from elsewhere cannot run code.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from mmbalance.errors import CheckpointError

FORMAT_VERSION = 1


def save_atomic(obj: dict[str, Any], path: str | Path) -> None:
    """``torch.save`` to ``path`` through a temp file + fsync + rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"checkpoint {str(path)!r} is unreadable or corrupt: {err}") from err
    if not isinstance(obj, dict) or obj.get("format") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is not an mmbalance checkpoint of format {FORMAT_VERSION}"
        )
    return obj
