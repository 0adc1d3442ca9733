"""File-backed clip datasets shared by CREMA-D, Kinetics-Sounds and UCF-101.

A :class:`Clip` names its files per modality; a :class:`ClipDataset` decodes them on the fly
with one loader per modality. What every file layout of the field shares lives here:

- frames are listed in *natural* order (``frame_2`` before ``frame_10``), never ``os.listdir``
  order — the field's unsorted-frames bug;
- frames are picked per temporal segment, as the field's loaders do (BalanceBenchmark KS /
  UCF-101 / CREMA-D): ``n`` equal segments, a random frame in each while training, the middle
  frame of each at validation / test;
- a file that fails to decode is an error naming the file, or — with ``on_corrupt: skip`` — the
  sample is dropped from its batch and listed in ``<run>/skipped_files.tsv``. Never a silent
  substitute sample.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor
from torch.utils.data import Dataset

from mmbalance.data.loading import record_skip
from mmbalance.errors import DataError

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")
OnCorrupt = Literal["error", "skip"]


def natural_key(name: str) -> list[Any]:
    """Sort key comparing digit runs as numbers: ``frame_2`` < ``frame_10``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def list_frames(folder: Path) -> tuple[Path, ...]:
    """Image files of ``folder`` in natural order (empty when the folder is missing)."""
    if not folder.is_dir():
        return ()
    frames = [p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES]
    return tuple(sorted(frames, key=lambda p: natural_key(p.name)))


