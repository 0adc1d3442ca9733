"""Greedy: balanced multimodal learning against greedy learning (Wu et al., ICML 2022;
``methods.md`` s. 6).

Two encoders exchange information mid-network through MMTM blocks (after every block from
depth ``mmtm_from`` on; ResNet18: after stages 2, 3, 4): the pooled block outputs of both
modalities are squeezed together, and each modality's block output is re-scaled channel-wise by
a sigmoid excitation. Each modality has its own classifier — here the exact per-modality split
of the concat/sum head, so the fused logits are their sum and the prediction their average —
and the loss is ``CE(logits_0) + CE(logits_1)``. After each backward the conditional learning
speed of each modality (relative gradient size of its own encoder vs of its MMTM "bypass") is
accumulated (except during curation); when the two modalities' conditional utilisation
differs by more than ``eps``, the one that leans on the other is "cared for" for ``window``
steps: its MMTM scale is replaced by its running average, so it has to learn from its own input.
The official code's running average of the second modality reads the *first* modality's scale
(``src/balanced_mmtm.py``, line 114), an evident slip; each modality's own is used here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmbalance import distributed as dist
from mmbalance.errors import CapabilityError
from mmbalance.methods import functional as MF
from mmbalance.methods.base import EpochMeans, Method, TrainState
from mmbalance.models.multimodal import ModelOutput, MultimodalModel
from mmbalance.structured import check_positive


@dataclass
class GreedyOptions:
    """``method.options`` of ``greedy``."""

    mmtm_from: int = 2  # first depth (1-based) followed by an MMTM block
    ratio: int = 4  # squeeze reduction of MMTM
    starting_epoch: int = 2  # curation starts at this epoch
    window: int = 5  # steps a curation lasts
    eps: float = 0.01  # |d| above which curation starts

    def validate(self, where: str) -> None:
        for name in ("mmtm_from", "ratio", "window"):
            check_positive(getattr(self, name), f"{where}.{name}")
        check_positive(self.eps, f"{where}.eps", allow_zero=True)


class MMTM(nn.Module):
    """Multimodal transfer module: joint squeeze, per-modality sigmoid excitation.

    The squeeze width is ``int(2 (c0 + c1) / ratio)`` (official ``src/balanced_mmtm.py``,
    ``MMTM_mitigate.__init__``, line 26).
    """

    def __init__(self, c0: int, c1: int, ratio: int) -> None:
        super().__init__()
        hidden = max(1, int(2 * (c0 + c1) / ratio))
        self.squeeze = nn.Linear(c0 + c1, hidden)
        self.excite = nn.ModuleList([nn.Linear(hidden, c0), nn.Linear(hidden, c1)])

    def forward(self, p0: Tensor, p1: Tensor) -> tuple[Tensor, Tensor]:
        z = F.relu(self.squeeze(torch.cat([p0, p1], dim=1)))
        return torch.sigmoid(self.excite[0](z)), torch.sigmoid(self.excite[1](z))


class Greedy(Method):
    """MMTM mid-fusion with curation of the modality that learns greedily."""

    name = "greedy"
    no_regression = (
        "its conditional learning speeds compare the per-modality cross-entropies of MMTM's split"
        " classifiers; a regression form was not written"
    )
    description = "Greedy (ICML22): MMTM mid-fusion, re-balanced by conditional learning speed"
    Options = GreedyOptions
    min_modalities = 2
    max_modalities = 2
    supported_fusions = ("concat", "sum")  # per-modality classifiers = the head's exact split

    def __init__(self, options: GreedyOptions | None = None) -> None:
        super().__init__(options)
        self.mmtm = nn.ModuleDict()
        self.main = [0.0, 0.0]
        self.bypass = [0.0, 0.0]
        self.averages: dict[str, Tensor] = {}  # running mean scale per (depth, modality)
        self.updates = 0
        self.caring: int | None = None
        self.remaining = 0
        self.means = EpochMeans()

    def check(self, model: MultimodalModel, fusion: str) -> None:
        super().check(model, fusion)
        whole = [m for m, e in model.encoders.items() if not e.runs_block_by_block]
        if whole:
            raise CapabilityError(
                f"method 'greedy' runs the encoders block by block to insert MMTM between them; "
                f"the encoder of {whole} runs its own forward (timm, or a module wrapped without "
                "a stem), so MMTM cannot attach. Wrap it with its stem named "
                "(mmbalance.wrap_encoder(..., stem=[...])) or use another method"
            )
        depths = {e.depth for e in model.encoders.values()}
        if len(depths) != 1 or self.options.mmtm_from > min(depths):
            raise CapabilityError(
                f"method 'greedy' inserts MMTM blocks from depth {self.options.mmtm_from} on and "
                f"needs encoders of one depth D >= that; got depths {sorted(depths)}"
            )

    def build(self, model: MultimodalModel) -> None:
        mods = model.modalities
        info = [model.encoders[m].feature_info(model.input_shapes[m]) for m in mods]
        for d in range(self.options.mmtm_from - 1, len(info[0])):
            self.mmtm[str(d)] = MMTM(info[0][d].channels, info[1][d].channels, self.options.ratio)

    def _forward(
        self, model: MultimodalModel, inputs: dict[str, Tensor], train: bool
    ) -> ModelOutput:
        mods = model.modalities
        encs = [model.encoders[m] for m in mods]
        hs, frames = [], []
        for enc, m in zip(encs, mods, strict=True):
            h, f = enc.prepare(inputs[m])
            hs.append(enc.stem(h))
            frames.append(f)
        for d in range(encs[0].depth):
            hs = [enc.blocks[d](h) for enc, h in zip(encs, hs, strict=True)]
            if str(d) not in self.mmtm:
                continue
            pooled = [enc.pool(h, f) for enc, h, f in zip(encs, hs, frames, strict=True)]
            scales = list(self.mmtm[str(d)](*pooled))
            if train:
                caring = self.caring if self.remaining > 0 else None
                # the cared-for modality gets the average scale of the steps before this one
                avg = self.averages[f"{d}_{caring}"] if caring is not None else None
                self._track(d, scales)
                if caring is not None and avg is not None:
                    scales[caring] = avg.to(scales[caring].device).expand_as(scales[caring])
            hs = [
                enc.scale_channels(h, s, f)
                for enc, h, s, f in zip(encs, hs, scales, frames, strict=True)
            ]
        features = {m: enc.pool(h, f) for m, enc, h, f in zip(mods, encs, hs, frames, strict=True)}
        return model.classify(features)

    @torch.no_grad()
    def _track(self, d: int, scales: list[Tensor]) -> None:
        for j, s in enumerate(scales):
            key = f"{d}_{j}"
            # float32 (bf16 under autocast); DDP: the global batch's mean
            batch_mean = dist.reduce_mean(s.detach().float().mean(0)).cpu()
            prev = self.averages.get(key)
            # cumulative mean over every training step so far
            self.averages[key] = (
                batch_mean if prev is None else prev + (batch_mean - prev) / (self.updates + 1)
            )

    def forward(
        self, model: MultimodalModel, batch: dict[str, Any], state: TrainState
    ) -> ModelOutput:
        out = self._forward(model, batch["inputs"], train=True)
        self.updates += 1
        return out

    def predict(self, model: MultimodalModel, inputs: dict[str, Tensor]) -> ModelOutput:
        return self._forward(model, inputs, train=False)

    def loss(
        self, output: ModelOutput, batch: dict[str, Any], state: TrainState
    ) -> dict[str, Tensor]:
        assert output.split_logits is not None
        y = batch["label"]
        return {f"ce_{m}": F.cross_entropy(lg, y) for m, lg in output.split_logits.items()}

    @torch.no_grad()
    def on_after_backward(self, model: MultimodalModel, state: TrainState) -> None:
        # official src/callbacks.py, Bias_Mitigation_Strong.on_backward_end (lines 240-263): the
        # speeds are accumulated on every step except those of a curation window
        if state.epoch >= self.options.starting_epoch and self.remaining > 0:
            return
        for j, m in enumerate(model.modalities):
            main = [p for p in model.modality_parameters(m) if p.grad is not None]
            # a modality's bypass: its own excitation and the squeeze both modalities share
            # (compute_BDR, lines 207-217, counts shared MMTM weights for both)
            bypass = [
                p
                for block in cast("list[MMTM]", list(self.mmtm.values()))
                for p in (*block.excite[j].parameters(), *block.squeeze.parameters())
                if p.grad is not None
            ]
            for store, params in ((self.main, main), (self.bypass, bypass)):
                if not params:
                    continue
                # one device-to-host transfer per group, not one per parameter
                g, w = torch.stack(
                    [
                        torch.stack([cast(Tensor, p.grad).pow(2).sum() for p in params]).sum(),
                        torch.stack([p.pow(2).sum() for p in params]).sum(),
                    ]
                ).tolist()
                store[j] += MF.relative_speed(g, w)

    def on_step_end(self, state: TrainState) -> None:
        d = MF.greedy_imbalance(self.main, self.bypass)
        self.means.add("d", d)
        if self.remaining > 0:
            self.remaining -= 1
            self.means.add("curating", 1.0)
        elif state.epoch >= self.options.starting_epoch and abs(d) > self.options.eps:
            self.caring = 0 if d > 0 else 1
            self.remaining = self.options.window
        self.means.step()

    def on_epoch_end(self, state: TrainState) -> dict[str, float]:
        return self.means.pop()

    # -- exact resume (the MMTM blocks are submodules; nn.Module.state_dict calls these) ------
    def get_extra_state(self) -> dict[str, Any]:
        return {
            "main": list(self.main),
            "bypass": list(self.bypass),
            "averages": dict(self.averages),
            "updates": self.updates,
            "caring": -1 if self.caring is None else self.caring,
            "remaining": self.remaining,
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.main, self.bypass = list(state["main"]), list(state["bypass"])
        self.averages = dict(state["averages"])
        self.updates = int(state["updates"])
        self.caring = None if state["caring"] < 0 else int(state["caring"])
        self.remaining = int(state["remaining"])
