"""Depth-Adaptive Prototypes (DAP, Sec. III-C, Eqs. 3-6).

K learnable input-space prototypes per modality, ``P~_0^m``, are trained with the model frozen:
``L_cls`` (Eq. 3) makes the whole multimodal model classify prototype k as class k, ``L_r``
(Eq. 4) keeps a decoded prototype close to the class-mean input ``Xbar^{m,k}``. The prototypes
at depth d are the encoder's first d blocks applied to them (Eq. 6), under ``no_grad`` with
normalisation layers in eval mode, so prototype statistics never reach BatchNorm.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmbalance.models.base import eval_mode, per_sample
from mmbalance.models.multimodal import MultimodalModel

Distance = Literal["flat", "pooled"]


def channel_axis(sample_shape: tuple[int, ...]) -> int:
    """Axis of a per-sample input holding channels: features of ``[F]`` and ``[T, F]``, ``C``
    of ``[C, H, W]`` and ``[C, T, H, W]``."""
    return 0 if len(sample_shape) in (1, 3, 4) else len(sample_shape) - 1


class AffineDecoder(nn.Module):
    """``Psi_dap^m``: a channel-wise affine map in input space (spec s. 1), identity at init."""

    def __init__(self, sample_shape: tuple[int, ...]) -> None:
        super().__init__()
        axis = channel_axis(sample_shape)
        shape = [1] * len(sample_shape)
        shape[axis] = sample_shape[axis]
        self.scale = nn.Parameter(torch.ones(shape))
        self.shift = nn.Parameter(torch.zeros(shape))

    def forward(self, p: Tensor) -> Tensor:
        return p * self.scale + self.shift


class DepthAdaptivePrototypes(nn.Module):
    """``P~_0^m`` and ``Psi_dap^m`` for every modality, and the class means they are tied to."""

    def __init__(self, input_shapes: dict[str, tuple[int, ...]], num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.prototypes = nn.ParameterDict(
            {m: nn.Parameter(torch.zeros(num_classes, *s)) for m, s in input_shapes.items()}
        )
        self.decoders = nn.ModuleDict({m: AffineDecoder(s) for m, s in input_shapes.items()})
        for m, s in input_shapes.items():
            self.register_buffer(f"mean_{m}", torch.zeros(num_classes, *s))
        self.register_buffer("ready", torch.tensor(False))

    @property
    def modalities(self) -> list[str]:
        return list(self.prototypes.keys())

    def class_mean(self, m: str) -> Tensor:
        return getattr(self, f"mean_{m}")

    @torch.no_grad()
    def fit_class_means(self, batches: object, init: Literal["mean", "zeros"] = "mean") -> None:
        """``Xbar^{m,k}`` from one streaming pass over the training batches; then initialise
        ``P~_0`` at the class means (``init="mean"``) so ``L_r`` starts at zero."""
        sums = {m: torch.zeros_like(self.class_mean(m)) for m in self.modalities}
        counts = torch.zeros(self.num_classes, device=self.ready.device)
        for batch in batches:  # type: ignore[attr-defined]
            y = batch["label"].to(counts.device)
            counts += torch.bincount(y, minlength=self.num_classes).to(counts.dtype)
            for m in self.modalities:
                x = batch["inputs"][m].to(sums[m].device, sums[m].dtype)
                sums[m].index_add_(0, y, x)
        for m in self.modalities:
            shape = (-1,) + (1,) * (sums[m].dim() - 1)
            mean = sums[m] / counts.clamp_min(1).reshape(shape)  # empty class -> zeros
            self.class_mean(m).copy_(mean)
            self.prototypes[m].copy_(mean if init == "mean" else torch.zeros_like(mean))
        self.ready.fill_(True)

    def reconstruction_loss(self) -> Tensor:
        """Eq. 4: ``1/(MK) sum_{m,k} ||Psi_dap^m(p_0^{m,k}) - Xbar^{m,k}||_F^2``."""
        terms = [
            (self.decoders[m](self.prototypes[m]) - self.class_mean(m)).pow(2).flatten(1).sum(1)
            for m in self.modalities
        ]
        return torch.cat(terms).mean()

    def classification_loss(self, model: MultimodalModel) -> Tensor:
        """Eq. 3: cross-entropy of the whole model on the K prototypes against classes 0..K-1.

        The model runs in eval mode; gradients are taken w.r.t. the prototypes only by the
        caller (``backward(inputs=...)``), so model weights and BN statistics stay untouched.
        """
        with eval_mode(model):
            logits = model({m: self.prototypes[m] for m in self.modalities}).logits
        target = torch.arange(self.num_classes, device=logits.device)
        return F.cross_entropy(logits, target)

    def step(self, model: MultimodalModel, optimizer: torch.optim.Optimizer) -> dict[str, float]:
        """One optimisation step of Eq. 5 (``L_cls + L_r``) on the DAP parameters alone."""
        params = list(self.parameters())
        l_cls = self.classification_loss(model)
        l_r = self.reconstruction_loss()
        optimizer.zero_grad(set_to_none=True)
        # inputs=: gradients accumulate into the DAP parameters only, never into the model's.
        (l_cls + l_r).backward(inputs=params)
        optimizer.step()
        return {"dap_cls": float(l_cls.detach()), "dap_rec": float(l_r.detach())}

    @torch.no_grad()
    def propagate(self, model: MultimodalModel, distance: Distance) -> dict[str, list[Tensor]]:
        """Eq. 6: ``P_d^m = E^m_{~d}(P_0^m)`` for every depth, as ``[K, F_d]`` comparison vectors.

        ``flat`` flattens each per-sample block output (the paper); ``pooled`` first averages it
        like the encoder's final pooling (space, time, frames).
        """
        out: dict[str, list[Tensor]] = {}
        for m in self.modalities:
            enc = model.encoders[m]
            with eval_mode(enc):
                inter = enc.forward_intermediates(self.prototypes[m].detach())
            out[m] = [represent(enc, h, inter.frames, distance) for h in inter.outputs]
        return out


def represent(encoder: nn.Module, h: Tensor, frames: int, distance: Distance) -> Tensor:
    """A block output as one vector per sample, for prototype distances."""
    if distance == "pooled":
        return encoder.pool(h, frames)
    return per_sample(h, frames).flatten(1)
