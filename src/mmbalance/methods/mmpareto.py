"""MMPareto (Wei & Hu, ICML 2024): multimodal and unimodal gradients of each encoder combined
Pareto-wise, as the official code does (``code/MMPareto.py``, ``methods.md`` s. 10).

Losses: ``L_mm`` (the fused head) and one ``L_m`` per modality from a linear head on that
encoder's (attached) features. For every encoder ``m``, with ``g_mm`` and ``g_m`` the gradients
of ``L_mm`` and ``L_m`` w.r.t. its parameters:

- ``cos(g_mm, g_m) > 0``: weights ``(k0, k1) = (1/2, 1/2)``; otherwise the two-task min-norm
  (MGDA) weights, the minimiser of ``||k0 g_mm + k1 g_m||`` with ``k0 + k1 = 1``:
  ``k0 = g_m . (g_m - g_mm) / ||g_mm - g_m||^2`` clipped to ``[0.001, 0.999]`` (cosine and
  weights over the whole flattened encoder gradient);
- per parameter tensor ``new = 2 (k0 g_mm + k1 g_m)``, then
  ``g = gamma * new * max(1, ||g_sum|| / ||new||)`` with ``g_sum`` the gradient of
  ``L_mm + sum_m L_m`` (what the backward pass produced) and ``gamma = 1.5``.

The fusion, the fused head and the unimodal heads keep ``g_sum``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from mmbalance import distributed as dist
from mmbalance.methods.base import EpochMeans, Method, TrainState
from mmbalance.methods.gblending import ModalityClassifiers
from mmbalance.models.multimodal import ModelOutput, MultimodalModel
from mmbalance.structured import check_positive


@dataclass
class MMParetoOptions:
    """``method.options`` of ``mmpareto``."""

    gamma: float = 1.5  # magnitude boost of the official code

    def validate(self, where: str) -> None:
        check_positive(self.gamma, f"{where}.gamma")


def pareto_weights(g_mm: Tensor, g_uni: Tensor) -> tuple[float, float, float]:
    """``(k0, k1, cos)`` for two flattened gradients (see the module docstring).

    The min-norm weight is clipped to ``[0.001, 0.999]`` as the official two-task solver
    (``_min_norm_element_from2``) does.
    """
    cos = float(F.cosine_similarity(g_mm, g_uni, dim=0, eps=1e-12))
    if cos > 0:
        return 0.5, 0.5, cos
    diff = g_mm - g_uni
    denom = float(diff.dot(diff))
    k0 = 0.5 if denom == 0 else float(g_uni.dot(g_uni - g_mm)) / denom
    k0 = min(0.999, max(0.001, k0))
    return k0, 1.0 - k0, cos


class MMPareto(Method):
    """Pareto integration of the multimodal and unimodal gradient of every encoder."""

    name = "mmpareto"
    description = "MMPareto (ICML24): Pareto-combined multimodal and unimodal encoder gradients"
    Options = MMParetoOptions
    min_modalities = 2
    modifies_grads = True
    # the Pareto integration reads gradients only: for a regression the multimodal and the
    # unimodal losses are the task's (MSE by default), the unimodal heads regress
    supports_regression = True

    def __init__(self, options: MMParetoOptions | None = None) -> None:
        super().__init__(options)
        self.heads: ModalityClassifiers | None = None
        self._grads: dict[str, tuple[list[Tensor], list[Tensor]]] = {}
        self.means = EpochMeans()

    def build(self, model: MultimodalModel) -> None:
        self.heads = ModalityClassifiers(model, self.task.regression)

    def loss(
        self, output: ModelOutput, batch: dict[str, Any], state: TrainState
    ) -> dict[str, Tensor]:
        assert self.heads is not None
        y = batch["label"]
        model = state.model
        terms = {"ce": self.task_loss(output.logits, y)}
        uni = self.heads(output.features)
        mods = model.modalities
        params = {m: model.modality_parameters(m) for m in mods}
        # The gradients the integration needs, kept for on_after_backward; the graph stays for
        # the trainer's backward of the summed loss (g_sum). One pass for L_mm over every
        # encoder, one per modality for L_m.
        flat = [p for m in mods for p in params[m]]
        raw = torch.autograd.grad(terms["ce"], flat, retain_graph=True, allow_unused=True)
        g_all = [torch.zeros_like(p) if g is None else g for g, p in zip(raw, flat, strict=True)]
        self._grads = {}
        start = 0
        for m in mods:
            terms[f"ce_{m}"] = self.task_loss(uni[m], y)
            g_m = torch.autograd.grad(terms[f"ce_{m}"], params[m], retain_graph=True)
            n = len(params[m])
            self._grads[m] = (g_all[start : start + n], list(g_m))
            start += n
        return terms

    @torch.no_grad()
    def on_after_backward(self, model: MultimodalModel, state: TrainState) -> None:
        gamma = self.options.gamma
        for m, (g_mm, g_m) in self._grads.items():
            # DDP: the global batch's two gradients, like g_sum (already averaged)
            g_mm = [dist.reduce_mean(g) for g in g_mm]
            g_m = [dist.reduce_mean(g) for g in g_m]
            flat_mm = torch.cat([g.reshape(-1) for g in g_mm])
            flat_m = torch.cat([g.reshape(-1) for g in g_m])
            k0, k1, cos = pareto_weights(flat_mm, flat_m)
            for p, a, b in zip(model.modality_parameters(m), g_mm, g_m, strict=True):
                if p.grad is None:
                    continue
                new = 2.0 * (k0 * a + k1 * b)
                scale = (p.grad.norm() / new.norm().clamp_min(1e-12)).clamp_min(1.0)
                p.grad.copy_(gamma * new * scale)
            self.means.add(f"cos_{m}", cos)
            self.means.add(f"k_uni_{m}", k1)
        self.means.step()
        self._grads = {}

    def on_epoch_end(self, state: TrainState) -> dict[str, float]:
        return self.means.pop()
