"""Generated datasets on disk: written once, atomically, by one process, then only read.

A generated folder is complete when it holds ``MANIFEST.json`` (written last, inside a temporary
sibling folder that is renamed into place), so a crash leaves no half dataset behind. Several
processes asking for the same folder at once (``compare --workers 2``) wait on a lock file and
the first one generates it. A folder whose manifest names another benchmark, seed or generator
version is refused rather than silently used.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import multiprocessing
import os
import shutil
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from mmbalance.errors import ConfigError, DataError
from mmbalance.version import __version__

MANIFEST = "MANIFEST.json"
# Bump a benchmark's number when its writer changes what it writes: folders of another version
# are refused (and the shipped config's root names the version, so the new data goes elsewhere).
GENERATOR_VERSIONS: dict[str, int] = {"digits_av": 2, "digits_seq": 1, "digits_vec": 1}


def generator_version(name: str) -> int:
    """The current generator version of benchmark ``name`` (1 for one not listed)."""
    return GENERATOR_VERSIONS.get(name, 1)


def generated_names() -> list[str]:
    from mmbalance.data.prepare.generate.suite import WRITERS

    return list(WRITERS)


def read_manifest(root: Path) -> dict[str, Any] | None:
    """The manifest of a complete generated folder, or None."""
    path = root / MANIFEST
    if not path.is_file():
        return None
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError) as err:
        raise DataError(f"{str(path)!r} is not a readable manifest: {err}") from err


def _check(manifest: dict[str, Any], name: str, seed: int, root: Path) -> None:
    want = {
        "benchmark": name,
        "seed": seed,
        "per_class": None,
        "generator_version": generator_version(name),
    }
    got = {k: manifest.get(k) for k in want}
    if got != want:
        raise DataError(
            f"{str(root)!r} holds generated data {got}, not {want}; remove the folder (or point "
            "data.options.root elsewhere) and it is generated again"
        )


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # released when the file closes, also on a crash
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def generate(
    name: str,
    out: str | Path,
    seed: int = 0,
    progress: bool | None = None,
    per_class: int | None = None,
) -> Path:
    """Write benchmark ``name`` into the new folder ``out`` (refused if it exists).

    ``per_class`` writes only the first that many digits of each class (test fixtures)."""
    from mmbalance.data.prepare.generate.suite import WRITERS

    if name not in WRITERS:
        raise ConfigError(f"generated dataset {name!r}: expected one of {', '.join(WRITERS)}")
    out = Path(out).expanduser()
    if out.exists():
        raise ConfigError(f"{str(out)!r} already exists; generation writes a new folder")
    progress = sys.stderr.isatty() if progress is None else progress
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    t0 = time.perf_counter()
    try:
        # A fresh process: eSpeak NG's output depends on everything the process spoke before
        # (espeak.py), so only a process that has spoken nothing yet gives the same files on
        # every run.
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(1, mp_context=spawn) as pool:
            details = pool.submit(WRITERS[name], tmp, seed, progress, per_class).result()
        manifest = {
            "benchmark": name,
            "seed": seed,
            "per_class": per_class,
            "generator_version": generator_version(name),
            "mmbalance": __version__,
            "seconds": round(time.perf_counter() - t0, 1),
            **details,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def ensure_generated(name: str, root: str | Path, seed: int = 0) -> Path:
    """``root`` holding benchmark ``name``: used as it is when complete, generated when absent.

    A folder that exists without a manifest is refused (it is not ours to overwrite).
    """
    root = Path(root).expanduser()
    manifest = read_manifest(root)
    if manifest is None:
        with _locked(root.with_name(f".{root.name}.lock")):
            manifest = read_manifest(root)  # another process may have finished meanwhile
            if manifest is None:
                if root.exists():
                    raise DataError(
                        f"{str(root)!r} exists but holds no complete generated dataset "
                        f"({MANIFEST} missing); remove it and it is generated again"
                    )
                print(f"generating {name} into {root} (once)", file=sys.stderr, flush=True)
                generate(name, root, seed)
                manifest = read_manifest(root)
    assert manifest is not None
    _check(manifest, name, seed, root)
    return root
