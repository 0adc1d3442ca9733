"""Synthetic multimodal data with a controllable imbalance.

Each modality m draws a latent ``z = strength_m * mu_y^m + N(0, I_latent)`` around a per-class
mean ``mu_y^m`` (unit-norm directions), then maps it to the modality's sample shape with a fixed
random linear map and adds ``noise_m * N(0, 1)`` per element. ``strength`` sets how separable the
classes are in that modality (the Bayes accuracy rises with it), so a strong and a weak
modality reproduce the imbalance the field studies. Shapes: vector ``[F]``, sequence ``[T, F]``,
image-like ``[C, H, W]`` or video ``[C, T, H, W]`` (the map is smoothed spatially so
convolutions have structure to find).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from mmbalance.errors import ConfigError
from mmbalance.structured import check_positive


@dataclass
class SyntheticModality:
    """One synthetic modality: per-sample ``shape``, class ``strength``, element ``noise``."""

    shape: list[int] = field(default_factory=lambda: [32])
    strength: float = 1.0
    noise: float = 0.5
    # Number of distinct class means; classes y and y' look alike when y % r == y' % r.
    # A modality with r < K cannot tell all classes apart however well it is learned, so the
    # others must be learned too: the setting where a dominant modality hurts.
    resolution: int | None = None

    def validate(self, where: str) -> None:
        if not 1 <= len(self.shape) <= 4:
            raise ConfigError(
                f"{where}.shape: got {self.shape}; expected [F], [T, F], [C, H, W] or [C, T, H, W]"
            )
        for i, s in enumerate(self.shape):
            check_positive(s, f"{where}.shape[{i}]")
        check_positive(self.strength, f"{where}.strength", allow_zero=True)
        check_positive(self.noise, f"{where}.noise", allow_zero=True)
        if self.resolution is not None:
            check_positive(self.resolution, f"{where}.resolution")


def _default_modalities() -> dict[str, SyntheticModality]:
    return {
        "strong": SyntheticModality([32], strength=3.0),
        "weak": SyntheticModality([32], strength=1.0),
    }


@dataclass
class SyntheticOptions:
    """``data.options`` of the ``synthetic`` dataset."""

    modalities: dict[str, SyntheticModality] = field(default_factory=_default_modalities)
    num_classes: int = 4
    num_samples: int = 1200
    latent_dim: int = 8
    seed: int = 0
    targets: int = 1  # regression (data.task: regression): T continuous targets per sample

    def validate(self, where: str) -> None:
        if not self.modalities:
            raise ConfigError(f"{where}.modalities: expected at least one modality")
        if self.num_classes < 2:
            raise ConfigError(f"{where}.num_classes: got {self.num_classes}; expected >= 2")
        check_positive(self.num_samples, f"{where}.num_samples")
        check_positive(self.latent_dim, f"{where}.latent_dim")
        check_positive(self.targets, f"{where}.targets")


def _smooth_map(rng: np.random.Generator, shape: list[int], latent: int) -> np.ndarray:
    """A random linear map latent -> shape, spatially smoothed for image-like shapes."""
    a = rng.standard_normal((latent, *shape)).astype(np.float32)
    if len(shape) >= 3:
        t = torch.from_numpy(a).reshape(-1, 1, shape[-2], shape[-1])
        t = F.avg_pool2d(t, 3, stride=1, padding=1, count_include_pad=False)
        a = t.reshape(latent, *shape).numpy()
    flat = a.reshape(latent, -1)
    flat /= np.linalg.norm(flat, axis=1, keepdims=True) / np.sqrt(flat.shape[1] / latent)
    return flat.reshape(latent, *shape)


def generate_synthetic(
    opts: SyntheticOptions, task: str = "classification"
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Draw ``num_samples`` balanced-class samples for every modality (deterministic in seed);
    for a regression task, continuous targets (:func:`_regression`)."""
    rng = np.random.default_rng(opts.seed)
    if task == "regression":
        return _regression(opts, rng)
    n, k = opts.num_samples, opts.num_classes
    y = np.arange(n) % k
    y = y[rng.permutation(n)]
    inputs = {}
    for m, spec in opts.modalities.items():
        r = min(spec.resolution or k, k)
        means = rng.standard_normal((r, opts.latent_dim))
        means /= np.linalg.norm(means, axis=1, keepdims=True)
        z = spec.strength * means[y % r] + rng.standard_normal((n, opts.latent_dim))
        proj = _smooth_map(rng, spec.shape, opts.latent_dim)
        x = np.tensordot(z, proj, axes=(1, 0))
        x += spec.noise * rng.standard_normal(x.shape)
        inputs[m] = x.astype(np.float32)
    return inputs, y.astype(np.int64)


def _regression(
    opts: SyntheticOptions, rng: np.random.Generator
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Targets ``y ~ N(0, I_T)`` (``[N]`` when T = 1) that every modality carries in its own
    amount: ``z = strength_m * y U_m + N(0, I_latent)`` with ``U_m`` unit directions, then the
    modality's fixed map and element noise, as for classes. The Bayes R^2 of a modality rises
    with its ``strength``."""
    n, t = opts.num_samples, opts.targets
    y = rng.standard_normal((n, t))
    inputs = {}
    for m, spec in opts.modalities.items():
        directions = rng.standard_normal((t, opts.latent_dim))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        z = spec.strength * y @ directions + rng.standard_normal((n, opts.latent_dim))
        proj = _smooth_map(rng, spec.shape, opts.latent_dim)
        x = np.tensordot(z, proj, axes=(1, 0))
        x += spec.noise * rng.standard_normal(x.shape)
        inputs[m] = x.astype(np.float32)
    return inputs, (y[:, 0] if t == 1 else y).astype(np.float32)
