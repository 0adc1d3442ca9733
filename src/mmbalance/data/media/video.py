"""Decoding raw videos into what the field trains on: 1-fps JPEG frames and mono WAV audio.

Two backends: the ``ffmpeg`` program when it is on ``PATH``, else PyAV (``pip install av``, which
bundles FFmpeg's libraries). Both write into a temporary folder that is renamed into place only
when complete, so an interrupted ``prepare`` never leaves a half-extracted clip behind.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Literal

import numpy as np

from mmbalance.errors import DataError

Backend = Literal["auto", "ffmpeg", "pyav"]


def pick_backend(backend: Backend) -> str:
    """``ffmpeg`` or ``pyav``: the one asked for, or the first available."""
    has_ffmpeg = shutil.which("ffmpeg") is not None
    try:
        import av  # noqa: F401

        has_av = True
    except ImportError:
        has_av = False
    if backend == "ffmpeg" and not has_ffmpeg:
        raise DataError("--backend ffmpeg: no 'ffmpeg' program on PATH")
    if backend == "pyav" and not has_av:
        raise DataError("--backend pyav: PyAV is not installed (pip install av)")
    if backend != "auto":
        return backend
    if has_ffmpeg:
        return "ffmpeg"
    if has_av:
        return "pyav"
    raise DataError("decoding videos needs the 'ffmpeg' program or PyAV: pip install av")


def _ffmpeg(video: Path, frames_dir: Path, wav: Path | None, fps: float, rate: int) -> None:
    base = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(video)]
    jobs = [[*base, "-vf", f"fps={fps}", "-q:v", "2", str(frames_dir / "frame_%05d.jpg")]]
    if wav is not None:
        jobs.append([*base, "-vn", "-ac", "1", "-ar", str(rate), str(wav)])
    for cmd in jobs:
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode:
            raise DataError(f"ffmpeg failed on {str(video)!r}: {done.stderr.strip()[-500:]}")


def _pyav(video: Path, frames_dir: Path, wav: Path | None, fps: float, rate: int) -> None:
    import av

    try:
        with av.open(str(video)) as container:
            if not container.streams.video:
                raise DataError(f"{str(video)!r} has no video stream")
            count = 0
            for frame in container.decode(video=0):
                # keep the first frame at or after each 1/fps tick, like ffmpeg's fps filter
                if frame.time is None or frame.time + 1e-6 < count / fps:
                    continue
                count += 1
                frame.to_image().save(frames_dir / f"frame_{count:05d}.jpg", quality=95)
        if wav is None:
            return
        with av.open(str(video)) as container:
            if not container.streams.audio:
                raise DataError(f"{str(video)!r} has no audio stream")
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            chunks = []
            for sound in container.decode(audio=0):
                for out in resampler.resample(sound):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except DataError:
        raise
    except Exception as err:
        raise DataError(f"cannot decode {str(video)!r}: {err}") from err
    if not chunks:
        raise DataError(f"{str(video)!r}: the audio stream holds no samples")
    import soundfile as sf

    sf.write(str(wav), np.concatenate(chunks).astype(np.float32), rate, subtype="PCM_16")


def extract(
    video: Path,
    frames_dir: Path,
    wav: Path | None,
    backend: str,
    fps: float = 1.0,
    rate: int = 16000,
) -> int:
    """Frames of ``video`` at ``fps`` into ``frames_dir`` (``frame_00001.jpg`` ...) and, when
    ``wav`` is given, its audio as mono ``rate`` Hz WAV. Returns the number of frames.

    Idempotent and atomic: a complete ``frames_dir`` is left alone; a partial one never exists.
    """
    if frames_dir.is_dir() and any(frames_dir.iterdir()) and (wav is None or wav.is_file()):
        return len(list(frames_dir.iterdir()))
    tmp = frames_dir.with_name(frames_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tmp_wav = wav.with_name(wav.stem + ".partial.wav") if wav is not None else None
    try:
        (_ffmpeg if backend == "ffmpeg" else _pyav)(video, tmp, tmp_wav, fps, rate)
        count = len(list(tmp.iterdir()))
        if count == 0:
            raise DataError(f"{str(video)!r}: no frames decoded")
        if tmp_wav is not None and wav is not None:
            tmp_wav.replace(wav)
        shutil.rmtree(frames_dir, ignore_errors=True)
        tmp.rename(frames_dir)
        return count
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if tmp_wav is not None:
            tmp_wav.unlink(missing_ok=True)
