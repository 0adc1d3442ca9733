"""Per-modality decoders of the clip datasets: stored arrays, recipe spectrograms (with an
on-disk cache), and frame stacks."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from mmbalance.data.datasets.clips import segment_indices
from mmbalance.data.media.audio import RECIPES, read_wav
from mmbalance.data.media.npyfile import read_npy
from mmbalance.data.media.safe_pickle import load_pickle
from mmbalance.data.media.vision import eval_transform, load_rgb, train_transform
from mmbalance.errors import DataError
from mmbalance.structured import check_positive, from_dict

ARRAY_SUFFIXES = (".npy", ".pkl", ".pickle", ".pt")


def load_array(path: Path) -> Tensor:
    """A stored feature array (``.npy``, pickled numpy, or ``.pt`` tensor) as float32.

    Nothing executes code: ``.npy`` without pickles, pickles through the restricted unpickler,
    ``.pt`` with ``weights_only``. Errors name the file.
    """
    if not path.is_file():
        raise DataError(f"file {str(path)!r} is missing")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            value: Any = read_npy(path)
        elif suffix in (".pkl", ".pickle"):
            value = load_pickle(path)
        elif suffix == ".pt":
            value = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise DataError(f"{str(path)!r}: expected one of {', '.join(ARRAY_SUFFIXES)}")
        x = torch.as_tensor(np.asarray(value) if not isinstance(value, Tensor) else value)
    except DataError:
        raise
    except Exception as err:
        raise DataError(f"cannot read array file {str(path)!r}: {err}") from err
    if x.numel() == 0:
        raise DataError(f"array file {str(path)!r} is empty")
    x = x.float()
    if not torch.isfinite(x).all():
        raise DataError(f"array file {str(path)!r} holds NaN or infinite values")
    return x


def as_spectrogram(x: Tensor, path: Path) -> Tensor:
    """``[1, F, T]``: a 2-D spectrogram gains the channel axis the field's loaders add."""
    if x.dim() == 2:
        return x.unsqueeze(0)
    if x.dim() == 3 and x.shape[0] == 1:
        return x
    raise DataError(
        f"spectrogram {str(path)!r} has shape {tuple(x.shape)}; expected [F, T] or [1, F, T]"
    )


class SpectrogramCache:
    """Recipe spectrograms of WAV files, computed once and stored as ``.npy``.

    The cache folder gets one sub-folder per recipe configuration (a hash of its parameters,
    described in ``recipe.json``), so changing the recipe never reads stale features; entries
    are named by :meth:`entry_name` (path, size and modification time of the WAV). Writes are
    atomic (temporary file + rename): concurrent loader workers and crashes leave either no file
    or a complete one.
    """

    def __init__(
        self,
        recipe_name: str,
        cache_dir: str | Path | None,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.recipe: Any = from_dict(RECIPES[recipe_name], options, "data.options.audio_options")
        self.dir: Path | None = None
        if cache_dir:
            cache_dir = Path(cache_dir).expanduser()
            params = {"recipe": recipe_name, **asdict(self.recipe)}
            key = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
            self.dir = Path(cache_dir) / f"{recipe_name}-{key}"
            self.dir.mkdir(parents=True, exist_ok=True)
            (self.dir / "recipe.json").write_text(json.dumps(params, indent=1) + "\n")

    def __call__(self, wav: Path) -> Tensor:
        if self.dir is None:
            return self._compute(wav)
        target = self.dir / self.entry_name(wav)
        if target.is_file():
            try:
                return torch.from_numpy(np.load(target, allow_pickle=False))
            except Exception:
                pass  # a damaged cache entry is recomputed, never trusted
        spec = self._compute(wav)
        fd, tmp = tempfile.mkstemp(dir=self.dir, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, spec.numpy())
            os.replace(tmp, target)
        except OSError:
            Path(tmp).unlink(missing_ok=True)  # a full disk costs speed, not the sample
        return spec

    @staticmethod
    def entry_name(wav: Path) -> str:
        """``<stem>-<hash>.npy``: the hash covers the WAV's absolute path, size and modification
        time, so clips of two datasets sharing a cache, or a re-encoded WAV, never read each
        other's (or stale) features."""
        try:
            st = wav.stat()
            ident = f"{wav.resolve()}|{st.st_size}|{st.st_mtime_ns}"
        except OSError as err:
            raise DataError(f"audio file {str(wav)!r} is missing or unreadable: {err}") from err
        return f"{wav.stem}-{hashlib.sha1(ident.encode()).hexdigest()[:10]}.npy"

    def _compute(self, wav: Path) -> Tensor:
        wave, rate = read_wav(wav)
        return self.recipe(wave, rate)


def load_frame_stack(
    frames: Sequence[Path],
    count: int,
    train: bool,
    size: int,
    augment: str,
    mode: str = "RGB",
) -> Tensor:
    """``count`` frames picked by temporal segment, transformed -> ``[C, T, H, W]``."""
    picks = segment_indices(len(frames), count, train)
    out = []
    for i in picks:
        img = load_rgb(frames[i], mode)
        if train and augment != "none":
            out.append(train_transform(img, size, augment))
        else:
            out.append(eval_transform(img, size))
    return torch.stack(out, dim=1)


@dataclass
class AudioVisualOptions:
    """How an audio-visual clip layout (CREMA-D, Kinetics-Sounds) is decoded; the defaults are
    the field's (``datasets.md``). The dataset option blocks inherit these fields."""

    frames: int = 1  # frames per clip, chosen per temporal segment (random in training)
    image_size: int = 224
    # crop_flip: RandomResizedCrop + flip (the field's); resize_flip: Resize + flip; none: the
    # evaluation view in training too (for frames that are already varied, e.g. generated ones)
    visual_augment: Literal["crop_flip", "resize_flip", "none"] = "crop_flip"
    frame_mode: Literal["RGB", "L"] = "RGB"  # L: one grey channel (no ImageNet normalisation)
    audio_options: dict[str, Any] = field(default_factory=dict)  # recipe fields (audio.py)
    cache_dir: str = ""  # where recipe spectrograms of the WAVs are cached ("" = no cache)

    def validate_media(self, where: str) -> None:
        check_positive(self.frames, f"{where}.frames")
        check_positive(self.image_size, f"{where}.image_size")


def audio_visual_loaders(recipe: str | None, opts: AudioVisualOptions) -> dict[str, Any]:
    """The ``audio`` and ``visual`` decoders of an audio-visual clip layout (CREMA-D,
    Kinetics-Sounds): audio from a stored array (``recipe=None``) or a WAV through the named
    recipe (with ``opts.audio_options``) and its cache; ``opts.frames`` frames per clip."""
    cache = (
        SpectrogramCache(recipe, opts.cache_dir or None, opts.audio_options)
        if recipe is not None
        else None
    )

    def audio(clip: Any, train: bool) -> Tensor:
        path = clip.files["audio"]
        return cache(path) if cache is not None else as_spectrogram(load_array(path), path)

    def visual(clip: Any, train: bool) -> Tensor:
        return load_frame_stack(
            clip.files["visual"],
            opts.frames,
            train,
            opts.image_size,
            opts.visual_augment,
            opts.frame_mode,
        )

    return {"audio": audio, "visual": visual}
