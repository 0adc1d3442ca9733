"""Depth-Adaptive Prototypes (DAP, Sec. III-C, Eqs. 3-6).

K learnable input-space prototypes per modality, ``P~_0^m``, are trained with the model frozen:
``L_cls`` (Eq. 3) makes the whole multimodal model classify prototype k as class k, ``L_r``
(Eq. 4) keeps a decoded prototype close to the class-mean input ``Xbar^{m,k}``. The prototypes
at depth d are the encoder's first d blocks applied to them (Eq. 6), under ``no_grad`` with
normalisation layers in eval mode, so prototype statistics never reach BatchNorm.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmbalance.models.base import BlockEncoder, eval_mode, per_sample
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
    ready: Tensor  # buffer: the class means have been fitted
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


def represent(encoder: BlockEncoder, h: Tensor, frames: int, distance: Distance) -> Tensor:
    """A block output as one vector per sample, for prototype distances."""
    if distance == "pooled":
        return encoder.pool(h, frames)
    return per_sample(h, frames).flatten(1)


class CentroidPrototypes:
    """Depth-adaptive prototypes as class centroids of each block's outputs (``prototypes:
    centroid``, the default; ``docs/aim-investigation.md`` says why).

    ``P_d^m[k]`` is an exponential moving average (``momentum`` per step) of the mean of class
    k's depth-d outputs in the training batches, detached: what depth d of encoder m actually
    produces for class k as the network trains, which is what Sec. III-C asks of a prototype
    ("the optimal latent feature ... at the output of each depth"). Under DDP the batch sums
    and counts are all-reduced first, so every rank holds the same prototypes.
    """

    def __init__(self, num_classes: int, momentum: float = 0.9) -> None:
        self.num_classes = num_classes
        self.momentum = momentum
        self.centroids: dict[str, dict[int, Tensor]] = {}
        self.seen: dict[str, dict[int, Tensor]] = {}  # [K] bool: classes with a centroid

    def get(self, m: str, d: int, rep: Tensor, y: Tensor) -> Tensor:
        """``[K, F]`` prototypes of (m, d); before the first update, the batch's own class
        means (a class absent from the batch takes the batch mean)."""
        stored = self.centroids.get(m, {}).get(d)
        if stored is not None:
            return stored
        sums, counts = self._batch_sums(rep.detach(), y)
        return self._means(sums, counts, rep.detach().mean(0))

    def _batch_sums(self, rep: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        from mmbalance import distributed as dist

        sums = torch.zeros(self.num_classes, rep.shape[1], device=rep.device, dtype=torch.float32)
        sums.index_add_(0, y, rep.float())
        counts = torch.bincount(y, minlength=self.num_classes).to(sums.dtype)
        packed = dist.reduce_sum(torch.cat([sums, counts[:, None]], dim=1))
        return packed[:, :-1], packed[:, -1]

    @staticmethod
    def _means(sums: Tensor, counts: Tensor, fallback: Tensor) -> Tensor:
        present = counts > 0
        means = sums / counts.clamp_min(1)[:, None]
        return torch.where(present[:, None], means, fallback.float()[None])

    @torch.no_grad()
    def update(self, m: str, d: int, rep: Tensor, y: Tensor) -> None:
        """Fold one batch's class means of depth-d outputs ``rep [B, F]`` into (m, d)."""
        sums, counts = self._batch_sums(rep.detach(), y)
        present = counts > 0
        batch = self._means(sums, counts, rep.detach().mean(0))
        old = self.centroids.setdefault(m, {}).get(d)
        seen = self.seen.setdefault(m, {}).get(d)
        if old is None or seen is None:
            self.centroids[m][d], self.seen[m][d] = batch, present
            return
        blend = self.momentum * old + (1 - self.momentum) * batch
        # a class seen for the first time takes its batch mean as it is
        new = torch.where(
            (present & seen)[:, None], blend, torch.where(present[:, None], batch, old)
        )
        self.centroids[m][d], self.seen[m][d] = new, seen | present

    def as_lists(self) -> dict[str, list[Tensor]]:
        """``{m: [P_1, ..., P_D]}`` (for Eq. 16's orthogonality and the diagnostics)."""
        return {m: [c[d] for d in sorted(c)] for m, c in self.centroids.items()}

    def state_dict(self) -> dict[str, Any]:
        return {
            "centroids": {m: {str(d): t for d, t in c.items()} for m, c in self.centroids.items()},
            "seen": {m: {str(d): t for d, t in c.items()} for m, c in self.seen.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.centroids = {
            m: {int(d): t for d, t in c.items()} for m, c in state["centroids"].items()
        }
        self.seen = {m: {int(d): t for d, t in c.items()} for m, c in state["seen"].items()}