def segment_indices(available: int, n: int, train: bool) -> list[int]:
    """Positions of ``n`` frames out of ``available``: one per equal temporal segment.

    Training draws a random frame inside each segment (global torch RNG, seeded per epoch and
    worker by the trainer); evaluation takes each segment's middle frame, so it is deterministic.
    Clips with fewer frames than ``n`` repeat frames in order instead of failing.
    """
    if available <= 0:
        raise ValueError("no frames to pick from")
    if available < n:
        return [(i * available) // n for i in range(n)]
    seg = available // n
    if train:
        return [i * seg + int(torch.randint(0, seg, (1,))) for i in range(n)]
    return [i * seg + seg // 2 for i in range(n)]


@dataclass(frozen=True)
class Clip:
    """One sample: its name, label, and per-modality files (a path or a tuple of frames)."""

    name: str
    label: int
    files: dict[str, Any] = field(hash=False)
    score: float | None = None  # a continuous target kept beside the class (regression)


Loader = Callable[[Clip, bool], Tensor]  # (clip, train) -> tensor of one modality


class ClipDataset(Dataset):
    """Decodes clips with ``loaders[modality](clip, train)``; batches via :func:`collate`.

    ``on_corrupt="skip"`` turns a :class:`DataError` while decoding into a dropped sample,
    appended to ``skip_log`` (set by the trainer to the run folder) as ``split, name, error``.
    """

    def __init__(
        self,
        clips: Sequence[Clip],
        loaders: dict[str, Loader],
        train: bool,
        split: str,
        on_corrupt: OnCorrupt = "error",
    ) -> None:
        self.clips = list(clips)
        self.loaders = loaders
        self.train = train
        self.split = split
        self.on_corrupt = on_corrupt
        self.skip_log: Path | None = None
        self.shapes: dict[str, tuple[int, ...]] | None = None  # set once the first clip is read
        self.labels = torch.tensor([c.label for c in self.clips], dtype=torch.long)

    def __len__(self) -> int:
        return len(self.clips)

    def load(self, i: int) -> dict[str, Any]:
        """Sample ``i``; raises :class:`DataError` naming the file that failed."""
        clip = self.clips[i]
        inputs = {m: load(clip, self.train) for m, load in self.loaders.items()}
        for m, x in inputs.items():
            # A clip of another shape would fail later inside collation with no file named.
            if self.shapes is not None and tuple(x.shape) != self.shapes[m]:
                source = clip.files.get(m, clip.name)
                if isinstance(source, tuple):
                    source = source[0].parent if source else clip.name
                raise DataError(
                    f"{self.split} clip {clip.name!r}: {m} has shape {tuple(x.shape)}, expected "
                    f"{self.shapes[m]} like the other clips (file {str(source)!r})"
                )
        return {"inputs": inputs, "label": self.labels[i], "index": i}

    def __getitem__(self, i: int) -> dict[str, Any] | None:
        try:
            return self.load(i)
        except DataError as err:
            if self.on_corrupt != "skip":
                raise
            self._record_skip(self.clips[i].name, str(err))
            return None

    def _record_skip(self, name: str, reason: str) -> None:
        if self.skip_log is None:
            return
        record_skip(self.skip_log, self.split, name, reason)


def check_frames(frames: Sequence[Path], folder: Path) -> list[str]:
    """Problems of a frame list: none found, or files PIL cannot verify."""
    if not frames:
        return [f"no frames ({', '.join('*' + s for s in FRAME_SUFFIXES)}) in {str(folder)!r}"]
    from PIL import Image

    problems = []
    for f in frames:
        try:
            with Image.open(f) as img:
                img.verify()
        except Exception as err:
            problems.append(f"unreadable frame {str(f)!r}: {err}")
    return problems


def clip_splits(
    dataset: str,
    clips: dict[str, list[Clip]],
    loaders: dict[str, Loader],
    cfg: Any,
    class_names: list[str],
    on_corrupt: OnCorrupt,
    info: dict[str, Any],
) -> Any:
    """:class:`DataSplits` from clip lists: ``clips`` has ``train`` and ``test`` (and ``val``
    when the layout ships one; otherwise a stratified, seeded share of train becomes val).

    Checks: no clip in two splits, labels inside ``class_names``, the requested modalities exist.
    """
    from mmbalance.data.base import DataSplits
    from mmbalance.data.splits import stratified_split
    from mmbalance.errors import ConfigError

    if cfg.modalities is not None:
        unknown = [m for m in cfg.modalities if m not in loaders]
        if unknown:
            raise ConfigError(
                f"data.modalities: {dataset} has {', '.join(loaders)}; got unknown {unknown}"
            )
        loaders = {m: loaders[m] for m in cfg.modalities}
    names = {split: {c.name for c in cs} for split, cs in clips.items()}
    splits = list(names)
    for i, a in enumerate(splits):
        for b in splits[i + 1 :]:
            both = names[a] & names[b]
            if both:
                raise DataError(
                    f"{dataset}: {len(both)} clip(s) are in both {a} and {b}, "
                    f"e.g. {sorted(both)[:3]}"
                )
    for split, cs in clips.items():
        if not cs:
            raise DataError(f"{dataset}: the {split} split has no usable clips")
        bad = [c for c in cs if not 0 <= c.label < len(class_names)]
        if bad:
            raise DataError(
                f"{dataset}: {split} clip {bad[0].name!r} has label {bad[0].label}; expected "
                f"0..{len(class_names) - 1} ({len(class_names)} classes)"
            )
    val_note = "shipped"
    if "val" not in clips:
        labels = torch.tensor([c.label for c in clips["train"]]).numpy()
        keep, held = stratified_split(labels, cfg.val_fraction, cfg.split_seed + 1)
        clips = {
            "train": [clips["train"][i] for i in keep],
            "val": [clips["train"][i] for i in held],
            "test": clips["test"],
        }
        val_note = f"stratified {cfg.val_fraction:g} of train (seed {cfg.split_seed + 1})"
    sets = {
        split: ClipDataset(clips[split], loaders, split == "train", split, on_corrupt)
        for split in ("train", "val", "test")
    }
    probe = sets["val"] if len(sets["val"]) else sets["test"]
    sample = probe.load(0)  # strict: a broken first file is an error even when skipping
    shapes = {m: tuple(x.shape) for m, x in sample["inputs"].items()}
    for d in sets.values():
        d.shapes = shapes
    info = {
        "dataset": dataset,
        **info,
        "val": val_note,
        "sizes": {s: len(d) for s, d in sets.items()},
        "class_counts_train": torch.bincount(
            sets["train"].labels, minlength=len(class_names)
        ).tolist(),
        "on_corrupt": on_corrupt,
    }
    info.setdefault("skipped", [])
    return DataSplits(
        sets["train"], sets["val"], sets["test"], len(class_names), shapes, class_names, info
    )


def report(problems: list[str] | None, message: str) -> None:
    """Raise ``message`` as a :class:`DataError`, or collect it when ``problems`` is a list
    (``validate`` and ``skip_missing`` collect; training raises)."""
    if problems is None:
        raise DataError(message)
    problems.append(message)


def split_lists(opts: Any) -> list[tuple[str, str]]:
    """``(split, list file)`` of a layout with ``train_list``, ``test_list`` and an optional
    ``val_list`` (empty: validation is carved from train)."""
    lists = [("train", opts.train_list), ("test", opts.test_list)]
    if opts.val_list:
        lists.insert(1, ("val", opts.val_list))
    return lists


def scan_layout(
    scan: Callable[[Any, list[str] | None], dict[str, list[Clip]]], opts: Any, expected: str
) -> tuple[dict[str, list[Clip]], list[str]]:
    """Run a layout's ``scan``: a clip with missing files is an error naming it and the layout
    ``expected``, or — with ``skip_missing`` — dropped and returned in the skipped list."""
    skipped: list[str] = []
    try:
        clips = scan(opts, skipped if opts.skip_missing else None)
    except DataError as err:
        raise DataError(
            f"{err}; expected {expected} under {opts.root!r} (set "
            "data.options.skip_missing: true to drop such clips)"
        ) from None
    return clips, skipped


def require_root(opts: Any) -> Path:
    """``data.options.root`` as a path; a clear error when it is missing or not a folder."""
    from mmbalance.data.paths import require_folder

    return require_folder(opts.root, "data.options.root")
