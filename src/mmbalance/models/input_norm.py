"""Per-channel input standardisation of an encoder (a timm model's ``normalize`` option).

A ResNet normalises its first convolution's output with BatchNorm, so the scale and offset of
its input do not matter. A ViT does not: its patch embedding is a plain linear map whose output
is *added* to the position embedding, and the sum goes through LayerNorm. Grey frames in
[0, 1] with a 0.08 standard deviation (the suite's digits_av) give patch tokens far smaller
than the position embedding, and a ViT trained from scratch on them stayed at chance
(docs/encoders.md, "Measured"). timm's own pretrained models expect their input standardised
with their training set's mean and std (``pretrained_cfg``). The statistics are fixed
buffers, not parameters: ``(x - mean_c) / std_c`` on channel axis 1 of ``[N, C, ...]``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from mmbalance.errors import ConfigError

# samples read from the training split to estimate the statistics of ``normalize: data``
DATA_SAMPLES = 512


class InputNorm(nn.Module):
    """``(x - mean) / std`` per channel (axis 1 of a batch).

    ``from_data``: the statistics come from the training split (:func:`fit_input_norms`);
    until then the module is the identity in evaluation (the builder's shape checks) and
    refuses to train. Buffers are not part of the state dict: they are recomputed from the
    config (and the training split) whenever the model is built, so a checkpoint or a
    ``pretrained_file`` has no extra keys.
    """

    mean: Tensor
    std: Tensor

    def __init__(
        self,
        channels: int,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        from_data: bool = False,
        where: str = "encoder",
    ) -> None:
        super().__init__()
        self.from_data = from_data
        self.fitted = not from_data
        self.where = where
        self.register_buffer("mean", _per_channel(mean, channels, 0.0), persistent=False)
        self.register_buffer("std", _per_channel(std, channels, 1.0), persistent=False)

    def fit(self, samples: Tensor) -> None:
        """Mean and std of each channel of ``samples [N, C, ...]`` (a channel with one value
        everywhere keeps std 1: there is no scale to divide by)."""
        flat = samples.transpose(0, 1).reshape(samples.shape[1], -1).double()
        std = flat.std(dim=1)
        self.mean.copy_(flat.mean(dim=1).to(self.mean))
        self.std.copy_(torch.where(std > 0, std, torch.ones_like(std)).to(self.std))
        self.fitted = True

    def forward(self, x: Tensor) -> Tensor:
        if not self.fitted:
            if self.training:
                raise ConfigError(
                    f"{self.where}.normalize: data needs the training split's statistics "
                    "before training: mmbalance.models.input_norm.fit_input_norms(model, "
                    "train_dataset) (mmbalance's own training does this)"
                )
            return x
        view = (1, -1) + (1,) * (x.dim() - 2)
        return (x - self.mean.view(view)) / self.std.view(view)

    def extra_repr(self) -> str:
        source = "data" if self.from_data else "given"
        return f"channels={self.mean.numel()}, {source}, fitted={self.fitted}"


def _per_channel(values: Sequence[float] | None, channels: int, default: float) -> Tensor:
    if values is None:
        return torch.full((channels,), default)
    out = torch.tensor([float(v) for v in values])
    return out.expand(channels).clone() if out.numel() == 1 else out


def check_norm_spec(spec: object, channels: int | None, where: str) -> None:
    """``normalize``: None, ``"data"``, ``"pretrained"`` or ``{mean: [...], std: [...]}``
    with one value, or one per channel, and every std > 0."""
    if spec is None or spec in ("data", "pretrained"):
        return
    expected = (
        "expected null, 'data' (the training split's per-channel mean and std), 'pretrained' "
        "(the timm model's own mean and std) or {mean: [...], std: [...]}"
    )
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}.normalize: got {spec!r}; {expected}")
    unknown = sorted(set(spec) - {"mean", "std"})
    if unknown or not {"mean", "std"} <= set(spec):
        raise ConfigError(f"{where}.normalize: got keys {sorted(spec)}; {expected}")
    for key in ("mean", "std"):
        values = spec[key]
        values = [values] if isinstance(values, (int, float)) else values
        if not isinstance(values, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
        ):
            raise ConfigError(f"{where}.normalize.{key}: got {spec[key]!r}; expected numbers")
        if channels is not None and len(values) not in (1, channels):
            raise ConfigError(
                f"{where}.normalize.{key}: got {len(values)} values; the data has {channels} "
                "channels (give one value, or one per channel)"
            )
        if key == "std" and not all(v > 0 for v in values):
            raise ConfigError(f"{where}.normalize.std: got {values}; every std must be > 0")


def numbers(values: float | Sequence[float]) -> list[float]:
    """A number or a list of numbers (``normalize.mean`` / ``.std``) as a list of floats."""
    return [float(values)] if isinstance(values, (int, float)) else [float(v) for v in values]


def _evenly_spaced(n: int, k: int) -> list[int]:
    return sorted({int(i) for i in np.linspace(0, n - 1, num=min(n, k))}) if n else []


@torch.no_grad()
def fit_input_norms(model: nn.Module, train: Dataset, samples: int = DATA_SAMPLES) -> None:
    """Fit every ``normalize: data`` module of ``model``'s encoders on up to ``samples``
    evenly spaced training samples of its modality.

    Reading a sample may draw random numbers (a random training frame): the torch, numpy and
    Python generators are restored afterwards, so the rest of the run (shuffling, dropout)
    is what it would be without the option, given the seed.
    """
    encoders = getattr(model, "encoders", {})
    wanted = {
        m: [mod for mod in enc.modules() if isinstance(mod, InputNorm) and mod.from_data]
        for m, enc in encoders.items()
    }
    wanted = {m: mods for m, mods in wanted.items() if mods}
    if not wanted:
        return
    size = len(train)  # type: ignore[arg-type]
    if size == 0:
        raise ConfigError("normalize: data: the training split has no samples")
    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        try:
            items = [train[i] for i in _evenly_spaced(size, samples)]
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
    for m, mods in wanted.items():
        stacked = torch.stack([torch.as_tensor(item["inputs"][m]) for item in items]).float()
        for mod in mods:
            mod.fit(stacked)
