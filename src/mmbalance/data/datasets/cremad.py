"""CREMA-D in the layout the field's repositories use (OGM-GE, ``datasets.md``)::

    ROOT/train.csv, ROOT/test.csv        rows "name,label", label NEU HAP SAD FEA DIS ANG (or 0..5)
    ROOT/AudioWAV/<name>.wav             any sample rate (16 kHz in the release)
    ROOT/Image-01-FPS/<name>/*.jpg       1-fps frames, in natural file-name order
    (or ROOT/<audio_pt_dir>/<name>.pt    precomputed audio tensors, instead of the WAVs)

Every listed file is checked when the dataset is built: a missing clip is an error naming the
file and the layout expected (``skip_missing: true`` drops such rows instead and lists them in
the run folder). A validation split is carved from ``train.csv`` (stratified, seeded) and uses
the deterministic evaluation transforms, like the test split.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mmbalance.data.base import DataSplits
from mmbalance.data.datasets.clips import (
    Clip,
    OnCorrupt,
    clip_splits,
    list_frames,
    report,
    require_root,
    scan_layout,
)
from mmbalance.data.media.audiovisual import AudioVisualOptions, audio_visual_loaders
from mmbalance.errors import ConfigError

CLASSES = ["NEU", "HAP", "SAD", "FEA", "DIS", "ANG"]  # OGM-GE's class_dict order
MEDIA_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".pt", ".mp4", ".avi", ".flv", ".mkv")


@dataclass
class CremaDOptions(AudioVisualOptions):
    """``data.options`` of ``cremad`` (decoding fields: :class:`AudioVisualOptions`)."""

    root: str = ""
    train_csv: str = "train.csv"
    test_csv: str = "test.csv"
    audio_dir: str = "AudioWAV"
    visual_dir: str = "Image-01-FPS"
    audio: Literal["stft", "fbank", "pt"] = "stft"
    audio_pt_dir: str = "audio_pt"  # with audio: pt, <name>.pt tensors
    frames: int = 1  # frames per clip: 1 (OGM-GE, AGM), 2 (D&R), 3 (MLA, PMR)
    # The label set: the CREMA-D emotions by default; any other audio-visual dataset in this
    # layout (csv "name,label", a WAV and a frame folder per clip) names its own classes here.
    classes: list[str] = field(default_factory=lambda: list(CLASSES))
    audio_suffix: str = ".wav"  # the audio files' extension (read with soundfile: wav, flac, ogg)
    skip_missing: bool = False  # drop listed clips whose files are missing (listed in the run)
    on_corrupt: OnCorrupt = "error"  # "skip": drop samples whose files fail to decode (listed)

    def validate(self, where: str) -> None:
        if not self.root:
            raise ConfigError(f"{where}.root: required; the CREMA-D folder")
        self.root = str(Path(self.root).expanduser())
        self.validate_media(where)
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            raise ConfigError(f"{where}.classes: expected >= 2 distinct names; got {self.classes}")


def read_list(
    path: Path, problems: list[str] | None = None, classes: list[str] = CLASSES
) -> list[tuple[str, int, int]]:
    """``(name, label, line number)`` rows of a CREMA-D list: ``name,label`` csv rows (or
    ``name label`` separated by blanks; a media extension on the name is dropped); errors name
    file and line (or are collected into ``problems``, skipping the bad rows)."""
    if not path.is_file():
        report(problems, f"CREMA-D list {str(path)!r} not found; expected rows 'name,label'")
        return []
    rows = []
    upper = [c.upper() for c in classes]
    with path.open(encoding="utf-8-sig", newline="") as fh:
        for line_no, row in enumerate(csv.reader(fh), start=1):
            if not row or not "".join(row).strip():
                continue
            if len(row) == 1:  # "name label" lists, separated by spaces or tabs
                row = row[0].split()
            if len(row) < 2:
                report(
                    problems, f"{str(path)!r} line {line_no}: expected 'name,label'; got {row!r}"
                )
                continue
            name, label = row[0].strip(), row[1].strip()
            # "clip.wav" / "clip.flv" names the clip "clip": files are found by stem
            name = Path(name).stem if Path(name).suffix.lower() in MEDIA_SUFFIXES else name
            if label.upper() in upper:
                rows.append((name, upper.index(label.upper()), line_no))
            elif label.isdigit() and int(label) < len(classes):
                rows.append((name, int(label), line_no))
            elif line_no == 1 and name.lower() in ("name", "filename", "file"):
                continue  # a header row
            else:
                report(
                    problems,
                    f"{str(path)!r} line {line_no}: unknown label {label!r} for {name!r}; "
                    f"expected one of {', '.join(classes)} (or 0..{len(classes) - 1})",
                )
    if not rows:
        report(problems, f"CREMA-D list {str(path)!r} has no rows")
    return rows


def _clips(
    opts: CremaDOptions, rows: list[tuple[str, int, int]], problems: list[str] | None
) -> list[Clip]:
    root = Path(opts.root)
    clips = []
    for name, label, _ in rows:
        if opts.audio == "pt":
            audio = root / opts.audio_pt_dir / f"{name}.pt"
        else:
            audio = root / opts.audio_dir / f"{name}{opts.audio_suffix}"
        frame_dir = root / opts.visual_dir / name
        frames = list_frames(frame_dir)
        problem = None
        if not audio.is_file():
            problem = f"audio file {str(audio)!r} is missing"
        elif not frames:
            problem = f"no frames (*.jpg) in {str(frame_dir)!r}"
        if problem:
            report(problems, f"CREMA-D clip {name!r}: {problem}")
            continue
        clips.append(Clip(name, label, {"audio": audio, "visual": frames}))
    return clips


def scan(opts: CremaDOptions, problems: list[str] | None) -> dict[str, list[Clip]]:
    """The clips of both lists whose files exist (problems raised, or collected)."""
    root = Path(opts.root)
    return {
        split: _clips(opts, read_list(root / listing, problems, opts.classes), problems)
        for split, listing in (("train", opts.train_csv), ("test", opts.test_csv))
    }


def _loaders(opts: CremaDOptions) -> dict[str, Any]:
    recipe = None if opts.audio == "pt" else opts.audio
    return audio_visual_loaders(recipe, opts)


def build_cremad(opts: CremaDOptions, cfg: Any) -> DataSplits:
    """Train / validation (carved from train.csv) / test splits of CREMA-D."""
    root = require_root(opts)
    # Bad list rows always stop the build; missing files are dropped and listed on request.
    for listing in (opts.train_csv, opts.test_csv):
        read_list(root / listing, None, opts.classes)
    expected = (
        f"{opts.audio_dir}/<name>{opts.audio_suffix} (or {opts.audio_pt_dir}/<name>.pt with "
        f"audio: pt) and {opts.visual_dir}/<name>/*.jpg"
    )
    clips, skipped = scan_layout(scan, opts, expected)
    info = {
        "root": opts.root,
        "audio_recipe": opts.audio,
        "frames": opts.frames,
        "test": opts.test_csv,
        "skipped": skipped,
    }
    return clip_splits(
        "cremad", clips, _loaders(opts), cfg, list(opts.classes), opts.on_corrupt, info
    )


__all__ = ["CLASSES", "CremaDOptions", "build_cremad", "read_list"]
