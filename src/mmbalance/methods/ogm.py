"""OGM and OGM-GE: On-the-fly Gradient Modulation (Peng et al., CVPR 2022; ``methods.md`` s. 2).

After ``backward`` and before the optimiser step, the gradients of the dominant modality's
encoder are scaled by ``k = 1 - tanh(alpha * rho)`` (Eq. of the official code), where ``rho``
compares the modalities' true-class scores. OGM-GE adds Gaussian noise with the standard
deviation of each original gradient to every modality's gradients (generalisation enhancement).

Scores come from per-modality logits: the exact split of the fused logits for concat/sum (the
official code) or the detached unimodal heads for every other fusion (the TPAMI version's
detached split head). Options mirror the official code's deviations from the paper.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from mmbalance import distributed as dist
from mmbalance.errors import CapabilityError
from mmbalance.methods import functional as MF
from mmbalance.methods.base import EpochMeans, Method, TrainState
from mmbalance.models.multimodal import ModelOutput, MultimodalModel
from mmbalance.structured import check_positive


@dataclass
class OGMOptions:
    """``method.options`` of ``ogm`` / ``ogm_ge``."""

    alpha: float = 0.8  # README value for CREMA-D (0.1 for VGGSound)
    modulation_start: int = 0  # first and last epoch (inclusive) of modulation
    modulation_end: int = 50
    ge: bool = False  # generalisation enhancement (noise); ``ogm_ge`` sets it
    scores: Literal["auto", "split", "heads"] = "auto"  # auto: split if the fusion allows
    conv_only: bool = False  # official code: only 4-D gradients (conv kernels) are modulated

    def validate(self, where: str) -> None:
        check_positive(self.alpha, f"{where}.alpha", allow_zero=True)
        check_positive(self.modulation_start, f"{where}.modulation_start", allow_zero=True)


class OGM(Method):
    """Gradient modulation of the dominant modality's encoder."""

    name = "ogm"
    description = "OGM (CVPR22): scale the dominant modality's encoder gradients"
    Options = OGMOptions
    min_modalities = 2
    modifies_grads = True
    # Regression: the true-class probability of each modality's logits becomes the share of
    # the target's variance its part of the fused prediction explains (functional.split_score;
    # the Gaussian score of functional.regression_score for the unimodal heads, which predict
    # the target whole); the ratio and k as published
    supports_regression = True

    def __init__(self, options: OGMOptions | None = None) -> None:
        super().__init__(options)
        self._k: Tensor | None = None
        self.means = EpochMeans()

    def check(self, model: MultimodalModel, fusion: str) -> None:
        super().check(model, fusion)
        source = self.options.scores
        if source == "split" and not model.fusion.splittable:
            raise CapabilityError(
                f"method.options.scores: 'split' needs a concat or sum fusion; got {fusion!r}. "
                "Use scores: heads (or auto)."
            )
        uses_heads = source == "heads" or (source == "auto" and not model.fusion.splittable)
        if uses_heads and model.unimodal_heads is None:
            raise CapabilityError(
                f"method {self.name!r} scores the modalities with the unimodal heads for fusion "
                f"{fusion!r}: set model.unimodal_heads: true"
            )

    def _logits(self, output: ModelOutput) -> dict[str, Tensor]:
        # check() guaranteed that the chosen source exists
        source = self.options.scores
        if source == "split" or (source == "auto" and output.split_logits is not None):
            assert output.split_logits is not None
            return output.split_logits
        assert output.unimodal_logits is not None
        return output.unimodal_logits

    def loss(
        self, output: ModelOutput, batch: dict[str, Any], state: TrainState
    ) -> dict[str, Tensor]:
        terms = super().loss(output, batch, state)  # only the fused CE is back-propagated
        logits = self._logits(output)
        score: Callable[[Tensor, Tensor], Tensor] = MF.true_class_score
        if self.task.regression:  # a split part is a share of the prediction: scale-free score
            score = MF.split_score if logits is output.split_logits else MF.regression_score
        scores = torch.stack([score(logits[m], batch["label"]) for m in state.model.modalities])
        # DDP: batch sums over the global batch, so every rank scales gradients alike
        self.set_coefficients(dist.reduce_sum(scores))
        return terms

    def set_coefficients(self, scores: Tensor | None) -> None:
        """This step's ``k`` from the modalities' true-class scores ``[M]`` (None: no
        modulation this step)."""
        self._k = None if scores is None else MF.ogm_coefficients(scores, self.options.alpha)

    def _modulating(self, epoch: int) -> bool:
        return self.options.modulation_start <= epoch <= self.options.modulation_end

    @torch.no_grad()
    def on_after_backward(self, model: MultimodalModel, state: TrainState) -> None:
        if self._k is None or not self._modulating(state.epoch):
            return
        for m, k in zip(model.modalities, self._k.tolist(), strict=True):
            for p in model.modality_parameters(m):  # by structure, never by name
                if p.grad is None or (self.options.conv_only and p.grad.dim() != 4):
                    continue
                if self.options.ge:
                    # kept on the device: no host sync per parameter
                    std = p.grad.std() if p.grad.numel() > 1 else p.grad.new_zeros(())
                    noise = torch.randn_like(p.grad) * (std + 1e-8)
                    p.grad.mul_(k).add_(noise)
                else:
                    p.grad.mul_(k)
            self.means.add(f"k_{m}", k)
        self.means.step()

    def on_epoch_end(self, state: TrainState) -> dict[str, float]:
        return self.means.pop()


@dataclass
class OGMGEOptions(OGMOptions):
    ge: bool = True


class OGMGE(OGM):
    """OGM with generalisation enhancement (Gaussian gradient noise)."""

    name = "ogm_ge"
    description = "OGM-GE (CVPR22): OGM plus Gaussian noise on the encoder gradients"
    Options = OGMGEOptions
