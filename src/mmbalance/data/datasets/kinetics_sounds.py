"""Kinetics-Sounds in the layout of the field's repositories (OGM-GE, PMR, MLA, BalanceBenchmark)::

    ROOT/<train_list>, ROOT/<test_list>   lines "name ... label": space-separated, name first,
                                          integer label (0-based) last — or a class name;
                                          or "name,class" csv rows with class_names_file
                                          (OGM-GE's my_train.txt + stat.txt)
    ROOT/<audio_dir>/<name>.npy           the stored spectrogram, [F, T] (or .pkl / .pt);
                                          with audio: stft | fbank, <name>.wav instead
    ROOT/<visual_dir>/<name>/frame_0000{t}.jpg   1-fps frames, read in natural order

``audio_dir`` / ``visual_dir`` may contain ``{split}`` (``train`` / ``test`` / ``val``) for the
common per-split folders, e.g. ``visual_dir: "{split}-frames-1fps/{split}"``.

Classes. The field's Kinetics-Sounds has 31 classes (OGM-GE, PMR, MLA, AIM); the original
"Look, Listen and Learn" list has 34, of which 32 keep their names in Kinetics-400. The 32
Kinetics-400 names ship in ``classes/kinetics_sounds_32.txt``. Which one the 31-class variant
drops is not written in the repositories we could read, so for 31 classes the names come from
``class_names_file`` (one name per line, in label order) and are ``0..30`` otherwise; the integer
labels of your list files are what training uses either way. A label outside ``0..num_classes-1``
is an error that says so, instead of a silent 31/32/34 mix-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
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
    split_lists,
)
from mmbalance.data.media.audiovisual import (
    ARRAY_SUFFIXES,
    AudioVisualOptions,
    audio_visual_loaders,
)
from mmbalance.errors import ConfigError
from mmbalance.structured import check_positive


def shipped_classes() -> list[str]:
    """The 32 Kinetics-400 class names of Kinetics-Sounds, in alphabetical order."""
    text = resources.files("mmbalance.data").joinpath("classes/kinetics_sounds_32.txt")
    return [line.strip() for line in text.read_text().splitlines() if line.strip()]


@dataclass
class KineticsSoundsOptions(AudioVisualOptions):
    """``data.options`` of ``kinetics_sounds`` (decoding fields: :class:`AudioVisualOptions`)."""

    root: str = ""
    train_list: str = "train.txt"
    test_list: str = "test.txt"
    val_list: str = ""  # "": a stratified share of train becomes the validation split
    audio_dir: str = "audio"
    visual_dir: str = "visual"
    audio: Literal["stored", "stft", "fbank"] = "stored"  # stored: <name>.npy/.pkl/.pt arrays
    frames: int = 3  # frames per clip (the field uses 3 on KS)
    num_classes: int = 31
    class_names_file: str = ""  # one name per line, in label order (default: see module doc)
    skip_missing: bool = False  # drop listed clips whose files are missing (listed in the run)
    on_corrupt: OnCorrupt = "error"  # "skip": drop samples whose files fail to decode (listed)

    def validate(self, where: str) -> None:
        if not self.root:
            raise ConfigError(f"{where}.root: required; the Kinetics-Sounds folder")
        self.root = str(Path(self.root).expanduser())
        self.validate_media(where)
        check_positive(self.num_classes, f"{where}.num_classes")


def class_names(opts: KineticsSoundsOptions) -> list[str]:
    """Names for labels ``0..num_classes-1`` (see the module docstring)."""
    if opts.class_names_file:
        path = Path(opts.class_names_file)
        if not path.is_absolute() and (Path(opts.root) / path).is_file():
            path = Path(opts.root) / path  # relative to the dataset folder (OGM-GE's stat.txt)
        if not path.is_file():
            raise ConfigError(f"data.options.class_names_file: {str(path)!r} not found")
        # one name per line; a csv row's first field (OGM-GE's stat.txt) is its name
        lines = path.read_text(encoding="utf-8-sig").splitlines()
        names = [line.split(",")[0].strip() for line in lines if line.strip()]
        if len(names) != opts.num_classes:
            raise ConfigError(
                f"data.options.class_names_file: {str(path)!r} has {len(names)} names; "
                f"num_classes is {opts.num_classes}"
            )
        return names
    shipped = shipped_classes()
    if opts.num_classes == len(shipped):
        return shipped
    return [str(k) for k in range(opts.num_classes)]


def _label(token: str, names: list[str]) -> int | None:
    if token.lstrip("-").isdigit():
        return int(token)
    wanted = token.replace("_", " ").lower()
    lowered = [n.replace("_", " ").lower() for n in names]
    return lowered.index(wanted) if wanted in lowered else None


def read_list(
    path: Path, names: list[str], problems: list[str] | None = None
) -> list[tuple[str, int]]:
    """``(name, label)`` rows of a list file: ``name ... label`` separated by blanks, or by
    commas (OGM-GE's ``name,class``); bad rows raise (or are collected)."""
    if not path.is_file():
        report(problems, f"Kinetics-Sounds list {str(path)!r} not found; expected 'name ... label'")
        return []
    rows = []
    k = len(names)
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        parts = [p.strip() for p in line.split(",")] if "," in line else line.split()
        if not parts or not parts[0]:
            continue
        if len(parts) < 2:
            report(
                problems, f"{str(path)!r} line {line_no}: expected 'name ... label'; got {line!r}"
            )
            continue
        label = _label(parts[-1], names)
        if label is None or not 0 <= label < k:
            report(
                problems,
                f"{str(path)!r} line {line_no}: label {parts[-1]!r} for {parts[0]!r} is not one of "
                f"the {k} classes (0..{k - 1}); Kinetics-Sounds comes with 31, 32 or 34 classes "
                "— set data.options.num_classes to your lists' count",
            )
            continue
        rows.append((parts[0], label))
    if not rows:
        report(problems, f"Kinetics-Sounds list {str(path)!r} has no rows")
    return rows


def _audio_file(opts: KineticsSoundsOptions, split: str, name: str) -> Path:
    folder = Path(opts.root) / opts.audio_dir.format(split=split)
    if opts.audio != "stored":
        return folder / f"{name}.wav"
    for suffix in ARRAY_SUFFIXES:
        if (folder / f"{name}{suffix}").is_file():
            return folder / f"{name}{suffix}"
    return folder / f"{name}.npy"


def scan(opts: KineticsSoundsOptions, problems: list[str] | None) -> dict[str, list[Clip]]:
    """Clips of every list whose files exist (problems raised, or collected)."""
    names = class_names(opts)
    root = Path(opts.root)
    out: dict[str, list[Clip]] = {}
    for split, listing in split_lists(opts):
        clips = []
        for name, label in read_list(root / listing, names, problems):
            audio = _audio_file(opts, split, name)
            frame_dir = root / opts.visual_dir.format(split=split) / name
            frames = list_frames(frame_dir)
            if not audio.is_file():
                report(problems, f"Kinetics-Sounds clip {name!r}: audio {str(audio)!r} is missing")
            elif not frames:
                report(problems, f"Kinetics-Sounds clip {name!r}: no frames in {str(frame_dir)!r}")
            else:
                clips.append(Clip(name, label, {"audio": audio, "visual": frames}))
        out[split] = clips
    return out


def _loaders(opts: KineticsSoundsOptions) -> dict[str, Any]:
    recipe = None if opts.audio == "stored" else opts.audio
    return audio_visual_loaders(recipe, opts)


def build_kinetics_sounds(opts: KineticsSoundsOptions, cfg: Any) -> DataSplits:
    """Train / validation / test splits of Kinetics-Sounds."""
    root = require_root(opts)
    names = class_names(opts)
    for _, listing in split_lists(opts):
        read_list(root / listing, names)  # bad list rows always stop the build
    expected = f"{opts.audio_dir}/<name>.npy and {opts.visual_dir}/<name>/*.jpg"
    clips, skipped = scan_layout(scan, opts, expected)
    info = {"root": opts.root, "audio": opts.audio, "frames": opts.frames, "skipped": skipped}
    return clip_splits("kinetics_sounds", clips, _loaders(opts), cfg, names, opts.on_corrupt, info)
