"""``mmbalance validate``: check a dataset before training and report every problem at once.

Training stops at the first bad file with an error naming it; this walks the whole dataset
instead and lists everything: missing, unreadable or empty files, unknown labels, clips in both
splits, and the class counts. For the file-based layouts (CREMA-D, Kinetics-Sounds, UCF-101)
every audio / array file and frame is opened; in-memory datasets (CMU-MOSI, arrays, mfeat,
synthetic) are built with their usual checks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmbalance.data.clips import Clip, check_frames
from mmbalance.errors import MMBalanceError
from mmbalance.structured import from_dict


@dataclass
class ValidationReport:
    """What :func:`validate_data` found."""

    dataset: str
    problems: list[str] = field(default_factory=list)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> class -> n

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        lines = [f"dataset: {self.dataset}"]
        for split, per_class in self.counts.items():
            total = sum(per_class.values())
            detail = ", ".join(f"{k} {v}" for k, v in per_class.items())
            lines.append(f"{split}: {total} samples ({detail})")
        if self.problems:
            lines.append(f"{len(self.problems)} problem(s):")
            lines += [f"  - {p}" for p in self.problems[:200]]
            if len(self.problems) > 200:
                lines.append(f"  ... and {len(self.problems) - 200} more")
        else:
            lines.append("no problems found")
        return "\n".join(lines)


def check_file(path: Path) -> str | None:
    """Open one audio / array file the way training will; the problem, or ``None``."""
    if not path.is_file():
        return f"missing file {str(path)!r}"
    if path.stat().st_size == 0:
        return f"empty file {str(path)!r}"
    try:
        if path.suffix.lower() == ".wav":
            import soundfile

            if soundfile.info(str(path)).frames == 0:
                return f"audio file {str(path)!r} holds no samples"
        else:
            from mmbalance.data.media import load_array

            load_array(path)
    except Exception as err:
        return f"unreadable file {str(path)!r}: {err}"
    return None


def check_clip(clip: Clip) -> list[str]:
    """Every file of a clip opened: missing, empty, undecodable."""
    problems = []
    for key, files in clip.files.items():
        if isinstance(files, tuple):
            folder = files[0].parent if files else Path(f"<{key} frames of {clip.name}>")
            problems += check_frames(files, folder)
        else:
            problem = check_file(files)
            if problem:
                problems.append(problem)
    return problems


@dataclass(frozen=True)
class FileLayout:
    """How ``validate`` walks a file-based dataset."""

    options_cls: type
    scan: Callable[[Any, list[str] | None], dict[str, list[Clip]]]
    class_names: Callable[[Any], list[str]]


def _layouts() -> dict[str, FileLayout]:
    from mmbalance.data import cremad, kinetics_sounds, ucf101

    return {
        "cremad": FileLayout(cremad.CremaDOptions, cremad.scan, lambda o: list(o.classes)),
        "kinetics_sounds": FileLayout(
            kinetics_sounds.KineticsSoundsOptions, kinetics_sounds.scan, kinetics_sounds.class_names
        ),
        "ucf101": FileLayout(ucf101.UCF101Options, ucf101.scan, ucf101.class_names),
    }


def validate_files(name: str, layout: FileLayout, options: dict[str, Any]) -> ValidationReport:
    """Walk every listed clip of a file-based dataset and open every file."""
    report = ValidationReport(name)
    try:
        opts = from_dict(layout.options_cls, options, "data.options")
        names = layout.class_names(opts)
        if not Path(opts.root).is_dir():
            report.problems.append(f"root folder {opts.root!r} does not exist")
            return report
    except MMBalanceError as err:
        report.problems.append(str(err))
        return report
    clips = layout.scan(opts, report.problems)
    seen: dict[str, str] = {}
    for split, split_clips in clips.items():
        counts = dict.fromkeys(names, 0)
        for clip in split_clips:
            if not 0 <= clip.label < len(names):
                report.problems.append(
                    f"{split} clip {clip.name!r}: label {clip.label} outside 0..{len(names) - 1}"
                )
                continue
            counts[names[clip.label]] += 1
            if clip.name in seen and seen[clip.name] != split:
                report.problems.append(
                    f"clip {clip.name!r} is in both {seen[clip.name]} and {split}"
                )
            seen[clip.name] = split
            report.problems += [f"{split} clip {clip.name!r}: {p}" for p in check_clip(clip)]
        report.counts[split] = counts
        empty = [k for k, v in counts.items() if v == 0]
        if empty and split_clips:
            shown = ", ".join(empty[:10]) + (" ..." if len(empty) > 10 else "")
            report.problems.append(f"{split}: no samples of {len(empty)} class(es): {shown}")
    return report


def validate_data(cfg: Any) -> ValidationReport:
    """Validate the dataset a :class:`mmbalance.config.DataConfig` points at."""
    layouts = _layouts()
    if getattr(cfg, "generate", None) is not None:  # a generated benchmark: write it first
        from mmbalance.data.generate import ensure_generated

        ensure_generated(cfg.generate, cfg.options["root"])
    if cfg.name in layouts:
        return validate_files(cfg.name, layouts[cfg.name], cfg.options)
    from mmbalance.data.registry import build_data

    report = ValidationReport(cfg.name)
    try:
        data = build_data(cfg)
    except MMBalanceError as err:
        report.problems.append(str(err))
        return report
    names = data.class_names or [str(k) for k in range(data.num_classes)]
    for split in ("train", "val", "test"):
        labels = getattr(data, split).labels
        counts = [int((labels == k).sum()) for k in range(data.num_classes)]
        report.counts[split] = dict(zip(names, counts, strict=True))
    return report
