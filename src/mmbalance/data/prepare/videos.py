"""``mmbalance prepare DATASET --src RAW --out DIR``: raw videos -> the layouts the loaders read.

=================  ==========================================  ================================
dataset            raw input (``--src``)                       written to ``--out``
=================  ==========================================  ================================
cremad             ``VideoFlash/*.flv`` (+ ``AudioWAV/`` of     ``Image-01-FPS/<name>/*.jpg``,
                   the release, used as is when present)       ``AudioWAV/<name>.wav``,
                                                               ``train.csv`` / ``test.csv``
kinetics_sounds    ``[<split>/]<class>/<video>``               ``visual/<name>/frame_0000t.jpg``,
                                                               ``audio/<name>.npy`` (recipe),
                                                               ``train.txt`` / ``test.txt``,
                                                               ``classes.txt``
ucf101             ``<Class>/v_*.avi`` (+ ``ucfTrainTestlist``  ``rgb/<name>/*.jpg``,
                   lists, used when present)                   ``classInd.txt``, split lists
=================  ==========================================  ================================

Frames are 1-fps JPEGs, audio mono 16 kHz WAV. Existing outputs are kept, so an interrupted run
resumes where it stopped; a video that fails to decode is listed in ``prepare_failures.tsv`` and
left out of the lists, never written half. Where the raw data ships no split, a seeded
stratified split is written (UCF-101: the official split-1 rule, groups 1-7 are test).
``--spectrogram stft|fbank`` also fills a spectrogram cache that training reads through
``data.options.cache_dir``. UCF-101's TV-L1 optical flow is not computed here: it needs a
dedicated tool (e.g. ``denseflow``) writing ``flow_u/<name>/`` and ``flow_v/<name>/``.
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from mmbalance.data.datasets.cremad import CLASSES as CREMAD_CLASSES
from mmbalance.data.media.audiovisual import SpectrogramCache
from mmbalance.data.media.video import extract, pick_backend
from mmbalance.data.paths import require_folder
from mmbalance.data.splits import stratified_split
from mmbalance.errors import ConfigError, DataError

VIDEO_SUFFIXES = (".mp4", ".avi", ".flv", ".mkv", ".webm", ".mov", ".m4v")
DATASETS = ("cremad", "kinetics_sounds", "ucf101")


@dataclass
class Job:
    """One video to extract."""

    video: Path
    name: str
    label: int
    split: str | None  # given by the raw layout, else decided later
    frames_dir: Path
    wav: Path | None
    copy_wav: Path | None = None  # an existing WAV of the release, used instead of the video's


@dataclass
class PrepareResult:
    """What ``prepare`` wrote."""

    out: Path
    clips: dict[str, int] = field(default_factory=dict)  # split -> clips written
    failed: list[tuple[str, str]] = field(default_factory=list)  # (video, reason)
    notes: list[str] = field(default_factory=list)


def _videos(folder: Path) -> list[Path]:
    found = [p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file()]
    return sorted(found)


def _cremad_jobs(src: Path, out: Path) -> tuple[list[Job], list[str]]:
    folder = src / "VideoFlash" if (src / "VideoFlash").is_dir() else src
    jobs = []
    for video in _videos(folder):
        parts = video.stem.split("_")
        if len(parts) < 3 or parts[2] not in CREMAD_CLASSES:
            raise DataError(
                f"{str(video)!r}: CREMA-D names look like 1001_DFA_ANG_XX (emotion third); "
                f"expected one of {', '.join(CREMAD_CLASSES)}"
            )
        release_wav = src / "AudioWAV" / f"{video.stem}.wav"
        jobs.append(
            Job(
                video,
                video.stem,
                CREMAD_CLASSES.index(parts[2]),
                None,
                out / "Image-01-FPS" / video.stem,
                out / "AudioWAV" / f"{video.stem}.wav",
                release_wav if release_wav.is_file() else None,
            )
        )
    return jobs, list(CREMAD_CLASSES)


def _class_folders(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and _videos(p))


def _ks_jobs(src: Path, out: Path) -> tuple[list[Job], list[str]]:
    split_dirs = [s for s in ("train", "test") if (src / s).is_dir()]
    roots = [(s, src / s) for s in split_dirs] if split_dirs else [(None, src)]
    classes = sorted({c for _, r in roots for c in _class_folders(r)})
    jobs = []
    for split, folder in roots:
        for k, cls in enumerate(classes):
            if not (folder / cls).is_dir():
                continue
            for video in _videos(folder / cls):
                name = video.stem
                wav = out / "audio_wav" / f"{name}.wav"
                jobs.append(Job(video, name, k, split, out / "visual" / name, wav))
    return jobs, classes


def _ucf_jobs(src: Path, out: Path) -> tuple[list[Job], list[str]]:
    classes = _class_folders(src)
    jobs = []
    for k, cls in enumerate(classes):
        for video in _videos(src / cls):
            jobs.append(Job(video, video.stem, k, None, out / "rgb" / video.stem, None))
    return jobs, classes


def _run_job(job: Job, backend: str, fps: float) -> tuple[str, str | None]:
    try:
        if job.copy_wav is not None and job.wav is not None:
            job.wav.parent.mkdir(parents=True, exist_ok=True)
            if not job.wav.is_file():
                shutil.copyfile(job.copy_wav, job.wav)
            extract(job.video, job.frames_dir, None, backend, fps)
        else:
            if job.wav is not None:
                job.wav.parent.mkdir(parents=True, exist_ok=True)
            extract(job.video, job.frames_dir, job.wav, backend, fps)
        return job.name, None
    except DataError as err:
        return job.name, str(err)


def _split(jobs: list[Job], test_fraction: float, seed: int) -> dict[str, list[Job]]:
    given = {j.split for j in jobs}
    if given <= {"train", "test"} and None not in given:
        return {s: [j for j in jobs if j.split == s] for s in ("train", "test")}
    labels = np.array([j.label for j in jobs])
    keep, held = stratified_split(labels, test_fraction, seed)
    return {"train": [jobs[i] for i in keep], "test": [jobs[i] for i in held]}


def _listed_split(jobs: list[Job], src: Path) -> dict[str, list[Job]]:
    from mmbalance.data.datasets.cremad import read_list

    out = {}
    for split in ("train", "test"):
        names = {name for name, _, _ in read_list(src / f"{split}.csv")}
        out[split] = [j for j in jobs if j.name in names]
    return out


def _ucf_split(jobs: list[Job]) -> dict[str, list[Job]]:
    # Official split 1: videos of groups 1-7 are the test set.
    def group(name: str) -> int:
        token = next((t for t in name.split("_") if t.startswith("g") and t[1:].isdigit()), "")
        return int(token[1:]) if token else 99

    return {
        "train": [j for j in jobs if group(j.name) > 7],
        "test": [j for j in jobs if group(j.name) <= 7],
    }


def _write_lists(
    dataset: str, out: Path, splits: dict[str, list[Job]], classes: list[str], src: Path
) -> list[str]:
    notes = []
    if dataset == "cremad":
        for split, jobs in splits.items():
            with (out / f"{split}.csv").open("w", newline="") as fh:
                csv.writer(fh).writerows((j.name, classes[j.label]) for j in jobs)
    elif dataset == "kinetics_sounds":
        for split, jobs in splits.items():
            (out / f"{split}.txt").write_text("".join(f"{j.name} {j.label}\n" for j in jobs))
        (out / "classes.txt").write_text("".join(f"{c}\n" for c in classes))
        notes.append(f"{len(classes)} classes, names in classes.txt (use as class_names_file)")
    else:
        lists = src / "ucfTrainTestlist"
        official = [lists / n for n in ("classInd.txt", "trainlist01.txt", "testlist01.txt")]
        if all(p.is_file() for p in official):
            for p in official:
                shutil.copyfile(p, out / p.name)
            notes.append(f"lists copied from {str(lists)!r}")
        else:
            (out / "classInd.txt").write_text(
                "".join(f"{i + 1} {c}\n" for i, c in enumerate(classes))
            )
            (out / "trainlist01.txt").write_text(
                "".join(
                    f"{classes[j.label]}/{j.video.name} {j.label + 1}\n" for j in splits["train"]
                )
            )
            (out / "testlist01.txt").write_text(
                "".join(f"{classes[j.label]}/{j.video.name}\n" for j in splits["test"])
            )
        notes.append(
            "optical flow is not computed: write TV-L1 flow frames to flow_u/<name>/ and "
            "flow_v/<name>/ with a flow tool (e.g. denseflow)"
        )
    return notes


def prepare(
    dataset: str,
    src: str | Path,
    out: str | Path,
    *,
    fps: float = 1.0,
    backend: str = "auto",
    spectrogram: str | None = None,
    test_fraction: float = 0.1,
    seed: int = 0,
    workers: int = 1,
    progress: bool = True,
) -> PrepareResult:
    """Extract frames and audio of every video under ``src`` into the loader layout at ``out``."""
    if dataset not in DATASETS:
        raise ConfigError(f"prepare: unknown dataset {dataset!r}; expected one of {DATASETS}")
    src, out = Path(src), Path(out)
    require_folder(src, "prepare --src")
    make_jobs: Callable[[Path, Path], tuple[list[Job], list[str]]] = {
        "cremad": _cremad_jobs,
        "kinetics_sounds": _ks_jobs,
        "ucf101": _ucf_jobs,
    }[dataset]
    jobs, classes = make_jobs(src, out)
    if not jobs:
        raise DataError(f"prepare: no videos ({', '.join(VIDEO_SUFFIXES)}) under {str(src)!r}")
    chosen = pick_backend(backend)  # type: ignore[arg-type]
    out.mkdir(parents=True, exist_ok=True)
    result = PrepareResult(out)
    bar: Any = tqdm(total=len(jobs), desc=f"prepare {dataset}", disable=not progress)
    failed: dict[str, str] = {}
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            for name, err in pool.map(_run_job, jobs, [chosen] * len(jobs), [fps] * len(jobs)):
                if err:
                    failed[name] = err
                bar.update()
    else:
        for job in jobs:
            name, err = _run_job(job, chosen, fps)
            if err:
                failed[name] = err
            bar.update()
    bar.close()
    good = [j for j in jobs if j.name not in failed]
    if dataset == "kinetics_sounds":
        recipe = SpectrogramCache(spectrogram or "fbank", None)
        (out / "audio").mkdir(exist_ok=True)
        for j in tqdm(good, desc="spectrograms", disable=not progress):
            target = out / "audio" / f"{j.name}.npy"
            if not target.is_file():
                assert j.wav is not None
                np.save(target, recipe(j.wav)[0].numpy())
        result.notes.append(f"audio/<name>.npy: the {spectrogram or 'fbank'} recipe, [F, T]")
    elif spectrogram and dataset == "cremad":
        cache = SpectrogramCache(spectrogram, out / "spectrogram_cache")
        for j in tqdm(good, desc="spectrograms", disable=not progress):
            assert j.wav is not None
            cache(j.wav)
        result.notes.append(
            f"spectrograms cached: set data.options.audio: {spectrogram} and "
            f"data.options.cache_dir: {out / 'spectrogram_cache'}"
        )
    if dataset == "ucf101":
        splits = _ucf_split(good)
    elif dataset == "cremad" and (src / "train.csv").is_file() and (src / "test.csv").is_file():
        splits = _listed_split(good, src)  # the field's split lists (OGM-GE's), when given
        result.notes.append("split taken from the raw folder's train.csv / test.csv")
    else:
        splits = _split(good, test_fraction, seed)
    result.notes += _write_lists(dataset, out, splits, classes, src)
    result.clips = {s: len(v) for s, v in splits.items()}
    empty = [s for s, n in result.clips.items() if n == 0]
    if empty:
        result.notes.append(
            f"WARNING: the {' and '.join(empty)} split is empty (too few videos per class for "
            f"--test-fraction {test_fraction:g}); training needs both"
        )
    result.failed = sorted(failed.items())
    failures = out / "prepare_failures.tsv"
    if result.failed:
        failures.write_text("".join(f"{n}\t{' '.join(r.split())}\n" for n, r in result.failed))
    else:
        failures.unlink(missing_ok=True)
    return result
