"""AGM: Adaptive Gradient Modulation (Li et al., ICCV 2023; ``methods.md`` s. 4).

Each step runs the model on every subset of modalities (the others zeroed): the full input in
train mode, the ``2^M - 1`` padded inputs in eval mode (BatchNorm running statistics), all with
gradients. Shapley values turn those outputs into one response per modality that sum to the
full output; the loss is cross-entropy of that sum. Each response's gradient is multiplied by
``kappa_m = exp(alpha * min(rbar_m - r_m, 10))`` (an identity in the forward pass), where ``r``
compares the modalities' current losses and ``rbar`` their running means: a modality that runs
ahead of its usual share is slowed down, one that lags is sped up. Cost: ``2^M`` forward passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from mmbalance import distributed as dist
from mmbalance.methods import functional as MF
from mmbalance.methods.base import EpochMeans, Method, TrainState
from mmbalance.models.base import eval_mode
from mmbalance.models.multimodal import ModelOutput, MultimodalModel
from mmbalance.structured import check_positive


@dataclass
class AGMOptions:
    """``method.options`` of ``agm``."""

    alpha: float = 1.0
    modulation_start: int = 0
    modulation_end: int = 20
    clip_head: bool = (
        True  # official code: clip_grad_norm(all, 1) when a head gradient leaves [-1, 1]
    )

    def validate(self, where: str) -> None:
        check_positive(self.alpha, f"{where}.alpha", allow_zero=True)


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient by ``scale``."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, scale: float) -> Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad * ctx.scale, None


class AGM(Method):
    """Shapley responses with loss-ratio-driven gradient scaling."""

    name = "agm"
    no_regression = (
        "its mono-modal responses are Shapley values of the class log-probabilities (Eq. 7 of "
        "AGM), which have no counterpart without classes"
    )
    description = "AGM (ICCV23): Shapley responses of padded passes, adaptive gradient scaling"
    Options = AGMOptions
    min_modalities = 2
    max_modalities = 4  # 2^M passes per step: 16 at M = 4 is already costly

    def __init__(self, options: AGMOptions | None = None) -> None:
        super().__init__(options)
        self.running: Tensor | None = None  # running means of the per-modality losses
        self.updates = 0
        self.means = EpochMeans()

    def forward(
        self, model: MultimodalModel, batch: dict[str, Any], state: TrainState
    ) -> ModelOutput:
        inputs = batch["inputs"]
        mods = model.modalities
        full = model(inputs)
        outputs = {frozenset(mods): full.logits}
        with eval_mode(model):  # padded passes: BN running statistics, as the official code
            for size in range(len(mods)):
                for subset in combinations(mods, size):
                    padded = {
                        m: x if m in subset else torch.zeros_like(x) for m, x in inputs.items()
                    }
                    outputs[frozenset(subset)] = model(padded).logits
        responses = MF.shapley_responses(outputs, mods)
        y = batch["label"]
        with torch.no_grad():
            probs = {
                m: r.float().softmax(1).gather(1, y.unsqueeze(1)).clamp_min(1e-8)
                for m, r in responses.items()
            }
            losses = torch.stack([-probs[m].log().mean() for m in mods])
            losses = dist.reduce_mean(losses)  # DDP: the global batch's losses
        o = self.options
        kappa = torch.ones_like(losses)
        if self.running is not None and o.modulation_start <= state.epoch <= o.modulation_end:
            kappa = MF.agm_kappa(losses, self.running.to(losses.device), o.alpha)
        # the running means are updated after the coefficient (t-th update: (t-1)/t old + 1/t new)
        self.updates += 1
        t = self.updates
        self.running = (
            losses.detach().cpu()
            if self.running is None
            else self.running * (t - 1) / t + losses.cpu() / t
        )
        scaled = [
            _ScaleGrad.apply(responses[m], float(k))
            for m, k in zip(mods, kappa.tolist(), strict=True)
        ]
        for m, k in zip(mods, kappa.tolist(), strict=True):
            self.means.add(f"kappa_{m}", k)
        self.means.step()
        return ModelOutput(torch.stack(scaled).sum(0), full.features, full.unimodal_logits, None)

    def loss(
        self, output: ModelOutput, batch: dict[str, Any], state: TrainState
    ) -> dict[str, Tensor]:
        return {"ce": F.cross_entropy(output.logits, batch["label"])}

    @torch.no_grad()
    def on_after_backward(self, model: MultimodalModel, state: TrainState) -> None:
        grad = model.head.weight.grad
        if self.options.clip_head and grad is not None and bool((grad.abs() > 1).any()):
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)

    def on_epoch_end(self, state: TrainState) -> dict[str, float]:
        return self.means.pop()

    # -- exact resume (nn.Module.state_dict / load_state_dict call these) --------------------
    def get_extra_state(self) -> dict[str, Any]:
        return {"running": self.running, "updates": self.updates}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.running, self.updates = state["running"], int(state["updates"])
