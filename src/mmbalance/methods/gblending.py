"""Gradient-Blending (Wang, Tran, Feiszli; CVPR 2020; ``methods.md`` s. 7).

A classifier per modality is trained beside the fused head, and the loss blends their
cross-entropies, ``sum_k w_k CE(logits_k)``. The weights come from each output's
overfitting-to-generalisation ratio, estimated at the start of every super-epoch: a copy of the
current model trains on output k alone for a super-epoch (``estimate_epochs``, default
``super_epoch`` as in BalanceBenchmark's ``GBlending_trainer.super_epoch_origin``, line 324) at
the learning rate training is at (``estimate_lr: current``; ``initial``: the optimiser's first
one), and from the losses on the training split (T) and the **validation** split (V) before
and after,

    G = L^V_start - L^V_end,    O = (L^V_end - L^T_end) - (L^V_start - L^T_start),
    w_k = max(G, 0) / O^2, normalised to sum to 1

(``negative_gain: abs`` is BalanceBenchmark's ``|G / O^2|``, line 366, which rewards an output
whose validation loss rose as much as one whose loss fell). The copies never touch the test
split (BalanceBenchmark's version estimates on test).
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass
from typing import Any, Literal, cast

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from mmbalance.data.loading import to_device
from mmbalance.methods import functional as MF
from mmbalance.methods.base import Method, TrainState
from mmbalance.models.init import init_regression_head
from mmbalance.models.multimodal import ModelOutput, MultimodalModel
from mmbalance.structured import check_positive
from mmbalance.tasks import Task

FUSED = "fused"


@dataclass
class GBlendingOptions:
    """``method.options`` of ``gblending``."""

    super_epoch: int = 10  # re-estimate the weights every this many epochs (BalanceBenchmark)
    estimate_epochs: int | None = None  # epochs each copy trains (None: super_epoch)
    estimate_batch_size: int = 64
    estimate_lr: Literal["current", "initial"] = "current"
    negative_gain: Literal["zero", "abs"] = "zero"

    def validate(self, where: str) -> None:
        for name in ("super_epoch", "estimate_batch_size"):
            check_positive(getattr(self, name), f"{where}.{name}")
        if self.estimate_epochs is not None:
            check_positive(self.estimate_epochs, f"{where}.estimate_epochs")


class ModalityClassifiers(nn.Module):
    """``Linear(d_m, K)`` per modality on the (attached) pooled features."""

    def __init__(self, model: MultimodalModel, regression: bool = False) -> None:
        super().__init__()
        k = model.head.out_features
        self.heads = nn.ModuleDict({m: nn.Linear(e.out_dim, k) for m, e in model.encoders.items()})
        if regression:  # as the model's own heads (models.init.init_regression_head)
            for h in self.heads.values():
                init_regression_head(cast(nn.Linear, h))

    def forward(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        return {m: h(features[m]) for m, h in self.heads.items()}


def _all_logits(
    model: MultimodalModel, heads: ModalityClassifiers, inputs: dict[str, Tensor]
) -> dict[str, Tensor]:
    out = model(inputs)
    return {FUSED: out.logits, **heads(out.features)}


@torch.no_grad()
def _mean_losses(
    model: MultimodalModel,
    heads: ModalityClassifiers,
    loader: Any,
    device: torch.device,
    task: Task,
) -> dict[str, float]:
    was = model.training
    model.eval()
    sums: dict[str, float] = {}
    n = 0
    for raw in loader:
        batch = to_device(raw, device)
        for k, lg in _all_logits(model, heads, batch["inputs"]).items():
            sums[k] = sums.get(k, 0.0) + float(task.criterion(lg, batch["label"], reduction="sum"))
        n += batch["label"].shape[0]
    model.train(was)
    return {k: v / max(n, 1) for k, v in sums.items()}


def optimizer_settings(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The settings a fresh optimiser of the same kind is built with: ``defaults`` less the
    entries its constructor does not take (torch keeps bookkeeping there too, e.g. AdamW's
    ``decoupled_weight_decay`` in torch 2.13, which ``AdamW(...)`` refuses)."""
    accepted = inspect.signature(type(optimizer).__init__).parameters
    return {k: v for k, v in optimizer.defaults.items() if k in accepted}


