"""AIM: Adaptive Intra-Network Modulation (Shen, Chen, Zhang; arXiv 2508.19769).

Implements ``shared/design/aim.md`` sections 1-7. Per training step, for every depth d and
modality m (Algorithm 1):

- the original block output ``E_d^m(I_d^m)`` is scored against the depth-d prototypes:
  ``s_d^m`` and ``L_d^m`` (Eqs. 9-10);
- PAM: the decoupler splits each block weight into ``theta_b`` (auxiliary) and ``theta_g``
  (complementary) (Eq. 7); the auxiliary block ``E~_d^m`` (original code, ``theta_b`` weights)
  gives ``s~_d^m``, ``L~_d^m``; ``L_d = sum_m rho L + rho~ L~`` (Eqs. 11-12), and the auxiliary
  loss reaches the original weights through the decoupler's Jacobian (Eq. 13);
- DAM: ``alpha_d`` = coefficient of variation of ``s_d`` over modalities (Eq. 14);
  ``L_mod = sum_d alpha_d L_d`` (Eq. 15);
- the decoupler trains on ``L_pdm = L_g + L_re`` (Eq. 8) and nothing else trains it;
- DAP (Eqs. 3-6) trains with the model frozen: ``dap_steps`` steps after each phase-1 epoch,
  one step per training step in phase 2.

Phase 1 (epochs < ``start_epoch`` E): the model trains with cross-entropy (Eq. 2) only.
Phase 2: ``CE + lambda_mod * L_mod``. Inference uses the plain model.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmbalance import distributed as dist
from mmbalance.errors import CapabilityError, ConfigError
from mmbalance.methods import functional as AF
from mmbalance.methods.aim.blocks import call_with_weights
from mmbalance.methods.aim.decoupler import Decoupler
from mmbalance.methods.aim.prototypes import CentroidPrototypes, DepthAdaptivePrototypes, represent
from mmbalance.methods.base import EpochMeans, Method, TrainState
from mmbalance.models.multimodal import ModelOutput, MultimodalModel
from mmbalance.models.weights import is_frozen
from mmbalance.structured import check_positive

log = logging.getLogger("mmbalance")


@dataclass
class AIMOptions:
    """``method.options`` of ``aim``. Defaults: ``docs/aim.md`` (where they differ from the
    literal reading of the paper, the table there says why and names the literal setting)."""

    start_epoch: int = 1  # E: first epoch of modulation (Algorithm 1; swept in Fig. 7)
    # weight of L_mod beside CE in phase 2 (paper: not given); chosen with split_ce on. On
    # FiLM / gated fusions (no split_ce) 3.0 measures better (docs/aim-investigation.md, step 8)
    lambda_mod: float = 1.0
    # Share of the fused cross-entropy's gradient that reaches the encoders in phase 2 (the
    # fusion and head always get all of it). Algorithm 1, line 10 updates the framework "using
    # L_mod" alone: 0.0 is that literal reading (encoders driven by L_mod only, the head by CE).
    ce_to_encoders: float = 1.0
    # Weight of the per-modality cross-entropies of the fused head's exact split in phase 2:
    # concat and sum fusions write the fused logits as sum_m head_m(f_m), and each head_m(f_m)
    # is trained to classify on its own, as AIM-label scores each modality with "the
    # classifier" (Sec. IV-E). The paper is silent on what trains the classifier in phase 2
    # (Algorithm 1 updates the framework "using L_mod", which never reaches it); without this
    # term the head learns only from the fused CE, which the dominant modality already fits on
    # the training split, and does not use what L_mod adds to the weak encoders
    # (docs/aim-investigation.md, step 8). None: 1.0 where the fusion splits (concat, sum),
    # 0.0 elsewhere (FiLM, gated) and for a regression (there the parts regressing the target
    # alone cost fused R^2 on validation, docs/regression.md); 0.0 is the paper as written.
    split_ce: float | None = None
    # Prototypes (Sec. III-C): "centroid" = class means of each block's outputs (EMA);
    # "dap" = the paper's input-space prototypes propagated through the encoder (Eqs. 3-6).
    prototypes: Literal["centroid", "dap"] = "centroid"
    centroid_momentum: float = 0.9
    # Scores and losses (Eqs. 9-10)
    dap_distance: Literal["flat", "pooled"] = "pooled"
    dap_temperature: float | Literal["auto"] = "auto"  # a number: fixed tau (paper: 1)
    dap_auto_scale: float = 0.2  # auto: tau = this x the mean distance between prototypes
    # PDM (s. 3)
    latent_dim: int = 512
    decoupler: Literal["rowwise", "layer"] = "rowwise"
    decoupler_budget: int = 200_000_000  # max decoupler parameters ('layer' is refused above)
    decoupler_init: Literal["svd", "random"] = "svd"  # random: the literal reading
    decoupler_lr: float = 1e-3  # Adam
    mask_share: float | None = 0.5  # centred mask logits; None: the literal free mask
    # a 0/1 mask (the mask_share of each row's latent coordinates with the largest logits),
    # with the sigmoid's gradient (straight-through); False: Eq. 7's sigmoid as written
    mask_hard: bool = False
    recon_loss: Literal["relative", "mean", "sum"] = "relative"  # sum: Eq. 8 as written
    pdm_during_modulation: bool = True
    # PAM's passes (the auxiliary blocks of Eqs. 7, 9-13 and the decoupler's L_pdm, Eq. 8) run
    # on one training step in k, their Eq. 11 terms weighted by k there: over k steps the
    # expected L_mod is the every-step one, at about 1/k of PAM's cost. 1 is the paper.
    pam_every: int = 1
    # Share of each batch the complementary pass of L_pdm (Eq. 8) runs on. Eq. 8 is an
    # expectation over (I, y): the first ceil(f * B) samples of an already shuffled batch are
    # an unbiased, noisier estimate of it, at f of the cost. 1.0 is the literal reading.
    pdm_batch_fraction: float = 0.25
    # The same for the auxiliary blocks' pass (their s~ and L~, Eqs. 9-11): the first
    # ceil(f * B) samples. 1.0 is the literal reading.
    aux_batch_fraction: float = 0.5
    # Whether the auxiliary-block loss also reaches earlier blocks through the block input
    # I_d. Eq. 13 names one destination for it, the original weights theta (through the
    # decoupler), so the default detaches I_d there; it also saves a third of AIM's extra
    # backward work. The original-block loss L_d^m always reaches earlier blocks.
    aux_input_grad: bool = False
    # DAP (prototypes: dap; s. 1-2)
    dap_steps: int = 100  # Adam steps after each phase-1 epoch
    dap_lr: float = 1e-2
    dap_init: Literal["mean", "zeros"] = "mean"
    # Ablations (s. 7)
    # PAM (the decoupler and the auxiliary blocks, Eqs. 7-13). Off by default: on the suite's
    # validation splits, and in every other condition measured (encoder width, training
    # length), its paired effect stayed inside the seed noise (docs/aim-investigation.md, step
    # 9), while it takes AIM from 1.00x to 1.91x joint training's FLOPs at CREMA-D shapes.
    # true (with pam_every 1) is the paper's method.
    pam: bool = False
    dam: bool = True  # False: "w/o DAM" (every alpha_d = 1)
    # alpha_d / mean_d alpha_d in Eq. 15: Eq. 14's depth weighting at a fixed overall strength
    # (the logged alpha stays Eq. 14's). Eq. 14's coefficient of variation is small wherever the
    # modalities' scores are close (0.03-0.4 on the suite), and it scales the whole of L_mod
    # down with it; chosen on validation across the suite (docs/aim-investigation.md, step 6).
    # False: Eq. 15 as written.
    dam_normalize: bool = True
    scores: Literal["prototype", "label"] = "prototype"  # "label": AIM-label (Table V)
    only_auxiliary: bool = False  # Fig. 5b: original blocks' weight in Eq. 11 set to 0
    label_head_lr: float = 1e-3  # Adam, AIM-label's per-depth heads
    # Regression (data.task: regression; docs/regression.md): what a block's score and loss
    # (Eqs. 9-10) are. "bins": the target's quantile bins are the prototypes' classes (Eqs.
    # 9-10 unchanged over regression_bins pseudo-classes); "error": a linear regression head
    # per (modality, depth) on the block's pooled output, trained on the side as AIM-label's,
    # s = max(0, 1 - MSE / Var(y)) and L = MSE / Var(y) with the head held constant
    # bins, 5 bins and no split term: chosen on regress_av's validation split (docs/regression.md)
    regression_scores: Literal["bins", "error"] = "bins"
    regression_bins: int = 5

    def validate(self, where: str) -> None:
        check_positive(self.start_epoch, f"{where}.start_epoch", allow_zero=True)
        check_positive(self.lambda_mod, f"{where}.lambda_mod", allow_zero=True)
        if self.split_ce is not None:
            check_positive(self.split_ce, f"{where}.split_ce", allow_zero=True)
        if not 0.0 <= self.ce_to_encoders <= 1.0:
            raise ConfigError(
                f"{where}.ce_to_encoders: got {self.ce_to_encoders!r}; expected 0 <= share <= 1"
            )
        for name in (
            "latent_dim",
            "pam_every",
            "decoupler_budget",
            "decoupler_lr",
            "dap_lr",
            "label_head_lr",
        ):
            check_positive(getattr(self, name), f"{where}.{name}")
        check_positive(self.dap_steps, f"{where}.dap_steps", allow_zero=True)
        if self.dap_temperature != "auto":
            check_positive(float(self.dap_temperature), f"{where}.dap_temperature")
        check_positive(self.dap_auto_scale, f"{where}.dap_auto_scale")
        if not 0.0 <= self.centroid_momentum < 1.0:
            raise ConfigError(
                f"{where}.centroid_momentum: got {self.centroid_momentum!r}; expected 0 <= m < 1"
            )
        if self.mask_share is not None and not 0.0 < self.mask_share < 1.0:
            raise ConfigError(
                f"{where}.mask_share: got {self.mask_share!r}; expected 0 < share < 1 or null"
            )
        for name in ("pdm_batch_fraction", "aux_batch_fraction"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ConfigError(f"{where}.{name}: got {value!r}; expected 0 < f <= 1")
        if self.regression_bins < 2:
            raise ConfigError(f"{where}.regression_bins: got {self.regression_bins}; expected >= 2")
        if self.only_auxiliary and not self.pam:
            raise ConfigError(
                f"{where}.only_auxiliary: needs pam: true (without PAM there are no auxiliary "
                "blocks)"
            )
        # PAM is off by default: a PAM setting without it would be ignored without a word
        # (a `pam_every: 4` meant as "the paper's PAM at a quarter of its cost" would train
        # AIM without PAM at all), so it is refused.
        if not self.pam:
            if self.pam_every != 1:
                raise ConfigError(
                    f"{where}.pam_every: got {self.pam_every}, but pam is false (the default); "
                    "pam_every sets how often PAM runs: add pam: true"
                )
            if self.mask_hard:
                raise ConfigError(
                    f"{where}.mask_hard: got true, but pam is false (the default); the mask "
                    "is PAM's: add pam: true"
                )
            # the decoupler's and the auxiliary passes' settings change nothing without PAM;
            # they are said, not refused: the field's configs set some of them on AIM w/o PAM
            ignored = [
                f"{name}={getattr(self, name)!r}"
                for name in PAM_ONLY
                if getattr(self, name) != AIMOptions.__dataclass_fields__[name].default
            ]
            if ignored:
                log.warning(
                    "%s: %s set, but pam is false (the default): PAM's settings change nothing "
                    "without it; add pam: true to run PAM",
                    where,
                    ", ".join(ignored),
                )


# options that only PAM (the decoupler, Eqs. 7-8, and the auxiliary blocks, Eqs. 9-13) reads
PAM_ONLY = (
    "latent_dim",
    "decoupler",
    "decoupler_budget",
    "decoupler_init",
    "decoupler_lr",
    "mask_share",
    "recon_loss",
    "pdm_during_modulation",
    "pdm_batch_fraction",
    "aux_batch_fraction",
    "aux_input_grad",
)


class LabelHeads(nn.Module):
    """AIM-label: ``Linear(C_d, K)`` per (modality, depth) on pooled block outputs (and the
    regression heads of ``regression_scores: error``: ``Linear(C_d, T)``)."""

    def __init__(self, model: MultimodalModel, num_classes: int) -> None:
        super().__init__()
        self.heads = nn.ModuleDict()
        for m, enc in model.encoders.items():
            info = enc.feature_info(model.input_shapes[m])
            self.heads[m] = nn.ModuleList(nn.Linear(i.channels, num_classes) for i in info)

    def head(self, m: str, d: int) -> nn.Linear:
        """The linear head of block d (0-based) of modality m."""
        return cast(nn.Linear, self.heads.get_submodule(f"{m}.{d}"))


class SplitCalibration(nn.Module):
    """A regression's split parts read as predictions (``split_ce``): modality m's own
    prediction is ``a_m * head_m(f_m) + c_m``, with ``a_m``, ``c_m`` learned per target
    (started at ``a = M``, ``c = 0``: equal shares). The parts ``head_m(f_m)`` sum to the fused
    prediction, so each is a *share* of it: regressing the target with the part itself would
    double-count it in the sum, and with ``M head_m(f_m)`` would force equal shares (the fused
    prediction an unweighted mean of the modalities, the weak one's errors in it at full
    weight). Calibrated, each encoder still learns to regress through the fused head's own
    weights for it, and the head keeps weighting the modalities as the fused loss asks."""

    def __init__(self, modalities: list[str], outputs: int) -> None:
        super().__init__()
        self.modalities = list(modalities)
        self.scale = nn.Parameter(torch.full((len(modalities), outputs), float(len(modalities))))
        self.shift = nn.Parameter(torch.zeros(len(modalities), outputs))

    def forward(self, split: dict[str, Tensor]) -> dict[str, Tensor]:
        return {m: split[m] * self.scale[j] + self.shift[j] for j, m in enumerate(self.modalities)}


def _need(x: Tensor | None) -> Tensor:
    """A product of the decoupler that this pass asked for (``Decoupled`` leaves the others
    None)."""
    assert x is not None
    return x


def _sub_batch(fraction: float, batch: int) -> int:
    """The first ``ceil(fraction * batch)`` samples of an already shuffled batch: an unbiased
    estimate of the batch mean at ``fraction`` of the cost. At least two samples (where the
    batch has them): BatchNorm in training mode needs two values per channel."""
    return max(min(2, batch), math.ceil(fraction * batch))


def _scale_grad(x: Tensor, w: float) -> Tensor:
    """``x`` in the forward pass; ``w`` times the incoming gradient in the backward pass."""
    if w == 0.0:
        return x.detach()
    return x.detach() + w * (x - x.detach())


class _Step:
    """What one training step collects per depth and modality before Eqs. 11-15 combine it."""

    def __init__(self, depth: int, modalities: int, device: torch.device) -> None:
        self.s = torch.zeros(depth, modalities, device=device)  # Eq. 9, original blocks
        self.s_aux = torch.zeros_like(self.s)  # Eq. 9, auxiliary blocks
        self.losses: list[list[Tensor]] = [[] for _ in range(depth)]  # Eq. 10, original
        self.losses_aux: list[list[Tensor]] = [[] for _ in range(depth)]  # Eq. 10, auxiliary
        self.aux_of: list[list[int]] = [[] for _ in range(depth)]  # their modalities' indices
        self.pdm: list[Tensor] = []  # Eq. 8 per block
        self.label: list[Tensor] = []  # AIM-label's per-depth heads
        # scalar diagnostics, kept on the device until one transfer per step
        self.diagnostics: dict[str, list[Tensor]] = {}

    def diag(self, name: str, value: Tensor) -> None:
        self.diagnostics.setdefault(name, []).append(value.detach())


class AIM(Method):
    """Adaptive Intra-Network Modulation (DAP + PAM + DAM)."""

    name = "aim"
    description = "AIM: depth-adaptive prototypes, parameter decoupling, PAM + DAM (2508.19769)"
    Options = AIMOptions
    min_modalities = 2
    needs_intermediates = True
    # regression: the task loss, split_ce per modality's part of the prediction, and the
    # blocks scored by target bins or by their own error (regression_scores, docs/regression.md)
    supports_regression = True

    def __init__(self, options: AIMOptions | None = None) -> None:
        super().__init__(options)
        self.dap: DepthAdaptivePrototypes | None = None
        self.centroids: CentroidPrototypes | None = None
        self.decoupler: Decoupler | None = None
        self.label_heads: LabelHeads | None = None
        self.regression_heads: LabelHeads | None = None  # regression_scores: error
        self.calibration: SplitCalibration | None = None  # a regression's split_ce
        self.edges: Tensor | None = None  # a regression's target-bin edges (bins mode)
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self._protos: dict[str, list[Tensor]] | None = None
        self.means = EpochMeans()
        self._dap_last: dict[str, float] = {}
        self._pam_step = False
        # Eq. 12's auxiliary scores s~ [D, M] of the last step that ran the auxiliary blocks
        self._s_aux = torch.zeros(0)
        self._has_aux = torch.zeros(0)

    # -- construction -----------------------------------------------------------------------
    def check(self, model: MultimodalModel, fusion: str) -> None:
        super().check(model, fusion)
        depths = {m: e.depth for m, e in model.encoders.items()}
        if len(set(depths.values())) != 1:
            raise CapabilityError(
                f"method 'aim' needs every encoder to have the same number of blocks D (Eq. 14 "
                f"compares modalities depth by depth); got {depths}. Set the encoders' depth "
                "(resnet18: 4; transformer: layers; mlp: len(hidden)) to one value."
            )
        split = self.options.split_ce
        if split is not None and split > 0 and not model.fusion.splittable:
            raise CapabilityError(
                f"method 'aim': split_ce needs a fusion whose logits split exactly per modality "
                f"(concat or sum); got {fusion!r}. Set split_ce: 0 (or leave it unset) for "
                f"{fusion!r}"
            )
        if all(is_frozen(b) for e in model.encoders.values() for b in e.blocks):
            raise CapabilityError(
                "method 'aim' modulates the encoders' blocks, and every block of every encoder "
                "is frozen (freeze: true): nothing would train but the head. Unfreeze some "
                "blocks (freeze: N keeps blocks 1..N frozen), or use joint training"
            )
        if self.task.regression and self.options.prototypes == "dap":
            raise CapabilityError(
                "method 'aim': prototypes: dap trains input-space prototypes the model must "
                "classify as their class (Eq. 3), which a regression has not; use prototypes: "
                "centroid (the target's quantile bins as classes) or regression_scores: error"
            )
        if (
            self.task.regression
            and self.options.regression_scores == "error"
            and (self.options.scores == "label")
        ):
            raise CapabilityError(
                "method 'aim': scores: label (AIM-label) and regression_scores: error both "
                "replace the prototypes with per-depth heads; choose one"
            )
        missing = [m for m in model.modalities if m not in model.input_shapes]
        if missing:
            raise CapabilityError(
                f"method 'aim' needs the per-sample input shape of {missing} for its prototypes; "
                "build the model with mmbalance.build_model (it records them)"
            )

    def build(self, model: MultimodalModel) -> None:
        if self.task.regression and self.split_weight(model) > 0:
            self.calibration = SplitCalibration(model.modalities, model.head.out_features)

    def setup(self, model: MultimodalModel, optimizer: torch.optim.Optimizer) -> None:
        o = self.options
        device = next(model.parameters()).device
        # a regression's prototypes (and AIM-label's heads) classify the target's bins
        num_classes = o.regression_bins if self.task.regression else model.head.out_features
        if self.task.regression and o.regression_scores == "error":
            self.regression_heads = LabelHeads(model, model.head.out_features).to(device)
            self.optimizers["label_heads"] = torch.optim.Adam(
                self.regression_heads.parameters(), lr=o.label_head_lr
            )
        elif o.scores == "prototype" and o.prototypes == "dap":
            self.dap = DepthAdaptivePrototypes(model.input_shapes, num_classes).to(device)
            self.optimizers["dap"] = torch.optim.Adam(self.dap.parameters(), lr=o.dap_lr)
        elif o.scores == "prototype":
            self.centroids = CentroidPrototypes(num_classes, o.centroid_momentum)
        else:
            self.label_heads = LabelHeads(model, num_classes).to(device)
            self.optimizers["label_heads"] = torch.optim.Adam(
                self.label_heads.parameters(), lr=o.label_head_lr
            )
        # [D, M]: 1 where a block has an auxiliary block (PAM on, the block not frozen)
        self._has_aux = torch.tensor(
            [
                [float(o.pam and not is_frozen(e.blocks[d])) for e in model.encoders.values()]
                for d in range(next(iter(model.encoders.values())).depth)
            ],
            device=device,
        )
        frozen = [
            f"{m} block {d + 1}"
            for m, e in model.encoders.items()
            for d, b in enumerate(e.blocks)
            if is_frozen(b)
        ]
        if frozen and o.pam:
            log.info("aim: frozen, so without an auxiliary block (PAM): %s", ", ".join(frozen))
        if o.pam:
            self.decoupler = Decoupler(
                model,
                o.latent_dim,
                o.decoupler,
                o.decoupler_budget,
                o.decoupler_init,
                o.mask_share,
                o.mask_hard,
            ).to(device)
            self.optimizers["decoupler"] = torch.optim.Adam(
                self.decoupler.parameters(), lr=o.decoupler_lr
            )

    def on_fit_start(self, state: TrainState) -> None:
        if self.task.regression and self.regression_heads is None and self.edges is None:
            # the pseudo-classes: quantile bins of the training targets (fixed for the run)
            targets = state.loaders["train"].dataset.labels  # type: ignore[attr-defined]
            self.edges = AF.quantile_edges(targets, self.options.regression_bins)
        # A resumed run drops orthogonality rows of epochs it will redo.
        path = orthogonality_path(state.run_dir)
        if path.is_file():
            keep = [
                r for r in path.read_text().splitlines() if json.loads(r)["epoch"] < state.epoch
            ]
            path.write_text("".join(r + "\n" for r in keep))
        if self.dap is not None and not bool(self.dap.ready):
            # One streaming pass over the (unshuffled) training split: Xbar^{m,k} of Eq. 4.
            self.dap.fit_class_means(state.loaders["train"], self.options.dap_init)

    # -- per step ---------------------------------------------------------------------------
    def forward(
        self, model: MultimodalModel, batch: dict[str, Any], state: TrainState
    ) -> ModelOutput:
        if self.dap is not None:
            # Eq. 6 with the current model: the prototypes are constants in every loss below.
            self._protos = self.dap.propagate(model, self.options.dap_distance)
        w = self.options.ce_to_encoders
        if w == 1.0 or state.epoch < self.options.start_epoch:
            return model(batch["inputs"], return_intermediates=True)
        # Phase 2 with ce_to_encoders < 1: the head sees the same features, but the fused
        # cross-entropy's gradient into the encoders is scaled by w (L_mod's is not).
        features, inter = model.encode(batch["inputs"], return_intermediates=True)
        scaled = {m: _scale_grad(f, w) for m, f in features.items()}
        out = model.classify(scaled)
        out.intermediates = inter
        return out

    def _logits(
        self, model: MultimodalModel, m: str, d: int, h: Tensor, frames: int, y: Tensor
    ) -> Tensor:
        """Logits of a block output at depth d: prototype distances (Eqs. 9-10) or, for
        AIM-label, the depth's linear head used as a constant."""
        enc = model.encoders[m]
        if self.label_heads is not None:
            head = self.label_heads.head(m, d)
            return F.linear(enc.pool(h, frames), head.weight.detach(), head.bias.detach())
        rep = represent(enc, h, frames, self.options.dap_distance)
        if self.centroids is not None:
            protos = self.centroids.get(m, d, rep, y)
        else:
            assert self._protos is not None
            protos = self._protos[m][d]
        o = self.options
        tau = o.dap_temperature
        if tau == "auto":  # prototypes are identical on every rank, and so is tau
            tau = AF.auto_temperature(protos, o.dap_auto_scale)
        return AF.prototype_logits(rep, protos, tau)

    def _score_loss(
        self, model: MultimodalModel, m: str, d: int, h: Tensor, frames: int, y: Tensor
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Eqs. 9-10 of a block output: ``(s, L, logits)``, the logits None for a regression
        scored by its own error (``regression_scores: error``: ``y`` is then the target)."""
        if self.regression_heads is None:
            logits = self._logits(model, m, d, h, frames, y)
            s, loss = AF.score_and_loss(logits, y)
            return s, loss, logits
        head = self.regression_heads.head(m, d)
        enc = model.encoders[m]
        pred = F.linear(enc.pool(h, frames), head.weight.detach(), head.bias.detach())
        s, loss = AF.regression_score_and_loss(pred, y)
        return s, loss, None

    def loss(
        self, output: ModelOutput, batch: dict[str, Any], state: TrainState
    ) -> dict[str, Tensor]:
        o = self.options
        model = state.model
        target = batch["label"]
        # what the blocks are scored against: the classes, a regression's target bins, or
        # (regression_scores: error) the target itself
        y = target if self.edges is None else AF.target_bins(target, self.edges)
        modulate = state.epoch >= o.start_epoch
        # PAM's passes (auxiliary blocks, L_pdm) on one step in pam_every (the first step of
        # each cycle, counted over the whole run so a resumed run keeps the same cycle)
        self._pam_step = self.decoupler is not None and (
            state.step % o.pam_every == 0 or self._s_aux.numel() == 0
        )
        terms: dict[str, Tensor] = {"ce": self.task_loss(output.logits, target)}
        assert output.intermediates is not None
        mods = model.modalities
        step = _Step(model.encoders[mods[0]].depth, len(mods), y.device)
        updates: list[tuple[str, int, Tensor]] = []  # centroid updates, after all scoring
        for j, m in enumerate(mods):
            enc = model.encoders[m]
            inter = output.intermediates[m]
            for d, block in enumerate(enc.blocks):
                h, inp = inter.outputs[d], inter.inputs[d]
                with torch.set_grad_enabled(modulate):
                    step.s[d, j], loss_md, logits = self._score_loss(
                        model, m, d, h, inter.frames, y
                    )
                step.losses[d].append(loss_md)
                if logits is not None:
                    step.diag("saturated", AF.saturation(logits, y))
                if self.centroids is not None:
                    updates.append((m, d, represent(enc, h.detach(), inter.frames, o.dap_distance)))
                if self.label_heads is not None:
                    head = self.label_heads.head(m, d)
                    step.label.append(F.cross_entropy(head(enc.pool(h.detach(), inter.frames)), y))
                if self.regression_heads is not None:  # trained on the side, on detached output
                    head = self.regression_heads.head(m, d)
                    pooled = enc.pool(h.detach(), inter.frames)
                    step.label.append(self.task.criterion(head(pooled), target))
                if not self._pam_step or not self._has_aux[d, j]:
                    continue
                with torch.set_grad_enabled(modulate):
                    step.s_aux[d, j], loss_aux = self._auxiliary(model, m, d, block, inp, inter, y)
                step.losses_aux[d].append(loss_aux)
                step.aux_of[d].append(j)
                if not modulate or o.pdm_during_modulation:
                    step.pdm.append(self._pdm(model, m, d, block, inp, inter.frames, y))
        if self.centroids is not None:
            for m, d, rep in updates:  # this batch shapes the next step's prototypes
                self.centroids.update(m, d, rep, y)
        if step.pdm:
            terms["pdm"] = torch.stack(step.pdm).sum()
        if step.label:
            terms["label_heads"] = torch.stack(step.label).sum()
        mod, weights = self._modulation(step)
        if modulate:
            terms["mod"] = o.lambda_mod * mod
            split = self.split_weight(model)
            if split > 0:
                terms["split_ce"] = split * self._split_ce(output, target)
        self._record(mods, step, weights)
        return terms

    def _auxiliary(
        self,
        model: MultimodalModel,
        m: str,
        d: int,
        block: nn.Module,
        inp: Tensor,
        inter: Any,
        y: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """Score and loss of the auxiliary block E~_d^m (Eq. 7; Eqs. 9-10 on its output): the
        decoupler is a constant here, so the loss reaches W through it (Eq. 13) and only W."""
        assert self.decoupler is not None
        dec = self.decoupler.decouple(
            m, d, block, detach_params=True, detach_weights=False, need_comp=False
        )
        n = _sub_batch(self.options.aux_batch_fraction, y.shape[0])
        aux_in = inp if self.options.aux_input_grad else inp.detach()
        aux_in = aux_in[: n * inter.frames]  # frames are folded into rows
        aux_out = call_with_weights(block, {k: _need(x.aux) for k, x in dec.items()}, aux_in)
        s, loss, _ = self._score_loss(model, m, d, aux_out, inter.frames, y[:n])
        return s, loss

    def cost_cycle(self) -> int:
        return self.options.pam_every if self.options.pam else 1

    def split_weight(self, model: MultimodalModel) -> float:
        """``split_ce`` for this model: the option, or when unset 1.0 where the fusion splits
        exactly per modality and 0.0 where it does not, or for a regression (where the split
        term measured below AIM without it on validation: docs/regression.md)."""
        if self.options.split_ce is not None:
            return self.options.split_ce
        return 1.0 if model.fusion.splittable and not self.task.regression else 0.0

    def _split_ce(self, output: ModelOutput, y: Tensor) -> Tensor:
        """``split_ce``: sum over modalities of the task loss of the fused head's exact split
        ``head_m(f_m)`` (concat: ``f_m W_m^T + b / M``): cross-entropy, or for a regression
        each modality's calibrated part (:class:`SplitCalibration`) regressing the target
        alone."""
        assert output.split_logits is not None  # check() refused fusions without an exact split
        split = output.split_logits
        if self.calibration is not None:
            split = self.calibration(split)
        return torch.stack([self.task_loss(z, y) for z in split.values()]).sum()

    def _pdm(
        self,
        model: MultimodalModel,
        m: str,
        d: int,
        block: nn.Module,
        inp: Tensor,
        frames: int,
        y: Tensor,
    ) -> Tensor:
        """``L_pdm = L_g + L_re`` of block d of m (Eq. 8). W, I_d and the block's own 1-D
        parameters are detached: it trains the decoupler and nothing else."""
        o = self.options
        assert self.decoupler is not None
        n = _sub_batch(o.pdm_batch_fraction, y.shape[0])
        dec = self.decoupler.decouple(
            m, d, block, detach_params=False, detach_weights=True, need_aux=False
        )
        comp_in = inp.detach()[: n * frames]  # frames are folded into rows
        comp_out = call_with_weights(
            block, {k: _need(x.comp) for k, x in dec.items()}, comp_in, detach_rest=True
        )
        _, l_g, _ = self._score_loss(model, m, d, comp_out, frames, y[:n])
        params = dict(block.named_parameters())
        l_re = torch.stack(
            [
                AF.reconstruction_loss(params[k].detach(), _need(x.recon), o.recon_loss)
                for k, x in dec.items()
            ]
        ).mean()
        return l_g + l_re

    def _modulation(self, step: _Step) -> tuple[Tensor, dict[str, Tensor]]:
        """``L_mod`` (Eqs. 11, 12, 14, 15) and its weights (alpha, rho, rho~).

        On a step without PAM's passes (``pam_every`` > 1), Eq. 12 uses the auxiliary scores
        of the last step that had them, so the original blocks keep their weight, and Eq. 11
        has no auxiliary term; on a PAM step the auxiliary terms count ``pam_every`` times."""
        o = self.options
        # DDP: the global batch's scores, so every rank weighs the losses alike (Eqs. 12, 14)
        s = dist.reduce_mean(step.s)
        if self._pam_step:
            self._s_aux = dist.reduce_mean(step.s_aux)
        s_aux = self._s_aux if self.decoupler is not None else torch.zeros_like(s)
        depth = s.shape[0]
        alpha = AF.dam_alpha(s) if o.dam else torch.ones(depth, device=s.device)
        # logged as Eq. 14 defines it (Fig. 6); the normalised weights only enter Eq. 15
        weight = AF.normalize_alpha(alpha) if o.dam and o.dam_normalize else alpha
        rho, rho_aux = torch.zeros_like(s), torch.zeros_like(s)
        for d in range(depth):
            r, r_aux = AF.pam_weights(
                s[d],
                s_aux[d] if self.decoupler is not None else None,
                self._has_aux[d] if self.decoupler is not None else None,
            )
            rho[d] = r
            if r_aux is not None:
                rho_aux[d] = r_aux
        weights_orig = torch.zeros_like(rho) if o.only_auxiliary else rho
        depth_losses = torch.stack(
            [
                AF.pam_loss(
                    torch.stack(step.losses[d]),
                    weights_orig[d],
                    torch.stack(step.losses_aux[d]) if step.losses_aux[d] else None,
                    rho_aux[d][step.aux_of[d]] if step.losses_aux[d] else None,
                    float(o.pam_every),
                )
                for d in range(depth)
            ]
        )
        weights = {"s": s, "saux": s_aux, "alpha": alpha, "rho": rho, "rhoaux": rho_aux}
        return AF.modulation_loss(weight, depth_losses), weights

    def _record(self, mods: list[str], step: _Step, weights: dict[str, Tensor]) -> None:
        """Accumulate the per-step diagnostics of spec s. 8 (averaged per epoch)."""
        add = self.means.add
        names = list(step.diagnostics)
        means = [torch.stack(step.diagnostics[k]).float().mean() for k in names]
        # one device-to-host transfer for all of them
        host = {k: t.detach().cpu().tolist() for k, t in weights.items()}
        # DDP: the global batch's values (each rank saw a shard)
        scalars = dist.reduce_mean(torch.stack(means)).cpu().tolist() if means else []
        for d in range(len(host["alpha"])):
            add(f"alpha_d{d + 1}", host["alpha"][d])
            for j, m in enumerate(mods):
                for key in ("s", "rho") + (("saux", "rhoaux") if self.decoupler else ()):
                    add(f"{key}_{m}_d{d + 1}", host[key][d][j])
        for k, v in zip(names, scalars, strict=True):
            add(k, v)
        self.means.step()

    def on_step_end(self, state: TrainState) -> None:
        if self._pam_step:  # the decoupler has a gradient on PAM's steps only
            self.optimizers["decoupler"].step()
        if "label_heads" in self.optimizers:
            self.optimizers["label_heads"].step()
        if self.dap is not None and state.epoch >= self.options.start_epoch:
            self._dap_last = self.dap.step(state.model, self.optimizers["dap"])

    def on_epoch_end(self, state: TrainState) -> dict[str, float]:
        if self.dap is not None and state.epoch < self.options.start_epoch:
            for _ in range(self.options.dap_steps):  # phase 1: DAP with the model frozen
                self._dap_last = self.dap.step(state.model, self.optimizers["dap"])
        if (self.dap is not None or self.centroids is not None) and dist.is_main():
            matrices = self.orthogonality(state.model)
            row = {
                "epoch": state.epoch,
                "matrices": {m: [o.tolist() for o in os] for m, os in matrices.items()},
            }
            with orthogonality_path(state.run_dir).open("a") as fh:
                fh.write(json.dumps(row) + "\n")
        out = self.means.pop()
        out.update(self._dap_last)
        if self.decoupler is not None:
            out.update(self.decoupler.health(state.model))
        out.update(self.prototype_accuracy(state.model))
        out["phase"] = 2.0 if state.epoch >= self.options.start_epoch else 1.0
        return out

    # -- diagnostics ------------------------------------------------------------------------
    @torch.no_grad()
    def prototype_accuracy(self, model: MultimodalModel) -> dict[str, float]:
        """``proto_cls_<m>``: share of the K last-depth prototypes of m that m's unimodal head
        classifies as their own class (prototypes that stay "classified as their class").

        Centroid prototypes with ``pooled`` features only: their last depth is the feature the
        heads read. (DAP logs the same property as ``dap_cls``, Eq. 3's loss.)
        """
        if (
            self.centroids is None
            or self.options.dap_distance != "pooled"
            or self.edges is not None
        ):
            return {}  # (a regression's bins are no class the heads know)
        heads = model.unimodal_heads
        if heads is None:
            return {}
        out = {}
        for m, per_depth in self.centroids.as_lists().items():
            last = per_depth[-1].to(next(heads.parameters()).device)
            logits = heads({m: last})[m]
            target = torch.arange(last.shape[0], device=last.device)
            out[f"proto_cls_{m}"] = float((logits.argmax(1) == target).float().mean())
        return out

    @torch.no_grad()
    def orthogonality(self, model: MultimodalModel) -> dict[str, list[Tensor]]:
        """Eq. 16 for every (modality, depth): ``[K, K]`` cosine similarity of the prototypes."""
        if self.dap is not None:
            protos = self.dap.propagate(model, "flat")
        elif self.centroids is not None:
            protos = self.centroids.as_lists()
        else:
            return {}
        return {m: [AF.orthogonality(p) for p in ps] for m, ps in protos.items()}

    # -- exact resume ---------------------------------------------------------------------------
    # DAP, the decoupler and AIM-label's heads are submodules (in nn.Module.state_dict); what
    # is not a module travels as extra state.
    def get_extra_state(self) -> dict[str, Any]:
        return {
            "centroids": self.centroids.state_dict() if self.centroids is not None else None,
            "optimizers": {k: opt.state_dict() for k, opt in self.optimizers.items()},
            "dap_last": dict(self._dap_last),
            "s_aux": self._s_aux,
            "edges": self.edges,
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        if self.centroids is not None:
            self.centroids.load_state_dict(state["centroids"])
        for k, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][k])
        self._dap_last = dict(state["dap_last"])
        # checkpoints written before pam_every have none: the next step then runs PAM's passes
        self._s_aux = state.get("s_aux", torch.zeros(0))
        self.edges = state.get("edges", self.edges)


def orthogonality_path(run_dir: Path) -> Path:
    """Where AIM writes the per-epoch prototype orthogonality matrices (Eq. 16, Fig. 4)."""
    return Path(run_dir) / "aim_orthogonality.jsonl"
