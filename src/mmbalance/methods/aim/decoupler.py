"""The Parameter Decoupling Mechanism (PDM, Sec. III-D1, Eqs. 7-8, Fig. 3).

For one weight tensor ``W`` of a block (a conv kernel or a linear matrix):

    theta_lat = Phi_lat(W)                       (encode into an L-dim latent)
    w         = sigmoid(Phi_mask(theta_lat))     (mask, same size as theta_lat)
    theta_b   = Psi(theta_lat * w)               (auxiliary, under-optimised part, Eq. 7)
    theta_g   = Psi(theta_lat * (1 - w))         (complementary, well-performing part)
    recon     = Psi(theta_lat)                   (for L_re, Eq. 8)

``rowwise`` (default) views ``W`` as ``[out, fan_in]`` and shares the three maps across rows:
``Phi_lat: Linear(fan_in, L)``, ``Phi_mask: Linear(L, L)``, ``Psi: Linear(L, fan_in)``.
``layer`` is the paper's literal reading, ``W`` flattened to one vector of ``P`` numbers,
``Linear(P, L)``: 1.2 B weights for one full-size ResNet18 stage-4 conv, so it is only built when
the whole decoupler fits ``budget`` parameters (spec s. 3).

Two decisions make the mechanism work as Sec. III-D1 describes it (``docs/aim-investigation.md``):

- ``init="svd"``: ``Phi_lat`` starts as an orthonormal basis ``Q`` of W's row space (its right
  singular vectors, completed to L columns) and ``Psi`` as ``Q^T``, so ``Psi(Phi_lat(W)) = W``
  from the first step and the latent coordinates are W's principal directions. A randomly
  initialised linear auto-encoder (``init="random"``, the literal reading) starts with a relative
  reconstruction error above 1 and, trained at the decoupler's pace, never gets far below it:
  ``theta_b`` and ``theta_g`` are then unrelated to W and Eq. 13 sends W noise.
- ``mask_share=0.5``: the mask logits ``Phi_mask(theta_lat)`` are centred per row before the
  sigmoid (``Phi_mask`` followed by a fixed centring, still a linear map), so about that share of
  each row's latent coordinates goes to the auxiliary block and ``L_g`` can only choose *which*
  ones; ``Phi_mask`` reads the row's latent at unit RMS (weights are small numbers: raw, they
  barely move the logits). Without it the cheapest way to lower ``L_g`` is ``w -> 0``
  everywhere (theta_g = W), and behind BatchNorm a uniformly scaled W performs the same, so the
  mask has no reason to move off sigmoid(0) (measured: density 0.44-0.50 with std 0.02).
  ``None`` is the literal free mask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmbalance.errors import CapabilityError
from mmbalance.methods.aim.blocks import decoupled_parameter_names
from mmbalance.models.multimodal import MultimodalModel

DecouplerMode = Literal["rowwise", "layer"]


def _view(shape: tuple[int, ...], mode: DecouplerMode) -> tuple[int, int]:
    """(rows, fan_in) a weight of ``shape`` is viewed as."""
    numel = 1
    for s in shape:
        numel *= s
    return (shape[0], numel // shape[0]) if mode == "rowwise" else (1, numel)


def latent_width(shape: tuple[int, ...], latent: int, mode: DecouplerMode) -> int:
    """The latent a weight of ``shape`` gets: at most ``fan_in`` and, row-wise, at most the
    number of rows. A ``[rows, fan_in]`` weight has rank <= min(rows, fan_in), so a wider latent
    holds nothing more of it (with the SVD initialisation the extra coordinates of every row
    start at 0) and only costs compute: ResNet18's 64-channel stage gets 64, not 512."""
    rows, fan_in = _view(shape, mode)
    return min(latent, fan_in, rows) if mode == "rowwise" else min(latent, fan_in)


def layer_decoupler_size(shape: tuple[int, ...], latent: int, mode: DecouplerMode) -> int:
    """Parameters of one layer's decoupler: ``(fan_in*L + L) + (L*L + L) + (L*fan_in + fan_in)``
    with ``L = latent_width(shape, latent, mode)``."""
    _, fan_in = _view(shape, mode)
    latent = latent_width(shape, latent, mode)
    return 2 * fan_in * latent + latent + latent * latent + latent + fan_in


@dataclass
class Decoupled:
    """The products of Eqs. 7-8 for one weight tensor (each shaped like the weight)."""

    mask: Tensor  # w, [rows, L]
    aux: Tensor | None = None  # theta_b
    comp: Tensor | None = None  # theta_g
    recon: Tensor | None = None  # Psi(Phi_lat(theta))


