"""InfoReg (Huang et al., CVPR 2025): slow the dominant modality down during its prime learning
window with a proximal term toward its parameters at the start of the epoch
(``methods.md`` s. 11; official ``main.py`` at GeWu-Lab/InfoReg_CVPR2025@939b2ed).

Per step: loss ``L = CE(fused) + sum_m CE(out_m)`` where ``out_m`` is modality m's share of the
fused head, ``f_m W[:, slice_m]^T + b / M`` (official lines 359-380: ``out_a``, ``out_v`` from
``model.module.head``, all three losses back-propagated, lines 456-458), so the unimodal terms
train the encoders *and the fused head*; ``scores: heads`` uses a separate linear head per
modality instead (the only choice for fusions without such a split). Scores
``s_m = sum_i softmax(out_m)_i[y_i]`` (batch sums, all-reduced under DDP). The dominant
modality ``d = argmax_m s_m`` is regulated while the learning window is open, ``k > threshold``
(0.05, line 465)::

    beta_d = c_d * exp(tanh(s_d - max_{j != d} s_j)),   g <- g + beta_d (theta - theta_0)

for every parameter of encoder ``d``, ``theta_0`` its value at the start of the epoch, with
``c = 0.95`` for the first modality (audio) and ``0.1`` for the second (visual), lines 465-495
(``scales``; a further modality takes the last constant).

The window: after each epoch, the Fisher trace of one encoder (``trace_modality``; the first
modality by default — audio in the field's order, as the official code hard-codes, lines
240-243) is ``sum over its Conv/Linear weights of mean(sum_steps g^2)`` (gradients after
regulation; lines 501-572); ``k = (tr1 - tr2) / tr1`` with ``tr1`` the mean of the last ten
traces and ``tr2`` the mean of the ten before the last (``k = 1`` in epoch 0; the official
trace list starts as ten zeros, line 694, so early sums are divided by ten).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn

from mmbalance import distributed as dist
from mmbalance.errors import CapabilityError, ConfigError
from mmbalance.methods import functional as MF
from mmbalance.methods.base import EpochMeans, Method, TrainState
from mmbalance.methods.gblending import ModalityClassifiers
from mmbalance.models.multimodal import ModelOutput, MultimodalModel
from mmbalance.structured import check_positive


@dataclass
class InfoRegOptions:
    """``method.options`` of ``inforeg``."""

    threshold: float = 0.05  # learning-window test on k
    # c_d per modality, in the model's modality order (official: audio 0.95, visual 0.1); a
    # modality past the end of the list takes its last entry
    scales: list[float] = field(default_factory=lambda: [0.95, 0.1])
    scores: Literal["auto", "split", "heads"] = "auto"  # auto: the fused head's split if any
    trace_modality: str = ""  # whose Fisher trace opens the window ("": the first modality)
    window: int = 10  # traces averaged for tr1 / tr2

    def validate(self, where: str) -> None:
        if not self.scales:
            raise ConfigError(f"{where}.scales: got []; expected one constant per modality")
        for i, c in enumerate(self.scales):
            check_positive(c, f"{where}.scales[{i}]")
        check_positive(self.window, f"{where}.window")

    def scale(self, index: int) -> float:
        return self.scales[min(index, len(self.scales) - 1)]


def window_k(traces: list[float], window: int = 10) -> float:
    """``k = (tr1 - tr2) / tr1`` over the trace history (``1`` before any trace)."""
    if not traces:
        return 1.0
    tr1 = sum(traces[-window:]) / window
    tr2 = sum(traces[-window - 1 : -1]) / window
    return (tr1 - tr2) / tr1 if tr1 != 0 else 0.0


def regulation(scores: Tensor, scales: list[float]) -> tuple[int, float]:
    """The dominant modality and its ``beta = c_d exp(tanh(s_d - max_{j != d} s_j))``."""
    d = int(scores.argmax())
    others = torch.cat([scores[:d], scores[d + 1 :]])
    gap = float(scores[d] - others.max())
    return d, scales[d] * math.exp(math.tanh(gap))


class InfoReg(Method):
    """Proximal regulation of the dominant encoder inside its prime learning window."""

    name = "inforeg"
    description = "InfoReg (CVPR25): proximal slow-down of the dominant encoder in its window"
    Options = InfoRegOptions
    min_modalities = 2
    modifies_grads = True
    # Regression: every loss is the task's, the unimodal ones on per-modality heads (a split
    # part is a share of the prediction, not one); the scores that pick the dominant modality
    # are the Gaussian scores of those heads' predictions (functional.regression_score); the
    # window (Fisher trace) and the proximal term are the same
    supports_regression = True

    def __init__(self, options: InfoRegOptions | None = None) -> None:
        super().__init__(options)
        self.heads: ModalityClassifiers | None = None
        self.traces: list[float] = []
        self.k = 1.0
        self._start: dict[str, list[Tensor]] = {}
        self._fisher: list[Tensor] = []
        self._beta: tuple[int, float] | None = None
        self.means = EpochMeans()

    def check(self, model: MultimodalModel, fusion: str) -> None:
        super().check(model, fusion)
        o = self.options
        unknown = [m for m in [o.trace_modality] if m and m not in model.modalities]
        if unknown:
            raise ConfigError(
                f"method.options.trace_modality: {unknown[0]!r} not in the model "
                f"({model.modalities})"
            )
        if o.scores == "split" and not model.fusion.splittable:
            raise CapabilityError(
                f"method.options.scores: 'split' needs a concat or sum fusion; got {fusion!r}. "
                "Use scores: heads (or auto)."
            )

    def _uses_heads(self, model: MultimodalModel) -> bool:
        # a regression's split parts are shares of one prediction, not predictions: trained
        # alone each would regress the whole target and their sum double it; separate heads
        return (
            self.options.scores == "heads" or not model.fusion.splittable or (self.task.regression)
        )

    def build(self, model: MultimodalModel) -> None:
        if self._uses_heads(model):
            self.heads = ModalityClassifiers(model, self.task.regression)

    def _trace_weights(self, model: MultimodalModel) -> list[Tensor]:
        m = self.options.trace_modality or model.modalities[0]
        enc = model.encoders[m]
        return [
            mod.weight
            for mod in enc.modules()
            if isinstance(mod, (nn.Conv2d, nn.Conv1d, nn.Linear))
        ]

    def on_epoch_start(self, state: TrainState) -> None:
        model = state.model
        self.k = window_k(self.traces, self.options.window)
        self._start = {
            m: [p.detach().clone() for p in model.modality_parameters(m)] for m in model.modalities
        }
        self._fisher = [torch.zeros_like(w) for w in self._trace_weights(model)]

    def loss(
        self, output: ModelOutput, batch: dict[str, Any], state: TrainState
    ) -> dict[str, Tensor]:
        y = batch["label"]
        mods = state.model.modalities
        if self.heads is not None:
            uni = self.heads(output.features)
        else:  # the fused head's own split, attached (official)
            assert output.split_logits is not None
            uni = output.split_logits
        terms = {"ce": self.task_loss(output.logits, y)}
        for m in mods:
            terms[f"ce_{m}"] = self.task_loss(uni[m], y)
        score = MF.regression_score if self.task.regression else MF.true_class_score
        scores = dist.reduce_sum(torch.stack([score(uni[m], y) for m in mods]))
        self._beta = None
        if self.k > self.options.threshold:
            scales = [self.options.scale(i) for i in range(len(mods))]
            self._beta = regulation(scores, scales)
        for m, s in zip(mods, scores.tolist(), strict=True):
            self.means.add(f"score_{m}", s)
        return terms

    @torch.no_grad()
    def on_after_backward(self, model: MultimodalModel, state: TrainState) -> None:
        mods = model.modalities
        if self._beta is not None:
            d, beta = self._beta
            for p, p0 in zip(model.modality_parameters(mods[d]), self._start[mods[d]], strict=True):
                if p.grad is not None:
                    p.grad.add_(p - p0.to(p.device), alpha=beta)
            self.means.add(f"beta_{mods[d]}", beta)
        for acc, w in zip(self._fisher, self._trace_weights(model), strict=True):
            if w.grad is not None:
                acc.add_(w.grad.pow(2))
        self.means.step()

    def on_epoch_end(self, state: TrainState) -> dict[str, float]:
        trace = float(sum(acc.mean() for acc in self._fisher)) if self._fisher else 0.0
        self.traces.append(trace)
        out = self.means.pop()
        out.update(k=self.k, fisher_trace=trace)
        return out

    # -- exact resume (the heads are submodules; nn.Module.state_dict calls these) ------------
    def get_extra_state(self) -> dict[str, Any]:
        return {"traces": torch.tensor(self.traces)}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.traces = [float(t) for t in state["traces"]]
