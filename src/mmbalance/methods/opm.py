"""OPM and OPM&OGM: On-the-fly Prediction Modulation (Wei et al., TPAMI 2024; ``methods.md`` s. 3).

After ``warmup_epochs``, with probability ``p_exe`` per step, each sample's pooled feature of a
dominant modality is dropped with probability ``q_m`` (:func:`opm_drop_probabilities`) before
fusion, and kept features are scaled by ``1 / (1 - theta)`` so the fused feature keeps its
expected size (the backward pass is scaled by the same factor). Samples whose every modality was
dropped are left out of the loss. Nothing is dropped at evaluation.
``opm_ogm`` adds OGM's gradient modulation on top (the AIM paper's "OPM&OGM" row).

As the official code does it (BML_TPAMI2024 ``code/models/Classifier.py``, lines 112-147, and
``code/main.py``, lines 91-169): both modalities are scored once per step, *before* anything is
dropped, by the detached split of the fused head (``scores: split``, for concat/sum; ``heads``:
the detached unimodal heads, for every fusion; ``auto`` picks split where it exists); OPM&OGM's
OGM reads those same scores and modulates only after the warm-up, like the dropping. The
unimodal heads (per-modality accuracy) read the features before dropping.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from mmbalance import distributed as dist
from mmbalance.errors import CapabilityError, ConfigError
from mmbalance.methods import functional as MF
from mmbalance.methods.base import EpochMeans, Method, TrainState
from mmbalance.methods.ogm import OGM, OGMOptions
from mmbalance.models.multimodal import ModelOutput, MultimodalModel
from mmbalance.structured import check_positive


@dataclass
class OPMOptions:
    """``method.options`` of ``opm``."""

    q_base: float = 0.5
    lam: float = 0.5  # lambda
    p_exe: float = 0.7  # probability that a step drops features at all
    warmup_epochs: int = 5  # dropping starts at epoch warmup_epochs + 1 (epoch > warm-up)
    scores: Literal["auto", "split", "heads"] = "auto"  # auto: the official split if possible

    def validate(self, where: str) -> None:
        for name in ("q_base", "p_exe"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(
                    f"{where}.{name}: got {value!r}; expected a probability in [0, 1]"
                )
        check_positive(self.lam, f"{where}.lam", allow_zero=True)
        check_positive(self.warmup_epochs, f"{where}.warmup_epochs", allow_zero=True)


class OPM(Method):
    """Drop the dominant modality's features on the fly."""

    name = "opm"
    no_regression = (
        "OPM's per-sample dropping uses the fused cross-entropy per sample and classifier scores "
        "of each modality; a regression form was not written (MMPareto, InfoReg and OGM have one)"
    )
    description = "OPM (TPAMI24): drop the dominant modality's features before fusion"
    Options: ClassVar[type] = OPMOptions
    min_modalities = 2

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self._keep: Tensor | None = None
        self._scores: Tensor | None = None  # this step's pre-drop true-class scores [M]
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
                f"method {self.name!r} scores modalities with the unimodal heads for fusion "
                f"{fusion!r}: set model.unimodal_heads: true"
            )

    def _score_logits(self, output: ModelOutput) -> dict[str, Tensor]:
        # check() guaranteed that the chosen source exists
        if self.options.scores != "heads" and output.split_logits is not None:
            return output.split_logits
        assert output.unimodal_logits is not None
        return output.unimodal_logits

    def forward(
        self, model: MultimodalModel, batch: dict[str, Any], state: TrainState
    ) -> ModelOutput:
        self._keep = None
        features, _ = model.encode(batch["inputs"])
        whole = model.classify(features)  # before any dropping: scores and unimodal heads
        logits = self._score_logits(whole)
        scores = torch.stack(
            [MF.true_class_score(logits[m], batch["label"]) for m in model.modalities]
        )
        self._scores = dist.reduce_sum(scores)  # DDP: the global batch's scores
        o = self.options
        if state.epoch <= o.warmup_epochs or float(torch.rand(())) >= o.p_exe:
            self.means.step()
            return whole
        q = MF.opm_drop_probabilities(self._scores, o.q_base, o.lam)
        dims = torch.tensor([float(features[m].shape[1]) for m in model.modalities])
        scale = float(MF.opm_rescale(dims, q.cpu()))
        dropped, masks = {}, []
        for m, qm in zip(model.modalities, q.tolist(), strict=True):
            keep = (torch.rand(features[m].shape[0], device=features[m].device) >= qm).float()
            masks.append(keep)
            dropped[m] = features[m] * keep.unsqueeze(1) * scale
            self.means.add(f"q_{m}", qm)
        self._keep = torch.stack(masks).amax(dim=0) > 0
        self.means.step()
        out = model.classify(dropped)
        # the unimodal heads learn (and report) each modality from its undropped feature
        return ModelOutput(out.logits, dropped, whole.unimodal_logits, out.split_logits)

    def loss(
        self, output: ModelOutput, batch: dict[str, Any], state: TrainState
    ) -> dict[str, Tensor]:
        ce = F.cross_entropy(output.logits, batch["label"], reduction="none")
        if self._keep is not None and bool(self._keep.any()):
            ce = ce[self._keep]  # samples with every modality dropped carry no information
        return {"ce": ce.mean()}

    def on_epoch_end(self, state: TrainState) -> dict[str, float]:
        return self.means.pop()


@dataclass
class OPMOGMOptions(OPMOptions, OGMOptions):
    """``method.options`` of ``opm_ogm``: OPM's and OGM's options together."""

    def validate(self, where: str) -> None:
        OPMOptions.validate(self, where)
        OGMOptions.validate(self, where)


class OPMOGM(OPM):
    """OPM on the features plus OGM on the gradients, both driven by the pre-drop scores and
    both acting only after the warm-up (official ``code/main.py``, lines 91 and 116)."""

    name = "opm_ogm"
    description = "OPM&OGM (TPAMI24): feature dropping plus gradient modulation"
    Options: ClassVar[type] = OPMOGMOptions
    modifies_grads = True

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        fields = OGMOptions.__dataclass_fields__
        self.ogm = OGM(OGMOptions(**{k: getattr(self.options, k) for k in fields}))

    def loss(
        self, output: ModelOutput, batch: dict[str, Any], state: TrainState
    ) -> dict[str, Tensor]:
        assert self._scores is not None
        warm = state.epoch <= self.options.warmup_epochs
        self.ogm.set_coefficients(None if warm else self._scores)
        return super().loss(output, batch, state)

    def on_after_backward(self, model: MultimodalModel, state: TrainState) -> None:
        self.ogm.on_after_backward(model, state)

    def on_epoch_end(self, state: TrainState) -> dict[str, float]:
        return {**super().on_epoch_end(state), **self.ogm.on_epoch_end(state)}
