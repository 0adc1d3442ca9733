"""Digits in several senses: the sources of the imbalance suite (``docs/benchmarks.md``).

Every sample is one real handwritten digit of UCI Multiple Features (mfeat: 2,000 digits, 200
per class, drawn by hand; the ``pix`` view is the 16 x 15 grey image, the ``fou`` view 76
Fourier descriptors of its contour), paired with the same digit *spoken* by eSpeak NG in one of
several languages and voices, in background noise, and *transcribed* as eSpeak's phoneme string
with transcription errors. From one sample plan the three benchmarks render what they need:

- ``speech_clip``: the spoken digit, 1 s of 16 kHz audio at a random offset in white noise;
- ``handwritten_frame``: the digit scaled, rotated and placed on a canvas with distractor digits
  and occluders, in pixel noise (a "video frame");
- ``transcript``: the phoneme string with substituted, dropped and inserted symbols.

Everything is a pure function of ``(seed, sample index)``: samples are generated in any order or
in parallel and come out identical.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from mmbalance.data.prepare.generate.espeak import Speaker

# Languages whose eSpeak numerals differ from each other (zero..nine in six languages).
LANGUAGES: tuple[str, ...] = ("en", "de", "fr", "es", "it", "nl")
# eSpeak's voice variants: male, female and Klatt-synthesised voices, and a creaky one.
VARIANTS: tuple[str, ...] = (
    "", "+m1", "+m2", "+m3", "+m4", "+m5", "+m6", "+m7",
    "+f1", "+f2", "+f3", "+f4", "+f5", "+klatt", "+klatt2", "+croak",
)  # fmt: skip
SAMPLE_RATE = 16000
DIGIT_SHAPE = (16, 15)  # mfeat pix: 16 rows x 15 columns, grey levels 0..6


def sample_rng(seed: int, index: int, stream: int) -> np.random.Generator:
    """The random stream ``stream`` of sample ``index``: independent of generation order."""
    return np.random.default_rng([seed, index, stream])


@dataclass(frozen=True)
class Utterance:
    """How sample ``index`` is spoken."""

    label: int
    language: str
    voice: str  # eSpeak voice name: language + variant
    rate: int  # words per minute
    pitch: int  # 0..99
    snr_db: float
    offset: float  # where the word starts, as a fraction of the free room in the clip


def plan_utterances(
    labels: np.ndarray,
    seed: int,
    languages: tuple[str, ...] = LANGUAGES,
    snr_db: tuple[float, float] = (10.0, 20.0),
) -> list[Utterance]:
    """One :class:`Utterance` per label: language, voice, speed, pitch, noise level, timing."""
    out = []
    for i, y in enumerate(labels):
        rng = sample_rng(seed, i, 0)
        language = languages[int(rng.integers(len(languages)))]
        variant = VARIANTS[int(rng.integers(len(VARIANTS)))]
        out.append(
            Utterance(
                label=int(y),
                language=language,
                voice=language + variant,
                rate=int(rng.integers(120, 260)),
                pitch=int(rng.integers(20, 80)),
                snr_db=float(rng.uniform(*snr_db)),
                offset=float(rng.uniform()),
            )
        )
    return out


def _resample(wave: np.ndarray, rate: int, target: int) -> np.ndarray:
    from scipy.signal import resample_poly

    ratio = Fraction(target, rate).limit_denominator(1000)
    return resample_poly(wave, ratio.numerator, ratio.denominator).astype(np.float32)


def speech_clip(
    speaker: Speaker, u: Utterance, rng: np.random.Generator, seconds: float = 1.0
) -> np.ndarray:
    """The digit ``u.label`` spoken as ``u`` says, in a ``seconds`` clip at 16 kHz with white
    noise at ``u.snr_db`` dB below the word's power; peak-normalised to 0.9 (float32)."""
    spoken = speaker.say(str(u.label), u.voice, u.rate, u.pitch, seed=int(rng.integers(2**31)))
    word = _resample(spoken, speaker.sample_rate, SAMPLE_RATE)
    length = round(seconds * SAMPLE_RATE)
    word = word[:length]
    clip = np.zeros(length, np.float32)
    start = int(u.offset * (length - word.shape[0]))
    clip[start : start + word.shape[0]] = word
    power = float(np.mean(word**2)) if word.size else 0.0
    noise = rng.standard_normal(length).astype(np.float32)
    clip += noise * np.float32(np.sqrt(max(power, 1e-10) / 10 ** (u.snr_db / 10)))
    return (0.9 * clip / max(float(np.abs(clip).max()), 1e-6)).astype(np.float32)


