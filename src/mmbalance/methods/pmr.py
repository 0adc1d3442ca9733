"""PMR: Prototypical Modality Rebalance (Fan et al., CVPR 2023; ``methods.md`` s. 5).

Class prototypes per modality are the mean pooled encoder features of each class (eval mode,
no gradient), computed before epoch 0 and refreshed after every epoch; from the end of epoch 1
on, blended with the previous ones, ``c <- (1 - mu) c_new + mu c_old`` (the official
``main_Prototype_grad.py``, ``calculate_prototype``, lines 435-440: no blending after epoch 0).
Each step scores every modality by its prototype classifier (``-||phi - c_k||``) and adds the
prototype cross-entropy of the *weakest* modality, weighted by ``alpha``, to the fused CE: the
weak modality is pulled toward its class structure while the dominant one is left alone.

Two documented departures: the prototypes average the whole training split (the official code
stops after the first tenth of its shuffled batches, line 429: a noisier estimate of the same
means), and the paper's prototype entropy regulariser — maximise the entropy of the *dominant*
modality's prototype classifier early in training, to delay its premature convergence — which
the released code does not contain, is an option (``entropy_weight`` for the first
``entropy_epochs`` epochs; 0 by default, as released).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from mmbalance import distributed as dist
from mmbalance.errors import ConfigError
from mmbalance.methods import functional as MF
from mmbalance.methods.base import EpochMeans, Method, TrainState
from mmbalance.methods.features import collect_features
from mmbalance.methods.functional import prototype_logits
from mmbalance.models.multimodal import ModelOutput, MultimodalModel
from mmbalance.structured import check_positive


@dataclass
class PMROptions:
    """``method.options`` of ``pmr``."""

    alpha: float = 1.0  # weight of the prototype CE (CREMA-D concat scripts: 2.0)
    momentum: float = 0.2  # EMA weight of the old prototypes (mu), from the end of epoch 1
    modulation_start: int = 0
    modulation_end: int = 70
    entropy_weight: float = 0.0  # the paper's regulariser (not in the released code)
    entropy_epochs: int = 10  # ... applied in these first epochs
    # regression: the target's quantile bins are the classes of the prototypes
    regression_bins: int = 10

    def validate(self, where: str) -> None:
        check_positive(self.alpha, f"{where}.alpha", allow_zero=True)
        check_positive(self.entropy_weight, f"{where}.entropy_weight", allow_zero=True)
        check_positive(self.entropy_epochs, f"{where}.entropy_epochs", allow_zero=True)
        if self.regression_bins < 2:
            raise ConfigError(f"{where}.regression_bins: got {self.regression_bins}; expected >= 2")
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"{where}.momentum: got {self.momentum!r}; expected 0 <= mu < 1")


@torch.no_grad()
def class_means(
    model: MultimodalModel,
    loader: Any,
    num_classes: int,
    device: torch.device,
    edges: Tensor | None = None,
) -> dict[str, Tensor]:
    """Mean pooled feature of every class, per modality (eval mode: no BN statistic updates);
    of every target bin for a regression (``edges``: the bins' inner edges)."""
    f = collect_features(model, loader, device, to_cpu=False)
    labels = f.labels if edges is None else MF.target_bins(f.labels, edges)
    counts = torch.bincount(labels, minlength=num_classes).float()
    sums = {
        m: torch.zeros(num_classes, x.shape[1], device=device).index_add_(0, labels, x)
        for m, x in f.pooled.items()
    }
    return {m: s / counts.clamp_min(1).unsqueeze(1) for m, s in sums.items()}


class PMR(Method):
    """Prototype cross-entropy on the weakest modality."""

    name = "pmr"
    description = "PMR (CVPR23): prototype CE on the weakest modality, EMA class prototypes"
    Options = PMROptions
    min_modalities = 2
    # Regression: the prototypes are the mean features of the target's quantile bins
    # (regression_bins pseudo-classes, edges from the training targets); the prototype CE
    # and the scores are over those bins, the fused loss is the task's
    supports_regression = True

    def __init__(self, options: PMROptions | None = None) -> None:
        super().__init__(options)
        self.prototypes: dict[str, Tensor] = {}
        self.edges: Tensor | None = None  # a regression's bin edges (from the training targets)
        self.means = EpochMeans()

    def _classes(self, model: MultimodalModel) -> int:
        if self.edges is not None:
            return int(self.edges.numel()) + 1
        return model.head.out_features

    def _refresh(self, state: TrainState, ema: bool) -> None:
        model = state.model
        new = class_means(
            model, state.loaders["train"], self._classes(model), state.device, self.edges
        )
        mu = self.options.momentum
        self.prototypes = {
            m: (1 - mu) * c + mu * self.prototypes[m] if ema and m in self.prototypes else c
            for m, c in new.items()
        }

    def on_fit_start(self, state: TrainState) -> None:
        if self.task.regression and self.edges is None:
            targets = state.loaders["train"].dataset.labels  # type: ignore[attr-defined]
            self.edges = MF.quantile_edges(targets, self.options.regression_bins)
        if not self.prototypes:  # before epoch 0 (a resumed run restores them)
            self._refresh(state, ema=False)

    def loss(
        self, output: ModelOutput, batch: dict[str, Any], state: TrainState
    ) -> dict[str, Tensor]:
        terms = super().loss(output, batch, state)
        y = batch["label"] if self.edges is None else MF.target_bins(batch["label"], self.edges)
        mods = state.model.modalities
        for m in mods:  # prototypes restored from a checkpoint arrive on the CPU
            self.prototypes[m] = self.prototypes[m].to(output.features[m].device)
        logits = {m: prototype_logits(output.features[m], self.prototypes[m]) for m in mods}
        scores = torch.stack([MF.true_class_score(logits[m], y) for m in mods])
        scores = dist.reduce_sum(scores)  # DDP: the global batch's scores
        o = self.options
        if o.modulation_start <= state.epoch <= o.modulation_end:
            betas = MF.pmr_betas(scores, o.alpha)
            pce = [
                b * F.cross_entropy(logits[m], y)
                for m, b in zip(mods, betas.tolist(), strict=True)
                if b
            ]
            if pce:
                terms["pce"] = torch.stack(pce).sum()
            for m, b in zip(mods, betas.tolist(), strict=True):
                self.means.add(f"beta_{m}", b)
        if o.entropy_weight > 0 and state.epoch < o.entropy_epochs:
            dominant = mods[int(scores.argmax())]
            probs = logits[dominant].softmax(1)
            entropy = -(probs * logits[dominant].log_softmax(1)).sum(1).mean()
            terms["entropy"] = -o.entropy_weight * entropy  # maximised: slows the dominant
        for m, s in zip(mods, scores.tolist(), strict=True):
            self.means.add(f"score_{m}", s / len(y))
        self.means.step()
        return terms

    def on_epoch_end(self, state: TrainState) -> dict[str, float]:
        self._refresh(state, ema=state.epoch > 0)  # official: no blending after epoch 0
        return self.means.pop()

    # -- exact resume (nn.Module.state_dict / load_state_dict call these) --------------------
    def get_extra_state(self) -> dict[str, Any]:
        return {"prototypes": dict(self.prototypes), "edges": self.edges}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.prototypes = dict(state["prototypes"])
        self.edges = state.get("edges")
