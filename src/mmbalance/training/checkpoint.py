"""Checkpoint files that survive crashes, full disks and damage, loaded with ``weights_only``.

Writing ``name.pt``:

1. the checkpoint goes to a temporary file in the same folder, flushed and fsynced, and its
   SHA-256 to a temporary sidecar — a crash or a full disk here leaves the old files untouched;
2. the current ``name.pt`` (and its sidecar) become ``name.prev.pt`` — the previous good one;
3. the sidecar, then the checkpoint, are renamed into place (atomic renames).

Reading verifies the SHA-256 when a sidecar is there and unpickles nothing but tensors and plain
data (``weights_only=True``), so a checkpoint from elsewhere cannot run code.
:func:`load_latest` falls back to ``name.prev.pt`` when ``name.pt`` is missing, truncated or
corrupt, and says so.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from mmbalance.errors import CheckpointError, RunFolderError

# 2: a method's state is its nn.Module state_dict (1, before: a dict each method wrote by hand)
FORMAT_VERSION = 2
log = logging.getLogger("mmbalance")


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def previous(path: Path) -> Path:
    """``last.pt`` -> ``last.prev.pt``."""
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_atomic(obj: dict[str, Any], path: str | Path, keep_previous: bool = True) -> None:
    """Write ``path`` as described in the module docstring; never leaves a half file.

    A full disk (or any write error) raises :class:`CheckpointError` naming the file, with the
    previous checkpoint still in place.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    side_tmp = tmp.with_name(tmp.name + ".sha256")
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        side_tmp.write_text(_digest(tmp) + "\n")
        if keep_previous and path.is_file():
            os.replace(path, previous(path))
            if _sidecar(path).is_file():
                os.replace(_sidecar(path), _sidecar(previous(path)))
        os.replace(side_tmp, _sidecar(path))
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        side_tmp.unlink(missing_ok=True)
        kept = previous(path) if not path.is_file() and previous(path).is_file() else path
        reason = "the disk is full" if err.errno == errno.ENOSPC else str(err)
        raise CheckpointError(
            f"could not write checkpoint {str(path)!r}: {reason}; the last good checkpoint "
            f"{str(kept)!r} is intact"
        ) from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        side_tmp.unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write a run folder's text file (``config.yaml``, ``meta.json``, ``metrics.csv``, ...)
    whole or not at all: a temporary sibling, fsynced, renamed into place.

    Any OS error (read-only folder, full disk, a file where a folder should be) raises
    :class:`RunFolderError` naming the file, and leaves the previous version, if any, intact —
    never a 0-byte or half-written file.
    """
    path = Path(path)
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        tmp = Path(name)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it 0600; a run folder is shared
        os.replace(tmp, path)
    except OSError as err:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        reason = "the disk is full" if err.errno == errno.ENOSPC else (err.strerror or str(err))
        raise RunFolderError(
            f"could not write {str(path)!r}: {reason}; give a writable folder with free space "
            "(--out, or output_dir in the config)"
        ) from err
    except BaseException:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise


def append_text(path: str | Path, text: str) -> None:
    """Append ``text`` (one JSONL row) to ``path``; an OS error raises :class:`RunFolderError`.

    A crash mid-append leaves at most a torn last line, which the readers of the file skip
    (``logger.read_rows``)."""
    try:
        with Path(path).open("a", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as err:
        reason = "the disk is full" if err.errno == errno.ENOSPC else (err.strerror or str(err))
        raise RunFolderError(f"could not append to {str(path)!r}: {reason}") from err


def remove_stale_temporaries(folder: str | Path) -> int:
    """Delete the temporary files of writes a SIGKILL interrupted (the checkpoints they were
    replacing are intact); returns how many were removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    stale = [*folder.glob(".*.tmp"), *folder.glob(".*.tmp.sha256")]
    for p in stale:
        try:
            p.unlink(missing_ok=True)
        except OSError as err:  # a read-only run folder: say so, as every other write does
            raise RunFolderError(
                f"could not remove the stale temporary file {str(p)!r} (left by a write that "
                f"was killed): {err.strerror or err}; make {str(folder)!r} writable to resume"
            ) from err
    return len(stale)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and verify one checkpoint; errors name the file and what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    side = _sidecar(path)
    if side.is_file():
        expected = side.read_text().strip()
        if expected and _digest(path) != expected:
            raise CheckpointError(
                f"checkpoint {str(path)!r} is corrupt: its SHA-256 does not match {side.name}"
            )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"checkpoint {str(path)!r} is unreadable or corrupt: {err}") from err
    if isinstance(obj, dict) and obj.get("format") == 1:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is of format 1, written before methods became modules; "
            f"this mmbalance reads format {FORMAT_VERSION}. Train the run again, or read it "
            "with the mmbalance commit that wrote it (git_commit in the run's meta.json)"
        )
    if not isinstance(obj, dict) or obj.get("format") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is not an mmbalance checkpoint of format {FORMAT_VERSION}"
        )
    return obj


def load_latest(path: str | Path) -> tuple[dict[str, Any], Path]:
    """``path``, or its previous version when ``path`` is missing or damaged."""
    path = Path(path)
    try:
        return load_checkpoint(path), path
    except CheckpointError as first:
        prev = previous(path)
        if not prev.is_file():
            raise
        try:
            obj = load_checkpoint(prev)
        except CheckpointError as second:
            raise CheckpointError(f"{first}; and the previous one: {second}") from second
        log.warning("%s; using the previous checkpoint %s", first, prev)
        return obj, prev
