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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from mmbalance.aim.blocks import decoupled_parameter_names
from mmbalance.errors import CapabilityError
from mmbalance.models.multimodal import MultimodalModel

DecouplerMode = Literal["rowwise", "layer"]


def _view(shape: tuple[int, ...], mode: DecouplerMode) -> tuple[int, int]:
    """(rows, fan_in) a weight of ``shape`` is viewed as."""
    numel = 1
    for s in shape:
        numel *= s
    return (shape[0], numel // shape[0]) if mode == "rowwise" else (1, numel)


def layer_decoupler_size(shape: tuple[int, ...], latent: int, mode: DecouplerMode) -> int:
    """Parameters of one layer's decoupler: ``(fan_in*L + L) + (L*L + L) + (L*fan_in + fan_in)``."""
    _, fan_in = _view(shape, mode)
    return 2 * fan_in * latent + latent + latent * latent + latent + fan_in


@dataclass
class Decoupled:
    """The products of Eqs. 7-8 for one weight tensor (each shaped like the weight)."""

    mask: Tensor  # w, [rows, L]
    aux: Tensor | None = None  # theta_b
    comp: Tensor | None = None  # theta_g
    recon: Tensor | None = None  # Psi(Phi_lat(theta))


class LayerDecoupler(nn.Module):
    """Phi_lat, Phi_mask and Psi for one weight tensor."""

    def __init__(self, shape: tuple[int, ...], latent: int, mode: DecouplerMode) -> None:
        super().__init__()
        self.shape = tuple(shape)
        self.rows, fan_in = _view(self.shape, mode)
        self.phi_lat = nn.Linear(fan_in, latent)
        self.phi_mask = nn.Linear(latent, latent)
        self.psi = nn.Linear(latent, fan_in)

    def forward(
        self, weight: Tensor, *, detach_params: bool, need_aux: bool = True, need_comp: bool = True
    ) -> Decoupled:
        """Decouple ``weight``.

        ``detach_params=True`` treats the decoupler as constants (the auxiliary-block loss of
        Eq. 13 must reach ``weight`` through it without training it); detach ``weight`` at the
        call site for ``L_pdm``, which must train the decoupler only.
        """

        def p(t: Tensor) -> Tensor:
            return t.detach() if detach_params else t

        flat = weight.reshape(self.rows, -1)
        lat = F.linear(flat, p(self.phi_lat.weight), p(self.phi_lat.bias))
        mask = F.linear(lat, p(self.phi_mask.weight), p(self.phi_mask.bias)).sigmoid()

        def psi(z: Tensor) -> Tensor:
            return F.linear(z, p(self.psi.weight), p(self.psi.bias)).reshape(self.shape)

        out = Decoupled(mask)
        if need_aux:
            out.aux = psi(lat * mask)
        if need_comp:  # the complementary branch and the reconstruction both feed L_pdm
            out.comp = psi(lat * (1 - mask))
            out.recon = psi(lat)
        return out


class Decoupler(nn.Module):
    """One :class:`LayerDecoupler` per decoupled weight of every block of every encoder.

    ``layers[m][d][key]``; ``key`` is the parameter name with dots replaced (ModuleDict keys
    cannot hold dots) and ``names[m][d][key]`` the original name.
    """

    def __init__(
        self, model: MultimodalModel, latent: int, mode: DecouplerMode, budget: int
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
                keyed = {n.replace(".", "__"): n for n in decoupled_parameter_names(block)}
                per_depth.append(
                    nn.ModuleDict(
                        {
                            k: LayerDecoupler(tuple(params[n].shape), latent, mode)
                            for k, n in keyed.items()
                        }
                    )
                )
                self.names[m].append(keyed)
            self.layers[m] = per_depth

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
            out[name] = self.layers[m][d][key](w, detach_params=detach_params, **kw)
        return out


def decoupler_size(model: MultimodalModel, latent: int, mode: DecouplerMode) -> int:
    """Parameters the decoupler of ``model`` would have (computed without building it)."""
    total = 0
    for enc in model.encoders.values():
        for block in enc.blocks:
            for _, p in block.named_parameters():
                if p.dim() >= 2:
                    total += layer_decoupler_size(tuple(p.shape), latent, mode)
    return total
