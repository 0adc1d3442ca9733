"""Diagnosing & Re-learning (Wei et al., ECCV 2024; ``methods.md`` s. 9).

Every ``reinit_epoch`` epochs (at most ``reinit_num`` times) each modality is diagnosed by how
much better its features cluster on the training split than on the validation split: KMeans
(K clusters) on min-max scaled pooled features, purity after majority voting, and
``gap_m = |purity_train - purity_val|``. A modality that fits train much better than held-out
data has been over-trained, so its encoder is softly re-initialised toward the saved initial
weights: ``theta <- w theta_0 + (1 - w) theta`` with ``w = tanh(lambda * gap)``. Buffers
(BatchNorm statistics), the head and the optimiser state are left alone, as in the official code.
The diagnosis uses the validation split, never the test split.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from mmbalance.methods import functional as MF
from mmbalance.methods.base import Method, TrainState
from mmbalance.methods.features import collect_features
from mmbalance.models.multimodal import MultimodalModel
from mmbalance.structured import check_positive


@dataclass
class DiagRelearnOptions:
    """``method.options`` of ``diag_relearn``."""

    reinit_epoch: int = 20
    reinit_num: int = 3
    lam: float = 3.0  # lambda in w = tanh(lambda * gap)
    kmeans_seed: int = 0

    def validate(self, where: str) -> None:
        check_positive(self.reinit_epoch, f"{where}.reinit_epoch")
        check_positive(self.reinit_num, f"{where}.reinit_num", allow_zero=True)
        check_positive(self.lam, f"{where}.lam", allow_zero=True)


class DiagRelearn(Method):
    """Purity-gap diagnosis and soft re-initialisation of over-fitted encoders."""

    name = "diag_relearn"
    no_regression = (
        "its diagnosis clusters each modality's features with k-means and scores the clusters' "
        "purity against the classes, which a regression has not"
    )
    description = "Diagnosing & Re-learning (ECCV24): soft re-init by train/val cluster-purity gap"
    Options = DiagRelearnOptions

    def __init__(self, options: DiagRelearnOptions | None = None) -> None:
        super().__init__(options)
        self.initial: dict[str, Tensor] = {}
        self.reinits = 0

    def setup(self, model: MultimodalModel, optimizer: torch.optim.Optimizer) -> None:
        # theta_0: the encoders' parameters at initialisation (not buffers): a pretrained
        # encoder's loaded weights. Frozen ones (freeze) never move, so there is nothing to
        # re-initialise: they are left out, and out of relearn().
        self.initial = {
            n: p.detach().clone() for n, p in model.encoders.named_parameters() if p.requires_grad
        }

    def diagnose(self, state: TrainState) -> dict[str, float]:
        """``gap_m`` for every modality (train vs validation cluster purity)."""
        k = state.model.head.out_features
        gaps = {}
        per_split = {
            s: collect_features(state.model, state.loaders[s], state.device)
            for s in ("train", "val")
        }
        for m in state.model.modalities:
            purity = {}
            for split, f in per_split.items():
                assign = MF.kmeans(MF.minmax_scale(f.pooled[m]), k, self.options.kmeans_seed)
                purity[split] = MF.cluster_purity(assign, f.labels)
            gaps[m] = abs(purity["train"] - purity["val"])
        return gaps

    @torch.no_grad()
    def relearn(self, model: MultimodalModel, weights: dict[str, float]) -> None:
        """``theta <- w_m theta_0 + (1 - w_m) theta`` for every encoder parameter of each m."""
        for m, w in weights.items():
            for name, p in model.encoders[m].named_parameters():
                if p.requires_grad:
                    p.mul_(1 - w).add_(self.initial[f"{m}.{name}"].to(p.device), alpha=w)

    def on_epoch_end(self, state: TrainState) -> dict[str, float]:
        o = self.options
        if (state.epoch + 1) % o.reinit_epoch or self.reinits >= o.reinit_num:
            return {}
        gaps = self.diagnose(state)
        weights = {m: MF.relearn_weight(g, o.lam) for m, g in gaps.items()}
        self.relearn(state.model, weights)
        self.reinits += 1
        return {
            **{f"gap_{m}": g for m, g in gaps.items()},
            **{f"w_{m}": w for m, w in weights.items()},
        }

    # -- exact resume (nn.Module.state_dict / load_state_dict call these) --------------------
    def get_extra_state(self) -> dict[str, Any]:
        return {"initial": dict(self.initial), "reinits": self.reinits}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.initial = dict(state["initial"])
        self.reinits = int(state["reinits"])
