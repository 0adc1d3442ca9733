"""Audio recipes of the field, as named options (``datasets.md``).

- ``stft`` (OGM-GE): resample to 22.05 kHz, tile x3, keep 3 s, clip to [-1, 1], STFT with
  n_fft 512 / hop 353 / Hann window, ``log(|S| + 1e-7)`` -> ``[1, 257, 188]``.
- ``fbank`` (MLA / Kinetics-Sounds): Kaldi-style log-mel filterbank, 128 bins, 25 ms frames every
  10 ms, Hann window, pre-emphasis 0.97, pad/cut to 1024 frames, normalised
  ``(x - mean) / (2 std)`` with the KS statistics -> ``[1, 1024, 128]``.

Every field of a recipe is an option (``data.options.audio_options``), e.g. ``{num_bins: 32,
frames: 64, shift_ms: 15}`` for CPU-sized inputs; the defaults are the field's.

WAV files are read with soundfile at any sample rate (multi-channel audio is averaged to mono)
and resampled with a polyphase filter (``scipy.signal.resample_poly``). Numbers can differ from
librosa/torchaudio in the last digits (their resamplers differ); the shapes and scales match.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from mmbalance.errors import DataError


def _need(module: str) -> object:
    try:
        return __import__(module)
    except ImportError as err:
        raise DataError(
            f"reading audio needs the '{module}' package: pip install 'mmbalance[media]'"
        ) from err


def wav_truncation(path: str | Path) -> str | None:
    """Whether a RIFF/WAVE file holds fewer sample frames than its ``data`` chunk declares (a
    copy or download cut short: decoders read what is there without complaint); the problem,
    or ``None``. Files that are not RIFF/WAVE, or declare no length (streamed), pass."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            head = fh.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            block_align = 0
            while True:
                chunk = fh.read(8)
                if len(chunk) < 8:
                    return None  # no data chunk: the decoder says what is wrong
                kind, size = chunk[:4], int.from_bytes(chunk[4:8], "little")
                if kind == b"fmt ":
                    fmt = fh.read(size + size % 2)
                    block_align = int.from_bytes(fmt[12:14], "little") if len(fmt) >= 14 else 0
                elif kind == b"data":
                    if block_align <= 0 or size in (0, 0xFFFFFFFF):
                        return None
                    present = path.stat().st_size - fh.tell()
                    if present < size:
                        return (
                            f"audio file {str(path)!r} is truncated: its header declares "
                            f"{size // block_align} sample frames, the file holds "
                            f"{max(present, 0) // block_align}"
                        )
                    return None
                else:
                    fh.seek(size + size % 2, 1)
    except OSError:
        return None  # unreadable: the decoder names the problem


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Mono float32 samples and the sample rate; errors name the file (a file cut short of
    what its header declares is an error too: :func:`wav_truncation`)."""
    sf = _need("soundfile")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)  # type: ignore[attr-defined]
    except Exception as err:
        raise DataError(f"cannot read audio file {str(path)!r}: {err}") from err
    if data.shape[0] == 0:
        raise DataError(f"audio file {str(path)!r} holds no samples")
    truncated = wav_truncation(path)
    if truncated:
        raise DataError(truncated)
    return data.mean(axis=1), int(rate)


def resample(wave: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Polyphase resampling from ``rate`` to ``target`` Hz (identity when equal)."""
    if rate == target:
        return wave
    _need("scipy")
    from scipy.signal import resample_poly

    ratio = Fraction(target, rate).limit_denominator(1000)
    return resample_poly(wave, ratio.numerator, ratio.denominator).astype(np.float32)