class GBlending(Method):
    """Loss blending with weights from the overfitting-to-generalisation ratio."""

    name = "gblending"
    description = "G-Blending (CVPR20): blend per-modality and fused CE by validation OGR weights"
    Options = GBlendingOptions
    # the blend weights come from losses alone (Eq. 9's OGR): any task loss works; for a
    # regression, the per-modality heads regress and every loss is the task's (MSE by default)
    supports_regression = True

    def __init__(self, options: GBlendingOptions | None = None) -> None:
        super().__init__(options)
        self.heads: ModalityClassifiers | None = None
        self.weights: dict[str, float] = {}
        self._estimated_at: int = -1

    def build(self, model: MultimodalModel) -> None:
        self.heads = ModalityClassifiers(model, self.task.regression)

    def estimate(self, state: TrainState) -> dict[str, float]:
        """One G-Blending weight estimate with copies of the current model and classifiers."""
        assert self.heads is not None
        o = self.options
        train_set = state.loaders["train"].dataset
        raw: dict[str, float] = {}
        for target in [FUSED, *state.model.modalities]:
            model = copy.deepcopy(state.model)
            heads = copy.deepcopy(self.heads)
            params = [*model.parameters(), *heads.parameters()]
            settings = optimizer_settings(state.optimizer)
            if o.estimate_lr == "current":  # where the schedule is now, not where it began
                settings["lr"] = state.lr
            opt = type(state.optimizer)(params, **settings)
            start_t = _mean_losses(model, heads, state.loaders["train"], state.device, self.task)
            start_v = _mean_losses(model, heads, state.loaders["val"], state.device, self.task)
            gen = torch.Generator().manual_seed(1000 * state.epoch + len(raw))
            loader = DataLoader(
                train_set, batch_size=o.estimate_batch_size, shuffle=True, generator=gen
            )
            model.train()
            for _ in range(o.estimate_epochs or o.super_epoch):
                for batch_raw in loader:
                    batch = to_device(batch_raw, state.device)
                    loss = self.task_loss(
                        _all_logits(model, heads, batch["inputs"])[target], batch["label"]
                    )
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
            end_t = _mean_losses(model, heads, state.loaders["train"], state.device, self.task)
            end_v = _mean_losses(model, heads, state.loaders["val"], state.device, self.task)
            raw[target] = MF.gblending_weight(
                start_t[target], start_v[target], end_t[target], end_v[target], o.negative_gain
            )
        total = sum(raw.values())
        return (
            {k: v / total for k, v in raw.items()} if total > 0 else {k: 1 / len(raw) for k in raw}
        )

    def on_epoch_start(self, state: TrainState) -> None:
        if state.epoch % self.options.super_epoch == 0 and self._estimated_at != state.epoch:
            self.weights = self.estimate(state)
            self._estimated_at = state.epoch

    def loss(
        self, output: ModelOutput, batch: dict[str, Any], state: TrainState
    ) -> dict[str, Tensor]:
        assert self.heads is not None
        y = batch["label"]
        logits = {FUSED: output.logits, **self.heads(output.features)}
        return {f"ce_{k}": w * self.task_loss(logits[k], y) for k, w in self.weights.items()}

    def on_epoch_end(self, state: TrainState) -> dict[str, float]:
        return {f"w_{k}": w for k, w in self.weights.items()}

    # -- exact resume (the heads are submodules; nn.Module.state_dict calls these) ------------
    def get_extra_state(self) -> dict[str, Any]:
        return {"weights": dict(self.weights), "estimated_at": self._estimated_at}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.weights = dict(state["weights"])
        self._estimated_at = int(state["estimated_at"])