class LayerDecoupler(nn.Module):
    """Phi_lat, Phi_mask and Psi for one weight tensor.

    The latent is ``latent_width``: at most ``fan_in`` and (row-wise) ``rows`` wide, W's largest
    possible rank.
    """

    def __init__(
        self,
        shape: tuple[int, ...],
        latent: int,
        mode: DecouplerMode,
        mask_share: float | None = None,
        hard: bool = False,
    ) -> None:
        super().__init__()
        self.hard = hard
        self.shape = tuple(shape)
        self.rows, fan_in = _view(self.shape, mode)
        latent = latent_width(self.shape, latent, mode)
        self.phi_lat = nn.Linear(fan_in, latent)
        self.phi_mask = nn.Linear(latent, latent)
        self.psi = nn.Linear(latent, fan_in)
        self.mask_share = mask_share

    @torch.no_grad()
    def init_from(self, weight: Tensor) -> None:
        """``Phi_lat = Q^T``, ``Psi = Q`` with ``Q`` an orthonormal basis whose leading columns
        span ``weight``'s row space (right singular vectors by decreasing singular value; any
        remaining columns complete it at random): then ``Psi(Phi_lat(W)) = W`` exactly."""
        flat = weight.detach().reshape(self.rows, -1).float().cpu()
        fan_in, latent = self.psi.out_features, self.psi.in_features
        _, _, vh = torch.linalg.svd(flat, full_matrices=False)  # [min(rows, fan_in), fan_in]
        lead = vh[:latent].T
        extra = latent - lead.shape[1]
        if extra > 0:
            g = torch.Generator().manual_seed(fan_in * 31 + latent)
            lead = torch.cat([lead, torch.randn(fan_in, extra, generator=g)], dim=1)
        q, r = torch.linalg.qr(lead)
        q = q * torch.sign(torch.diagonal(r)).clamp_min(0).mul(2).sub(1)  # keep vh's signs
        device = self.psi.weight.device
        self.phi_lat.weight.copy_(q.T.to(device))
        self.phi_lat.bias.zero_()
        self.psi.weight.copy_(q.to(device))
        self.psi.bias.zero_()

    def forward(
        self,
        weight: Tensor,
        *,
        detach_params: bool,
        need_aux: bool = True,
        need_comp: bool = True,
    ) -> Decoupled:
        """Decouple ``weight``.

        ``detach_params=True`` treats the decoupler as constants (the auxiliary-block loss of
        Eq. 13 must reach ``weight`` through it without training it); detach ``weight`` at the
        call site for ``L_pdm``, which must train the decoupler only. The gradient of
        ``theta_b`` reaches W through ``Psi``, the mask and ``Phi_lat`` alike (Eq. 13's
        ``J_pdm``, the mask's own dependence on W included).
        """

        def p(t: Tensor) -> Tensor:
            return t.detach() if detach_params else t

        flat = weight.reshape(self.rows, -1)
        lat = F.linear(flat, p(self.phi_lat.weight), p(self.phi_lat.bias))
        if self.mask_share is None:  # the literal Eq. 7
            logits = F.linear(lat, p(self.phi_mask.weight), p(self.phi_mask.bias))
        else:
            # Phi_mask reads each row's latent pattern at unit RMS: weights are ~0.01-0.1, so
            # raw they leave the mask at sigmoid(bias) and the mask learns at a crawl
            pattern = lat / lat.pow(2).mean(-1, keepdim=True).sqrt().clamp_min(1e-12)
            logits = F.linear(pattern, p(self.phi_mask.weight), p(self.phi_mask.bias))
            share = self.mask_share
            logits = logits - logits.mean(-1, keepdim=True) + math.log(share / (1 - share))
        mask = logits.sigmoid()
        if self.hard:
            mask = _hard_mask(logits, mask, self.mask_share)

        def psi(z: Tensor) -> Tensor:
            return F.linear(z, p(self.psi.weight), p(self.psi.bias)).reshape(self.shape)

        out = Decoupled(mask)
        if need_aux:
            out.aux = psi(lat * mask)
        if need_comp:  # the complementary branch and the reconstruction both feed L_pdm
            out.comp = psi(lat * (1 - mask))
            out.recon = psi(lat)
        return out


def _hard_mask(logits: Tensor, soft: Tensor, share: float | None) -> Tensor:
    """A 0/1 mask with the soft mask's gradient (straight-through): per row, the ``share`` of
    latent coordinates with the largest logits (``share`` None: the logits above 0). Then
    ``theta_b`` is W restricted to a subspace of its latent directions and ``theta_g`` to the
    rest, and Eq. 13 sends the auxiliary loss into that subspace of W alone."""
    if share is None:
        hard = (logits > 0).to(soft.dtype)
    else:
        k = max(1, round(share * logits.shape[-1]))
        top = logits.topk(k, dim=-1).indices
        hard = torch.zeros_like(soft).scatter_(-1, top, 1.0)
    return hard + soft - soft.detach()


