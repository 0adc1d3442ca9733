"""Folder checks with the exact condition named: missing, or a file where a folder belongs."""

from __future__ import annotations

from pathlib import Path

from mmbalance.errors import ConfigError


def folder_problem(path: str | Path) -> str | None:
    """Why ``path`` is not a usable folder, or ``None`` when it is one."""
    p = Path(path).expanduser()
    if p.is_dir():
        return None
    if p.exists():
        return f"{str(path)!r} is a file, not a folder"
    return f"folder {str(path)!r} does not exist"


def require_folder(path: str | Path, where: str) -> Path:
    """``path`` as a folder (``~`` expanded), or a :class:`ConfigError` naming ``where`` and
    the exact condition."""
    problem = folder_problem(path)
    if problem:
        raise ConfigError(f"{where}: {problem}")
    return Path(path).expanduser()
