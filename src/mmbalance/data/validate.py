"""``mmbalance validate``: check a dataset before training and report every problem at once.

Training stops at the first bad file with an error naming it; this walks the whole dataset
instead and lists everything: missing, unreadable or empty files, unknown labels, clips in both
splits, and the class counts. For the file-based layouts (CREMA-D, Kinetics-Sounds, UCF-101)
every audio / array file and frame is opened; in-memory datasets (CMU-MOSI, arrays, mfeat,
synthetic) are built with their usual checks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmbalance.data.datasets.clips import Clip, check_frames
from mmbalance.data.paths import folder_problem
from mmbalance.errors import MMBalanceError
from mmbalance.structured import from_dict


@dataclass
class ValidationReport:
    """What :func:`validate_data` found."""

    dataset: str
    problems: list[str] = field(default_factory=list)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> class -> n
    notes: list[str] = field(default_factory=list)  # worth knowing, not a problem

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        lines = [f"dataset: {self.dataset}"]
        for split, per_class in self.counts.items():
            total = sum(per_class.values())
            detail = ", ".join(f"{k} {v}" for k, v in per_class.items())
            lines.append(f"{split}: {total} samples ({detail})")
        lines += [f"note: {n}" for n in self.notes]
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

            from mmbalance.data.media.audio import wav_truncation

            if soundfile.info(str(path)).frames == 0:
                return f"audio file {str(path)!r} holds no samples"
            return wav_truncation(path)
        else:
            from mmbalance.data.media.audiovisual import load_array

            load_array(path)
    except Exception as err:
        return f"unreadable file {str(path)!r}: {err}"
    return None


# A clip whose audio is under this share of the dataset's median length is flagged: a file
# cut short (a truncated copy) decodes without complaint and trains on a fragment.
SHORT_AUDIO_SHARE = 0.25


def audio_length(path: Path) -> float | None:
    """A comparable length of one audio file: seconds for audio files, elements for arrays
    (waveforms or spectrograms of a fixed number of bins); ``None`` when it cannot be read."""
    try:
        if path.suffix.lower() in (".wav", ".flac", ".ogg"):
            import soundfile

            info = soundfile.info(str(path))
            return float(info.frames) / float(info.samplerate)
        from mmbalance.data.media.audiovisual import load_array

        return float(load_array(path).numel())
    except Exception:
        return None  # check_file reports what is wrong with it


def short_audio(lengths: list[tuple[str, Path, float]]) -> list[str]:
    """The files far shorter than the rest: under :data:`SHORT_AUDIO_SHARE` of the median
    length of the files of their kind (suffix)."""
    problems = []
    kinds: dict[str, list[tuple[str, Path, float]]] = {}
    for entry in lengths:
        kinds.setdefault(entry[1].suffix.lower(), []).append(entry)
    for suffix, entries in kinds.items():
        values = sorted(v for _, _, v in entries)
        median = values[len(values) // 2]
        unit = "s" if suffix in (".wav", ".flac", ".ogg") else "values"
        for name, path, v in entries:
            if v < SHORT_AUDIO_SHARE * median:
                problems.append(
                    f"clip {name!r}: audio {str(path)!r} is far shorter than the rest of the "
                    f"dataset: {v:.4g} {unit} against a median of {median:.4g} {unit} (flagged "
                    f"under {SHORT_AUDIO_SHARE:.0%}); a truncated file?"
                )
    return problems


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
    from mmbalance.data.datasets import cremad, kinetics_sounds, ucf101

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
        opts: Any = from_dict(layout.options_cls, options, "data.options")
        names = layout.class_names(opts)
        problem = folder_problem(opts.root)
        if problem:
            report.problems.append(f"data.options.root: {problem}")
            return report
    except MMBalanceError as err:
        report.problems.append(str(err))
        return report
    clips = layout.scan(opts, report.problems)
    seen: dict[str, str] = {}
    lengths: list[tuple[str, Path, float]] = []
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
            problems = check_clip(clip)
            report.problems += [f"{split} clip {clip.name!r}: {p}" for p in problems]
            audio = clip.files.get("audio")
            if isinstance(audio, Path) and not problems:
                length = audio_length(audio)
                if length is not None:
                    lengths.append((clip.name, audio, length))
        report.counts[split] = counts
        empty = [k for k, v in counts.items() if v == 0]
        if empty and split_clips:
            shown = ", ".join(empty[:10]) + (" ..." if len(empty) > 10 else "")
            report.problems.append(f"{split}: no samples of {len(empty)} class(es): {shown}")
    report.problems += short_audio(lengths)
    return report


def _array_split(
    folder: Path, opts: Any, split: str, report: ValidationReport, task: str = "classification"
) -> Any:
    """Problems of one arrays split folder, all of them; its labels when they could be read."""
    import numpy as np

    from mmbalance.data.media.npyfile import read_npy

    label_file = folder / f"{opts.labels}.npy"
    if not label_file.is_file():
        if (folder / opts.file).is_file():
            return None  # an .npz archive: checked whole by build_data below
        report.problems.append(f"{split}: no {label_file.name} in {str(folder)!r}")
        return None
    arrays: dict[str, Any] = {}
    for path in sorted(folder.glob("*.npy")):
        try:
            arrays[path.stem] = read_npy(path)
        except MMBalanceError as err:
            report.problems.append(f"{split}: {err}")
    labels = arrays.pop(opts.labels, None)
    if labels is None:
        return None
    n = labels.shape[0] if labels.ndim else 0
    for m, x in arrays.items():
        where = f"{split}: {str(folder / (m + '.npy'))!r}"
        if x.ndim == 0 or x.shape[0] != n:
            got = x.shape[0] if x.ndim else "a scalar"
            report.problems.append(f"{where} has {got} samples; {label_file.name} has {n}")
        if x.dtype.kind not in "biuf":
            report.problems.append(f"{where}: dtype {x.dtype} is not numeric")
        elif x.dtype.kind == "f" and not np.isfinite(x).all():
            bad = int((~np.isfinite(x.reshape(x.shape[0], -1) if x.ndim else x)).any(-1).sum())
            report.problems.append(f"{where}: {bad} sample(s) hold NaN or inf values")
    if task == "regression":
        if labels.dtype.kind not in "biuf":
            report.problems.append(f"{split}: {str(label_file)!r}: targets must be numbers")
        elif labels.dtype.kind == "f" and not np.isfinite(labels).all():
            at = tuple(np.argwhere(~np.isfinite(labels))[0].tolist())
            report.problems.append(
                f"{split}: {str(label_file)!r}: non-finite target {labels[at]!r} at index {at}"
            )
        return None  # no classes to count: build_data checks the rest
    if labels.dtype.kind not in "iu" and not (
        labels.dtype.kind == "f" and np.isfinite(labels).all() and (labels == labels.round()).all()
    ):
        report.problems.append(f"{split}: {str(label_file)!r}: labels must be integers")
        return None
    labels = labels.astype(np.int64).reshape(-1)
    k = opts.num_classes
    bad = labels[(labels < 0) | (labels >= k)] if k else labels[labels < 0]
    if bad.size:
        expected = f"0..{k - 1}" if k else ">= 0"
        report.problems.append(
            f"{split}: {str(label_file)!r}: {bad.size} label(s) outside {expected}: "
            f"{sorted(set(bad.tolist()))[:10]}"
        )
    return labels


def validate_arrays(options: dict[str, Any], task: str = "classification") -> ValidationReport:
    """Walk an ``arrays`` dataset and list every problem: unreadable or non-array files, sample
    counts that disagree, non-finite values, labels outside the classes, classes without a
    sample (in a split, or anywhere: a stray label that would add classes). When it finds
    none, :func:`validate_data` builds the data as training will and counts the classes."""
    import numpy as np

    from mmbalance.data.datasets.arrays import ArraysOptions

    report = ValidationReport("arrays")
    try:
        opts = from_dict(ArraysOptions, options, "data.options")
    except MMBalanceError as err:
        report.problems.append(str(err))
        return report
    problem = folder_problem(opts.root)
    if problem:
        report.problems.append(f"data.options.root: {problem}")
        return report
    root = Path(opts.root).expanduser()
    folders = {s: root / s for s in ("train", "val", "test") if (root / s).is_dir()}
    folders = folders or {"train": root}
    labels = {s: _array_split(f, opts, s, report, task) for s, f in folders.items()}
    known = {s: y for s, y in labels.items() if y is not None and y.size}
    if not known:
        return report
    k = opts.num_classes or 1 + max(int(y.max()) for y in known.values())
    everywhere = np.concatenate(list(known.values()))
    never = [] if opts.num_classes else [c for c in range(k) if not (everywhere == c).any()]
    if never:
        # the label that makes the gap: the largest one, where it first occurs
        split = next(s for s, y in known.items() if int(y.max()) == k - 1)
        at = int(np.flatnonzero(known[split] == k - 1)[0])
        path = folders[split] / f"{opts.labels}.npy"
        report.problems.append(
            f"{str(path)!r}: label {k - 1} at sample {at} makes {k} classes (largest label + 1), "
            f"yet classes {never[:10]} have no sample in any split: a stray label? (set "
            "data.options.num_classes if that is intended)"
        )
    for split, y in known.items():
        empty = [c for c in range(k) if c not in never and not (y == c).any()]
        if empty:
            shown = ", ".join(map(str, empty[:10])) + (" ..." if len(empty) > 10 else "")
            report.problems.append(f"{split}: no samples of {len(empty)} class(es): {shown}")
    return report


def validate_data(cfg: Any) -> ValidationReport:
    """Validate the dataset a :class:`mmbalance.config.DataConfig` points at."""
    layouts = _layouts()
    if getattr(cfg, "generate", None) is not None:  # a generated benchmark: write it first
        from mmbalance.data.prepare.generate import ensure_generated

        ensure_generated(cfg.generate, cfg.options["root"])
    if cfg.name in layouts:
        return validate_files(cfg.name, layouts[cfg.name], cfg.options)
    if cfg.name == "arrays":
        report = validate_arrays(cfg.options, getattr(cfg, "task", "classification"))
        if not report.ok:
            return report
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
        if data.task == "regression":  # a target summary where classes are counted
            report.notes.append(
                f"{split}: {labels.shape[0]} samples, targets mean {float(labels.mean()):.4g}, "
                f"std {float(labels.std()):.4g}, range [{float(labels.min()):.4g}, "
                f"{float(labels.max()):.4g}]"
            )
            continue
        counts = [int((labels == k).sum()) for k in range(data.num_classes)]
        report.counts[split] = dict(zip(names, counts, strict=True))
    if data.info.get("notice"):
        report.notes.append(str(data.info["notice"]))
    for m, c in (data.info.get("constant_features") or {}).items():
        if c["features"]:
            report.notes.append(
                f"modality {m!r}: {c['features']} of {math.prod(data.shapes[m])} features take "
                "one value on every training sample; standardize centres them without scaling; "
                f"{c['val_samples']} validation and {c['test_samples']} test sample(s) hold "
                "another value there, never seen in training"
            )
    return report