class Decoupler(nn.Module):
    """One :class:`LayerDecoupler` per decoupled weight of every block of every encoder.

    ``layers[m][d][key]``; ``key`` is the parameter name with dots replaced (ModuleDict keys
    cannot hold dots) and ``names[m][d][key]`` the original name.
    """

    def __init__(
        self,
        model: MultimodalModel,
        latent: int,
        mode: DecouplerMode,
        budget: int,
        init: Literal["svd", "random"] = "svd",
        mask_share: float | None = 0.5,
        hard_mask: bool = False,
    ) -> None:
        super().__init__()
        size = decoupler_size(model, latent, mode)
        if size > budget:
            raise CapabilityError(
                f"method.options.decoupler: {mode!r} needs {size:,} decoupler parameters "
                f"({size * 4 / 2**30:.1f} GiB in float32) for this model, over the budget of "
                f"{budget:,} (method.options.decoupler_budget). Use decoupler: rowwise, a smaller "
                "latent_dim, or raise the budget if the memory is there."
            )
        self.mode = mode
        self.size = size
        self.layers = nn.ModuleDict()
        self.names: dict[str, list[dict[str, str]]] = {}
        for m, enc in model.encoders.items():
            per_depth = nn.ModuleList()
            self.names[m] = []
            for block in enc.blocks:
                params = dict(block.named_parameters())
                # a frozen block (the encoder's freeze option) trains nothing: no decoupler
                keyed = {
                    n.replace(".", "__"): n
                    for n in decoupled_parameter_names(block)
                    if params[n].requires_grad
                }
                layers = {
                    k: LayerDecoupler(tuple(params[n].shape), latent, mode, mask_share, hard_mask)
                    for k, n in keyed.items()
                }
                if init == "svd":
                    for k, n in keyed.items():
                        layers[k].init_from(params[n])
                per_depth.append(nn.ModuleDict(layers))
                self.names[m].append(keyed)
            self.layers[m] = per_depth

    def layer(self, m: str, d: int, key: str) -> LayerDecoupler:
        """The decoupler of weight ``key`` (its name with ``.`` as ``__``) of block d of m."""
        return cast(LayerDecoupler, self.layers.get_submodule(f"{m}.{d}.{key}"))

    def decouple(
        self,
        m: str,
        d: int,
        block: nn.Module,
        *,
        detach_params: bool,
        detach_weights: bool,
        **kw: bool,
    ) -> dict[str, Decoupled]:
        """Decouple every weight of block ``d`` of modality ``m``; keyed by parameter name."""
        params = dict(block.named_parameters())
        out = {}
        for key, name in self.names[m][d].items():
            w = params[name].detach() if detach_weights else params[name]
            out[name] = self.layer(m, d, key)(w, detach_params=detach_params, **kw)
        return out

    @torch.no_grad()
    def health(self, model: MultimodalModel) -> dict[str, float]:
        """How well the decoupler works, averaged over every decoupled weight W (logged each
        epoch; tested in ``tests/test_aim_effectiveness.py``):

        - ``recon_rel``: ``||W - Psi(Phi_lat(W))||^2 / ||W||^2`` (0 = exact; >= 1 = no better
          than predicting zero);
        - ``aux_cos``: cosine of ``theta_b`` and W (the auxiliary block is a part of W);
        - ``aux_comp_cos``: cosine of ``theta_b`` and ``theta_g`` (1 = no decoupling);
        - ``aux_norm``: ``||theta_b|| / ||W||``;
        - ``mask_density``, ``mask_std``, ``mask_extreme`` (share of mask entries < 0.1 or > 0.9);
        - ``mask_lead``: the mask's mean over the leading half of the latent coordinates (with
          the SVD initialisation, W's largest singular directions at the start): below
          ``mask_density``, the auxiliary block holds W's minor directions.
        """
        sums: dict[str, float] = {}
        count = 0
        for m, enc in model.encoders.items():
            for d, block in enumerate(enc.blocks):
                params = dict(block.named_parameters())
                for name, x in self.decouple(
                    m, d, block, detach_params=True, detach_weights=True
                ).items():
                    w = params[name].detach().flatten()
                    assert x.aux is not None and x.comp is not None and x.recon is not None
                    aux, comp = x.aux.flatten(), x.comp.flatten()
                    values = {
                        "recon_rel": float((w - x.recon.flatten()).pow(2).sum() / w.pow(2).sum()),
                        "aux_cos": float(F.cosine_similarity(aux, w, dim=0)),
                        "aux_comp_cos": float(F.cosine_similarity(aux, comp, dim=0)),
                        "aux_norm": float(aux.norm() / w.norm().clamp_min(1e-12)),
                        "mask_density": float(x.mask.mean()),
                        "mask_std": float(x.mask.std()) if x.mask.numel() > 1 else 0.0,
                        "mask_extreme": float(((x.mask < 0.1) | (x.mask > 0.9)).float().mean()),
                        "mask_lead": float(x.mask[:, : max(1, x.mask.shape[1] // 2)].mean()),
                    }
                    for k, v in values.items():
                        sums[k] = sums.get(k, 0.0) + v
                    count += 1
        return {k: v / max(count, 1) for k, v in sums.items()}


def decoupler_size(model: MultimodalModel, latent: int, mode: DecouplerMode) -> int:
    """Parameters the decoupler of ``model`` would have (computed without building it)."""
    total = 0
    for enc in model.encoders.values():
        for block in enc.blocks:
            for _, p in block.named_parameters():
                if p.dim() >= 2 and p.requires_grad:
                    total += layer_decoupler_size(tuple(p.shape), latent, mode)
    return total
