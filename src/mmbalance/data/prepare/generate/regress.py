"""``regress_av``: the imbalance suite's regression benchmark (docs/regression.md).

One continuous target ``y`` in [0, 1] per sample, carried by both modalities in different
amounts (nothing here is a class):

- **audio** — a 0.5 s harmonic tone whose pitch is ``200 * 4**y`` Hz (two octaves), with random
  harmonic amplitudes, vibrato, loudness envelope and white noise at 0-10 dB SNR; as the
  time-averaged log-mel spectrum (32 bins, the library's Kaldi filterbank): ``[N, 32]``. The
  pitch sits in a few mel bins: easy to read.
- **visual** — a 24 x 24 image of a bar through the middle at ``150 * y`` degrees (random offset,
  length, width, brightness), three shorter distractor bars at random angles and positions, and
  pixel noise: ``[N, 24, 24]``. The angle has to be read from the whole image: slow to learn.

Written in the arrays layout (``train/`` and ``test/``: ``audio.npy``, ``visual.npy``,
``labels.npy`` with the float targets), read by the ``arrays`` loader with
``data.task: regression``. Every sample is a function of ``(seed, index)`` alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class RegressRecipe:
    """What ``regress_av`` draws (``MANIFEST.json`` records it)."""

    samples: int = 2000
    test: int = 600
    sample_rate: int = 16000
    seconds: float = 0.5
    low_hz: float = 200.0  # pitch at y = 0; two octaves up at y = 1
    snr_db: tuple[float, float] = (0.0, 10.0)
    mel_bins: int = 32
    mel_frames: int = 32
    mel_shift_ms: float = 15.0
    side: int = 24
    max_angle: float = 150.0  # degrees at y = 1 (not 180: a bar at 0 and 180 is the same bar)
    distractors: int = 2
    pixel_noise: float = 0.1


def _rng(seed: int, index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, index, stream, 7919])


def tone(y: float, rng: np.random.Generator, r: RegressRecipe) -> np.ndarray:
    """The audio clip of target ``y`` (float32 samples)."""
    t = np.arange(int(r.sample_rate * r.seconds)) / r.sample_rate
    f0 = r.low_hz * 4.0**y
    vibrato = 1 + 0.01 * np.sin(2 * np.pi * rng.uniform(3, 7) * t + rng.uniform(0, 2 * np.pi))
    phase = 2 * np.pi * np.cumsum(f0 * vibrato) / r.sample_rate
    amps = rng.uniform(0.2, 1.0, size=4) / np.arange(1, 5)
    wave = sum(a * np.sin((h + 1) * phase + rng.uniform(0, 2 * np.pi)) for h, a in enumerate(amps))
    attack, decay = rng.uniform(0.01, 0.1), rng.uniform(0.2, 0.6)
    wave = wave * np.minimum(t / attack, 1.0) * np.exp(-t / decay) * rng.uniform(0.3, 1.0)
    power = float(np.mean(wave**2))
    snr = 10 ** (rng.uniform(*r.snr_db) / 10)
    noise = rng.standard_normal(t.size) * np.sqrt(power / snr)
    return (wave + noise).astype(np.float32)


def _bar(
    img: np.ndarray, cx: float, cy: float, angle: float, length: float, width: float, value: float
) -> None:
    """Draw an anti-aliased bar (a thick segment) into ``img`` (max-composited)."""
    side = img.shape[0]
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float64)
    dx, dy = np.cos(np.radians(angle)), -np.sin(np.radians(angle))
    px, py = xx - cx, yy - cy
    along = px * dx + py * dy
    across = np.abs(-px * dy + py * dx)
    inside = np.clip(width / 2 + 0.5 - across, 0, 1) * np.clip(
        length / 2 + 0.5 - np.abs(along), 0, 1
    )
    np.maximum(img, value * inside, out=img)


def picture(y: float, rng: np.random.Generator, r: RegressRecipe) -> np.ndarray:
    """The image of target ``y`` (float32, ``[side, side]``)."""
    img = np.zeros((r.side, r.side))
    c = r.side / 2 - 0.5
    for _ in range(r.distractors):
        _bar(
            img,
            rng.uniform(3, r.side - 4),
            rng.uniform(3, r.side - 4),
            rng.uniform(0, 180),
            rng.uniform(4, 7),
            rng.uniform(1.0, 2.0),
            rng.uniform(0.4, 0.9),
        )
    _bar(
        img,
        c + rng.uniform(-2.5, 2.5),
        c + rng.uniform(-2.5, 2.5),
        r.max_angle * y,
        rng.uniform(12, 18),
        rng.uniform(1.5, 2.5),
        rng.uniform(0.6, 1.0),
    )
    img += r.pixel_noise * rng.standard_normal(img.shape)
    return img.astype(np.float32)


def write_regress_av(
    out: Path, seed: int, progress: bool = False, per_class: int | None = None
) -> dict[str, Any]:
    """Write ``regress_av`` into ``out`` (``per_class``: a small fixture of ``10 * per_class``
    samples, each drawn exactly as in the full set)."""
    from tqdm.auto import tqdm

    from mmbalance.data.prepare.generate.digits import log_mel

    r = RegressRecipe()
    n = r.samples if per_class is None else min(r.samples, 10 * per_class)
    targets = np.array([_rng(seed, i, 0).uniform(0, 1) for i in range(n)], dtype=np.float32)
    audio, visual = [], []
    for i in tqdm(range(n), desc="regress_av", disable=not progress):
        wave = tone(float(targets[i]), _rng(seed, i, 1), r)
        mel = log_mel(wave, r.mel_bins, r.mel_frames, r.mel_shift_ms)
        audio.append(mel.mean(0))
        visual.append(picture(float(targets[i]), _rng(seed, i, 2), r))
    order = np.random.default_rng([seed, 1]).permutation(n)
    test = np.zeros(n, bool)
    test[order[: round(n * r.test / r.samples)]] = True
    arrays = {"audio": np.stack(audio), "visual": np.stack(visual), "labels": targets}
    sizes = {}
    for split, mask in (("train", ~test), ("test", test)):
        folder = out / split
        folder.mkdir(parents=True)
        for name, x in arrays.items():
            np.save(folder / f"{name}.npy", x[mask], allow_pickle=False)
        sizes[split] = int(mask.sum())
    return {"sizes": sizes, "recipe": asdict(r)}
