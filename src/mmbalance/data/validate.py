"""``mmbalance validate``: check a dataset before training and report every problem at once.

Training stops at the first bad file with an error naming it; this walks the whole dataset
instead and lists everything: missing, unreadable or empty files, unknown labels, clips in both
splits, and the class counts. For the file-based CREMA-D layout every audio file and frame is
opened; in-memory datasets (arrays, mfeat, synthetic) are built with their usual checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmbalance.data.cremad import CLASSES, FRAME_SUFFIXES, CremaDOptions, read_list
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


def _check_audio(path: Path, kind: str) -> str | None:
    if not path.is_file():
        return f"missing audio file {str(path)!r}"
    if path.stat().st_size == 0:
        return f"empty audio file {str(path)!r}"
    try:
        if kind == "pt":
            import torch

            torch.load(path, map_location="cpu", weights_only=True)
        else:
            import soundfile

            if soundfile.info(str(path)).frames == 0:
                return f"audio file {str(path)!r} holds no samples"
    except Exception as err:
        return f"unreadable audio file {str(path)!r}: {err}"
    return None


def _check_frames(folder: Path) -> list[str]:
    if not folder.is_dir():
        return [f"missing frame folder {str(folder)!r}"]
    frames = sorted(p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)
    if not frames:
        return [f"no frames (*.jpg) in {str(folder)!r}"]
    from PIL import Image

    problems = []
    for f in frames:
        try:
            with Image.open(f) as img:
                img.verify()
        except Exception as err:
            problems.append(f"unreadable frame {str(f)!r}: {err}")
    return problems


def validate_cremad(options: dict[str, Any]) -> ValidationReport:
    opts = from_dict(CremaDOptions, options, "data.options")
    root = Path(opts.root)
    report = ValidationReport("cremad")
    if not root.is_dir():
        report.problems.append(f"root folder {str(root)!r} does not exist")
        return report
    names: dict[str, set[str]] = {}
    for split, listing in (("train", opts.train_csv), ("test", opts.test_csv)):
        try:
            rows = read_list(root / listing)
        except MMBalanceError as err:
            report.problems.append(str(err))
            continue
        names[split] = {name for name, _, _ in rows}
        counts = dict.fromkeys(CLASSES, 0)
        for name, label, _ in rows:
            counts[CLASSES[label]] += 1
            audio = (
                root / opts.audio_pt_dir / f"{name}.pt"
                if opts.audio == "pt"
                else root / opts.audio_dir / f"{name}.wav"
            )
            problem = _check_audio(audio, opts.audio)
            if problem:
                report.problems.append(f"{split} clip {name!r}: {problem}")
            report.problems += [
                f"{split} clip {name!r}: {p}" for p in _check_frames(root / opts.visual_dir / name)
            ]
        report.counts[split] = counts
        empty = [k for k, v in counts.items() if v == 0]
        if empty:
            report.problems.append(f"{split}: no samples of class(es) {', '.join(empty)}")
    both = names.get("train", set()) & names.get("test", set())
    if both:
        report.problems.append(f"{len(both)} clip(s) in both splits, e.g. {sorted(both)[:3]}")
    return report


def validate_data(cfg: Any) -> ValidationReport:
    """Validate the dataset a :class:`mmbalance.config.DataConfig` points at."""
    if cfg.name == "cremad":
        return validate_cremad(cfg.options)
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
