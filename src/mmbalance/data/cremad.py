"""CREMA-D in the layout the field's repositories use (OGM-GE, ``datasets.md``)::

    ROOT/train.csv, ROOT/test.csv        rows "name,label", label NEU HAP SAD FEA DIS ANG (or 0..5)
    ROOT/AudioWAV/<name>.wav             any sample rate (16 kHz in the release)
    ROOT/Image-01-FPS/<name>/*.jpg       1-fps frames, sorted by file name
    (or ROOT/<audio_pt_dir>/<name>.pt    precomputed audio tensors, instead of the WAVs)

Every listed file is checked when the dataset is built: a missing clip is an error naming the
file and the layout expected (``skip_missing: true`` drops such rows instead and records them in
``meta.json``). A validation split is carved from ``train.csv`` (stratified, seeded) and uses the
deterministic evaluation transforms, like the test split.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from mmbalance.data.audio import RECIPES, FbankRecipe, StftRecipe, read_wav
from mmbalance.data.base import DataSplits
from mmbalance.data.splits import stratified_split
from mmbalance.data.vision import eval_transform, load_rgb, train_transform
from mmbalance.errors import ConfigError, DataError
from mmbalance.structured import check_positive

CLASSES = ["NEU", "HAP", "SAD", "FEA", "DIS", "ANG"]  # OGM-GE's class_dict order
FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass
class CremaDOptions:
    """``data.options`` of ``cremad``."""

    root: str = ""
    train_csv: str = "train.csv"
    test_csv: str = "test.csv"
    audio_dir: str = "AudioWAV"
    visual_dir: str = "Image-01-FPS"
    audio: Literal["stft", "fbank", "pt"] = "stft"
    audio_pt_dir: str = "audio_pt"  # with audio: pt, <name>.pt tensors
    frames: int = 1  # frames per clip: 1 (OGM-GE, AGM), 2 (D&R), 3 (MLA, PMR)
    image_size: int = 224
    skip_missing: bool = False

    def validate(self, where: str) -> None:
        if not self.root:
            raise ConfigError(f"{where}.root: required; the CREMA-D folder")
        check_positive(self.frames, f"{where}.frames")
        check_positive(self.image_size, f"{where}.image_size")


@dataclass(frozen=True)
class Clip:
    name: str
    label: int
    audio: Path
    frames: tuple[Path, ...]


def read_list(path: Path) -> list[tuple[str, int, int]]:
    """``(name, label, line number)`` rows of a CREMA-D csv; errors name file and line."""
    if not path.is_file():
        raise DataError(f"CREMA-D list {str(path)!r} not found; expected rows 'name,label'")
    rows = []
    with path.open(encoding="utf-8-sig", newline="") as fh:
        for line_no, row in enumerate(csv.reader(fh), start=1):
            if not row or not "".join(row).strip():
                continue
            if len(row) < 2:
                raise DataError(f"{str(path)!r} line {line_no}: expected 'name,label'; got {row!r}")
            name, label = row[0].strip(), row[1].strip()
            if label.upper() in CLASSES:
                rows.append((name, CLASSES.index(label.upper()), line_no))
            elif label.isdigit() and int(label) < len(CLASSES):
                rows.append((name, int(label), line_no))
            elif line_no == 1 and name.lower() in ("name", "filename", "file"):
                continue  # a header row
            else:
                raise DataError(
                    f"{str(path)!r} line {line_no}: unknown label {label!r} for {name!r}; "
                    f"expected one of {', '.join(CLASSES)} (or 0..5)"
                )
    if not rows:
        raise DataError(f"CREMA-D list {str(path)!r} has no rows")
    return rows


def _clips(opts: CremaDOptions, rows: list[tuple[str, int, int]], skipped: list[str]) -> list[Clip]:
    root = Path(opts.root)
    clips = []
    for name, label, _ in rows:
        if opts.audio == "pt":
            audio = root / opts.audio_pt_dir / f"{name}.pt"
        else:
            audio = root / opts.audio_dir / f"{name}.wav"
        frame_dir = root / opts.visual_dir / name
        frames = (
            tuple(sorted(p for p in frame_dir.iterdir() if p.suffix.lower() in FRAME_SUFFIXES))
            if frame_dir.is_dir()
            else ()
        )
        problem = None
        if not audio.is_file():
            problem = f"audio file {str(audio)!r} is missing"
        elif not frames:
            problem = f"no frames (*.jpg) in {str(frame_dir)!r}"
        if problem:
            if opts.skip_missing:
                skipped.append(f"{name}: {problem}")
                continue
            raise DataError(
                f"CREMA-D clip {name!r}: {problem}; expected {opts.audio_dir}/<name>.wav (or "
                f"{opts.audio_pt_dir}/<name>.pt with audio: pt) and {opts.visual_dir}/<name>/*.jpg "
                "under the root (set data.options.skip_missing: true to drop such clips)"
            )
        clips.append(Clip(name, label, audio, frames))
    return clips


class CremaDDataset(Dataset):
    """Clips decoded on the fly: audio by the recipe, ``frames`` frames per clip."""

    def __init__(self, clips: list[Clip], opts: CremaDOptions, train: bool) -> None:
        self.clips = clips
        self.opts = opts
        self.train = train
        self.recipe = None if opts.audio == "pt" else RECIPES[opts.audio]()
        self.labels = torch.tensor([c.label for c in clips], dtype=torch.long)

    def __len__(self) -> int:
        return len(self.clips)

    def _audio(self, clip: Clip) -> Tensor:
        if self.recipe is None:
            try:
                spec = torch.load(clip.audio, map_location="cpu", weights_only=True)
            except Exception as err:
                raise DataError(f"cannot read audio tensor {str(clip.audio)!r}: {err}") from err
            spec = torch.as_tensor(spec).float()
            return spec if spec.dim() == 3 else spec.unsqueeze(0)
        wave, rate = read_wav(clip.audio)
        return self.recipe(wave, rate)

    def _frame_indices(self, available: int) -> list[int]:
        n = self.opts.frames
        if self.train and available >= n:
            # a random, ordered choice of distinct frames (the field's training sampling)
            return sorted(torch.randperm(available)[:n].tolist())
        # evaluation: evenly spaced, deterministic; short clips repeat their last frame
        return [min(available - 1, (i * available) // n) for i in range(n)]

    def _visual(self, clip: Clip) -> Tensor:
        transform = train_transform if self.train else eval_transform
        picks = self._frame_indices(len(clip.frames))
        frames = [transform(load_rgb(clip.frames[i]), self.opts.image_size) for i in picks]
        return torch.stack(frames, dim=1)  # [3, T, H, W]

    def __getitem__(self, i: int) -> dict[str, Any]:
        clip = self.clips[i]
        return {
            "inputs": {"audio": self._audio(clip), "visual": self._visual(clip)},
            "label": self.labels[i],
            "index": i,
        }


def build_cremad(opts: CremaDOptions, cfg: Any) -> DataSplits:
    """Train / validation (carved from train.csv) / test splits of CREMA-D."""
    root = Path(opts.root)
    if not root.is_dir():
        raise ConfigError(f"data.options.root: folder {opts.root!r} does not exist")
    if cfg.modalities is not None and sorted(cfg.modalities) != ["audio", "visual"]:
        bad = [m for m in cfg.modalities if m not in ("audio", "visual")]
        if bad:
            raise ConfigError(f"data.modalities: CREMA-D has audio and visual; got {bad}")
    skipped: list[str] = []
    train_clips = _clips(opts, read_list(root / opts.train_csv), skipped)
    test_clips = _clips(opts, read_list(root / opts.test_csv), skipped)
    overlap = {c.name for c in train_clips} & {c.name for c in test_clips}
    if overlap:
        raise DataError(
            f"CREMA-D: {len(overlap)} clips are in both {opts.train_csv} and {opts.test_csv}, "
            f"e.g. {sorted(overlap)[:3]}"
        )
    labels = np.array([c.label for c in train_clips])
    keep, held = stratified_split(labels, cfg.val_fraction, cfg.split_seed + 1)
    train = CremaDDataset([train_clips[i] for i in keep], opts, train=True)
    val = CremaDDataset([train_clips[i] for i in held], opts, train=False)
    test = CremaDDataset(test_clips, opts, train=False)
    sample = val[0] if len(val) else test[0]
    shapes = {m: tuple(x.shape) for m, x in sample["inputs"].items()}
    if cfg.modalities is not None:
        shapes = {m: shapes[m] for m in cfg.modalities}
    info = {
        "dataset": "cremad",
        "root": str(root),
        "audio_recipe": opts.audio,
        "frames": opts.frames,
        "val": f"stratified {cfg.val_fraction:g} of {opts.train_csv} (seed {cfg.split_seed + 1})",
        "test": opts.test_csv,
        "sizes": {"train": len(train), "val": len(val), "test": len(test)},
        "class_counts_train": torch.bincount(train.labels, minlength=len(CLASSES)).tolist(),
        "skipped": skipped,
    }
    return DataSplits(train, val, test, len(CLASSES), shapes, list(CLASSES), info)


__all__ = ["CLASSES", "CremaDDataset", "CremaDOptions", "FbankRecipe", "StftRecipe", "build_cremad"]