@dataclass
class StftRecipe:
    """OGM-GE's CREMA-D spectrogram (``audio.recipe: stft``)."""

    sample_rate: int = 22050
    seconds: float = 3.0
    tile: int = 3
    n_fft: int = 512
    hop: int = 353
    pad_mode: Literal["constant", "reflect"] = "constant"  # librosa >= 0.10 pads with zeros

    def __call__(self, wave: np.ndarray, rate: int) -> Tensor:
        x = resample(wave, rate, self.sample_rate)
        x = np.tile(x, self.tile)[: int(self.sample_rate * self.seconds)]
        length = int(self.sample_rate * self.seconds)
        if x.shape[0] < length:  # a clip shorter than seconds / tile: pad with silence
            x = np.pad(x, (0, length - x.shape[0]))
        x = np.clip(x, -1.0, 1.0)
        spec = torch.stft(
            torch.from_numpy(x),
            self.n_fft,
            self.hop,
            window=torch.hann_window(self.n_fft),
            center=True,
            pad_mode=self.pad_mode,
            return_complex=True,
        )
        return torch.log(spec.abs() + 1e-7).unsqueeze(0).float()  # [1, 257, 188]


def mel_banks(num_bins: int, n_fft: int, rate: int, low: float = 20.0, high: float = 0.0) -> Tensor:
    """Kaldi's triangular mel filters ``[num_bins, n_fft // 2]`` (mel = 1127 ln(1 + f / 700))."""

    def mel(f: Tensor) -> Tensor:
        return 1127.0 * torch.log1p(f / 700.0)

    nyquist = rate / 2
    high = nyquist + high if high <= 0 else high
    fft_bin_width = rate / n_fft
    mel_low, mel_high = mel(torch.tensor(low)), mel(torch.tensor(high))
    delta = (mel_high - mel_low) / (num_bins + 1)
    left = mel_low + torch.arange(num_bins) * delta
    center, right = left + delta, left + 2 * delta
    freqs = mel(fft_bin_width * torch.arange(n_fft // 2, dtype=torch.float64)).float()
    up = (freqs[None] - left[:, None]) / (center - left)[:, None]
    down = (right[:, None] - freqs[None]) / (right - center)[:, None]
    return torch.clamp(torch.minimum(up, down), min=0.0)


def kaldi_fbank(
    wave: Tensor, rate: int, num_bins: int = 128, shift_ms: float = 10.0, length_ms: float = 25.0
) -> Tensor:
    """Log-mel filterbank as Kaldi computes it (``snip_edges``, DC removal, pre-emphasis 0.97,
    Hann window, power spectrum, no dither, no energy) -> ``[frames, num_bins]``."""
    shift = int(rate * shift_ms / 1000)
    size = int(rate * length_ms / 1000)
    if wave.shape[0] < size:
        raise DataError(
            f"audio of {wave.shape[0]} samples is shorter than one {length_ms} ms frame"
        )
    frames = wave.unfold(0, size, shift).double()  # [n, size], snip_edges
    frames = frames - frames.mean(dim=1, keepdim=True)
    previous = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)
    frames = frames - 0.97 * previous
    frames = frames * torch.hann_window(size, periodic=False, dtype=torch.float64)
    n_fft = 1 << math.ceil(math.log2(size))
    power = torch.fft.rfft(frames, n=n_fft).abs().pow(2)[:, : n_fft // 2]
    banks = mel_banks(num_bins, n_fft, rate).double()
    energies = power @ banks.T
    return torch.log(energies.clamp_min(torch.finfo(torch.float32).eps)).float()


@dataclass
class FbankRecipe:
    """MLA / Kinetics-Sounds log-mel features (``audio.recipe: fbank``)."""

    sample_rate: int = 16000
    num_bins: int = 128
    frames: int = 1024
    shift_ms: float = 10.0
    length_ms: float = 25.0
    norm_mean: float = -4.503877  # KS statistics, as the field normalises
    norm_std: float = 5.141276

    def __call__(self, wave: np.ndarray, rate: int) -> Tensor:
        x = torch.from_numpy(resample(wave, rate, self.sample_rate))
        x = x - x.mean()
        fb = kaldi_fbank(x, self.sample_rate, self.num_bins, self.shift_ms, self.length_ms)
        if fb.shape[0] < self.frames:
            fb = torch.nn.functional.pad(fb, (0, 0, 0, self.frames - fb.shape[0]))
        fb = fb[: self.frames]
        return ((fb - self.norm_mean) / (2 * self.norm_std)).unsqueeze(0)  # [1, 1024, 128]


RECIPES = {"stft": StftRecipe, "fbank": FbankRecipe}