@dataclass(frozen=True)
class FrameStyle:
    """How a handwritten digit becomes a cluttered frame (``handwritten_frame``)."""

    canvas: int = 48
    scale: tuple[float, float] = (1.6, 2.4)  # digit size, x the 16 x 15 original
    rotation: float = 15.0  # degrees, either way
    distractors: int = 3  # other digits, fainter (0.6), at their original size
    occluders: int = 3  # rectangles 3..11 px of random grey
    noise: float = 0.8  # std of Gaussian pixel noise (the digit's ink is 1)


def _to_image(digit: np.ndarray) -> object:
    from PIL import Image

    return Image.fromarray(np.clip(digit * 255.0, 0, 255).astype(np.uint8))


def handwritten_frame(
    digit: np.ndarray, others: np.ndarray, rng: np.random.Generator, style: FrameStyle
) -> np.ndarray:
    """One ``canvas x canvas`` uint8 frame of ``digit`` (``[16, 15]`` in [0, 1]).

    ``others`` holds candidate distractor digits (``[N, 16, 15]``). Pixel values map
    ``[-2.5, 3.5]`` (ink 1 plus noise) linearly onto 0..255, so noise is rarely clipped.
    """
    from PIL import Image

    size = style.canvas
    canvas = np.zeros((size, size), np.float32)
    for _ in range(style.distractors):
        d = others[int(rng.integers(len(others)))] * 0.6
        y, x = (int(rng.integers(0, size - n + 1)) for n in DIGIT_SHAPE)
        region = canvas[y : y + DIGIT_SHAPE[0], x : x + DIGIT_SHAPE[1]]
        np.maximum(region, d, out=region)
    s = float(rng.uniform(*style.scale))
    img = _to_image(digit).resize(  # type: ignore[attr-defined]
        (round(DIGIT_SHAPE[1] * s), round(DIGIT_SHAPE[0] * s)), Image.Resampling.BILINEAR
    )
    img = img.rotate(
        float(rng.uniform(-style.rotation, style.rotation)), Image.Resampling.BILINEAR, True
    )
    glyph = np.asarray(img, np.float32)[:size, :size] / 255.0
    h, w = glyph.shape
    y, x = int(rng.integers(0, size - h + 1)), int(rng.integers(0, size - w + 1))
    region = canvas[y : y + h, x : x + w]
    np.maximum(region, glyph, out=region)
    for _ in range(style.occluders):
        y, x = (int(v) for v in rng.integers(0, size, 2))
        h, w = (int(v) for v in rng.integers(3, 12, 2))
        canvas[y : y + h, x : x + w] = float(rng.uniform())
    canvas += style.noise * rng.standard_normal(canvas.shape).astype(np.float32)
    return np.clip((canvas + 2.5) / 6.0 * 255.0, 0, 255).round().astype(np.uint8)


def transcript(
    phonemes: str, rng: np.random.Generator, alphabet: str, error_rate: float = 0.3
) -> str:
    """A noisy transcription: each symbol is dropped, replaced, or followed by an inserted
    symbol with probability ``error_rate / 3`` each (symbols drawn from ``alphabet``)."""
    out: list[str] = []
    for c in phonemes:
        u = float(rng.uniform())
        if u < error_rate / 3:
            continue
        if u < 2 * error_rate / 3:
            out.append(alphabet[int(rng.integers(len(alphabet)))])
        elif u < error_rate:
            out += [c, alphabet[int(rng.integers(len(alphabet)))]]
        else:
            out.append(c)
    return "".join(out)


def log_mel(wave: np.ndarray, bins: int, frames: int, shift_ms: float) -> np.ndarray:
    """Kaldi-style log-mel frames ``[frames, bins]`` of a 16 kHz clip (the library's own
    ``kaldi_fbank``, padded or cut to ``frames``), scaled like the ``fbank`` recipe."""
    import torch

    from mmbalance.data.media.audio import kaldi_fbank

    x = torch.from_numpy(wave - wave.mean())
    fb = kaldi_fbank(x, SAMPLE_RATE, bins, shift_ms=shift_ms)
    fb = torch.nn.functional.pad(fb, (0, 0, 0, max(0, frames - fb.shape[0])))[:frames]
    return ((fb + 4.503877) / (2 * 5.141276)).numpy().astype(np.float32)
