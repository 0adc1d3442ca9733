"""MLA: Multimodal Learning with Alternating unimodal adaptation (Zhang et al., CVPR 2024;
``methods.md`` s. 8).

One head is shared by every modality. For each batch the modalities take turns: modality m's
encoder and the shared head take one optimiser step on ``CE(head(f_m), y)`` (``Method.passes``),
so no modality's gradient competes with another's inside one update. Before each step after the
first, the head's weight gradient is projected (orthogonal weight modification: a recursive
least-squares projector ``P`` of the features seen so far, never reset) so that learning one
modality disturbs the head's response to the others as little as possible. At test time the
modalities' predictions are fused with per-sample entropy weights (or fixed weights). A
regression has no class distribution to take an entropy of: there the confidence weighting is
inverse-error weighting, ``w_m = (1 / e_m) / sum_k (1 / e_k)`` (the weights of independent
unbiased estimates with error variances ``e_m``), ``e_m`` the shared head's mean task loss on
modality m over the **validation** split after each training epoch (equal weights before the
first). Not the training error: on regress_av the starved visual branch fits its training
samples as closely as audio (MSE 0.006 against 0.009) while its validation R^2 is half of
audio's, and weights from training errors fused little better than equal ones (77.3 R^2). The
validation split is what G-Blending's weights are estimated on too; the test split is never
read.

The released code never applies the projection (its parameter-name test never matches);
``gradient_projection: false`` reproduces that. The model's own fusion and head are not used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn

from mmbalance import distributed as dist
from mmbalance.data.loading import to_device
from mmbalance.errors import CapabilityError, ConfigError
from mmbalance.methods import functional as MF
from mmbalance.methods.base import Method, TrainState
from mmbalance.models.init import init_regression_head
from mmbalance.models.multimodal import ModelOutput, MultimodalModel


@dataclass
class MLAOptions:
    """``method.options`` of ``mla``."""

    gradient_projection: bool = True  # the paper; the released code's behaviour is false
    # entropy: MLA's per-sample entropy weights (a regression: inverse validation error, above);
    # equal: the modalities' predictions averaged; fixed: fixed_weights
    test_fusion: Literal["entropy", "equal", "fixed"] = "entropy"
    fixed_weights: list[float] = field(default_factory=lambda: [0.55, 0.45])

    def validate(self, where: str) -> None:
        if self.test_fusion == "fixed" and any(w < 0 for w in self.fixed_weights):
            raise ConfigError(f"{where}.fixed_weights: got {self.fixed_weights}; expected >= 0")


class MLA(Method):
    """Alternating unimodal updates through one shared head."""

    name = "mla"
    description = (
        "MLA (CVPR24): alternating unimodal steps through a shared head, OWM, entropy fusion"
    )
    Options = MLAOptions
    min_modalities = 2
    unused_model_parts = ("fusion", "head")  # the shared head replaces them
    # Regression: the alternating steps and the projection are the same with the task loss
    # (MSE by default) through the shared head; the test-time fusion weights each modality by
    # its inverse validation error (module docstring). Equal weights (test_fusion: equal, the
    # form before) let a starved modality's poor prediction pull the average halfway to it:
    # regress_av, -21.9 R2 points against joint training (docs/regression.md)
    supports_regression = True

    def __init__(self, options: MLAOptions | None = None) -> None:
        super().__init__(options)
        self.head: nn.Linear | None = None
        self.projection: Tensor | None = None
        self.calls = 0
        # regression: each modality's mean task loss on the validation split after the last
        # training epoch (the fusion weights' e_m; empty before the first)
        self.val_errors: dict[str, float] = {}

    def check(self, model: MultimodalModel, fusion: str) -> None:
        super().check(model, fusion)
        dims = {m: e.out_dim for m, e in model.encoders.items()}
        if len(set(dims.values())) != 1:
            raise CapabilityError(
                f"method 'mla' shares one head across modalities, so every encoder must output "
                f"the same width; got {dims}"
            )
        if self.options.test_fusion == "fixed" and len(self.options.fixed_weights) != len(dims):
            raise ConfigError(
                f"method.options.fixed_weights: got {self.options.fixed_weights}; expected one "
                f"weight per modality ({', '.join(dims)})"
            )

    def build(self, model: MultimodalModel) -> None:
        dim = next(iter(model.encoders.values())).out_dim
        self.head = nn.Linear(dim, model.head.out_features)
        if self.task.regression:  # as the model's own heads (models.init.init_regression_head)
            init_regression_head(self.head)
        self.projection = torch.eye(dim)

    def passes(self, model: MultimodalModel) -> list[str | None]:
        return list(model.modalities)

    def forward(
        self, model: MultimodalModel, batch: dict[str, Any], state: TrainState
    ) -> ModelOutput:
        assert self.head is not None and state.pass_name is not None
        m = state.pass_name
        feature = model.encoders[m](batch["inputs"][m])
        self._feature = feature
        heads = model.unimodal_heads({m: feature}) if model.unimodal_heads is not None else None
        return ModelOutput(self.head(feature), {m: feature}, heads, None)

    def loss(
        self, output: ModelOutput, batch: dict[str, Any], state: TrainState
    ) -> dict[str, Tensor]:
        return {f"ce_{state.pass_name}": self.task_loss(output.logits, batch["label"])}

    @torch.no_grad()
    def on_train_epoch_end(self, state: TrainState) -> None:
        """A regression's fusion weights: each modality's mean task loss through the shared
        head on the validation split, with the weights training ended the epoch at."""
        if not self.task.regression or self.options.test_fusion != "entropy":
            return
        assert self.head is not None
        model, was = state.model, state.model.training
        model.eval()
        sums: dict[str, float] = {}
        n = 0
        for raw in state.loaders["val"]:
            batch = to_device(raw, state.device)
            for m, enc in model.encoders.items():
                pred = self.head(enc(batch["inputs"][m]))
                loss = self.task.criterion(pred, batch["label"], reduction="sum")
                sums[m] = sums.get(m, 0.0) + float(loss)
            n += batch["label"].shape[0]
        model.train(was)
        self.val_errors = {m: v / max(n, 1) for m, v in sums.items()}

    def inverse_error_weights(self, modalities: list[str], device: torch.device) -> Tensor:
        """``[M]`` weights ``(1 / e_m) / sum_k (1 / e_k)``, ``e_m`` modality m's validation
        error (:meth:`on_train_epoch_end`); equal before the first."""
        if not all(m in self.val_errors for m in modalities):
            return torch.full((len(modalities),), 1.0 / len(modalities), device=device)
        errors = torch.tensor([self.val_errors[m] for m in modalities], device=device)
        inverse = 1.0 / errors.clamp_min(1e-12)
        return inverse / inverse.sum()

    def on_epoch_end(self, state: TrainState) -> dict[str, float]:
        if not self.task.regression or self.options.test_fusion != "entropy":
            return {}
        modalities = list(state.model.modalities)
        weights = self.inverse_error_weights(modalities, torch.device("cpu"))
        return {f"fusion_weight_{m}": float(w) for m, w in zip(modalities, weights, strict=True)}

    @torch.no_grad()
    def on_after_backward(self, model: MultimodalModel, state: TrainState) -> None:
        assert self.head is not None and self.projection is not None
        self.calls += 1
        if not self.options.gradient_projection or self.calls == 1 or self.head.weight.grad is None:
            return  # the projector starts acting from the second update
        alpha = MF.owm_alpha(state.step_in_epoch, state.steps_per_epoch)
        # DDP: the global batch's mean feature, so the projector stays identical on every rank
        # float32: under bf16 autocast the stored feature is bfloat16, the projector float32
        mean_feature = dist.reduce_mean(self._feature.detach().float().mean(0, keepdim=True))
        self.projection = MF.owm_update(
            self.projection.to(self._feature.device), mean_feature, alpha
        )
        self.head.weight.grad.copy_(self.head.weight.grad @ self.projection.T)

    def predict(self, model: MultimodalModel, inputs: dict[str, Tensor]) -> ModelOutput:
        assert self.head is not None
        features = {m: enc(inputs[m]) for m, enc in model.encoders.items()}
        logits = [self.head(f) for f in features.values()]
        rows = (len(logits), logits[0].shape[0])
        if self.options.test_fusion == "entropy" and self.task.regression:
            weights = self.inverse_error_weights(list(features), logits[0].device)
            weights = weights[:, None].expand(*rows)
        elif self.options.test_fusion == "equal":
            weights = torch.full(rows, 1.0 / len(logits), device=logits[0].device)
        elif self.options.test_fusion == "entropy":
            weights = MF.entropy_weights(logits)  # [M, B]
        else:
            weights = torch.tensor(self.options.fixed_weights, device=logits[0].device)[:, None]
            weights = weights.expand(*rows)
        fused = (weights.unsqueeze(-1) * torch.stack(logits)).sum(0)
        heads = model.unimodal_heads(features) if model.unimodal_heads is not None else None
        return ModelOutput(fused, features, heads, dict(zip(features, logits, strict=True)))

    # -- exact resume (the head is a submodule; nn.Module.state_dict calls these) -------------
    def get_extra_state(self) -> dict[str, Any]:
        return {
            "projection": self.projection,
            "calls": self.calls,
            "val_errors": dict(self.val_errors),
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.projection = state["projection"]
        self.calls = int(state["calls"])
        # the regression fusion weights' validation errors at the checkpoint; absent in
        # checkpoints written before they existed
        self.val_errors = {m: float(e) for m, e in state.get("val_errors", {}).items()}
