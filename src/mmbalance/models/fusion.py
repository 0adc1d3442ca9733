"""Fusion modules: concat, sum, FiLM and gated, for 2..M modalities.

Every fusion maps the per-modality features ``{m: [B, d_m]}`` to one fused vector
``[B, out_dim]``; the model's ``head`` (a Linear) turns it into logits. Concat and sum are
linear in each modality, so they can also *split* the fused logits exactly into per-modality
contributions (the field's "unimodal logits"); FiLM and gated cannot, which is why the model
also carries fusion-independent unimodal heads (see :mod:`mmbalance.models.multimodal`).

Generalisations beyond the two-modality originals (OGM-GE's ``fusion_modules.py``):
- FiLM: the ``primary`` modality is modulated by a FiLM layer conditioned on the concatenation
  of all other modalities. For M = 2 this is the original (x modulated by y).
- Gated: the ``primary`` modality's projection, through a sigmoid, gates the sum of the other
  modalities' projections. For M = 2 this is the original ``x_gate`` variant.
Both need M >= 2; concat and sum accept M >= 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mmbalance.errors import ConfigError


@dataclass
class FusionConfig:
    """Options of every fusion (``model.fusion_options``)."""

    hidden: int = 256  # projection width of sum / gated
    primary: str | None = None  # FiLM: modulated modality; gated: gating modality (default first)


class Fusion(nn.Module):
    """Base class: ``forward(features) -> fused``; ``out_dim`` is the fused width."""

    name: str = "base"
    min_modalities: int = 1
    splittable: bool = False  # fused logits decompose exactly into per-modality terms
    out_dim: int

    def __init__(self, dims: dict[str, int]) -> None:
        super().__init__()
        if len(dims) < self.min_modalities:
            raise ConfigError(
                f"model.fusion: {type(self).__name__} needs at least {self.min_modalities} "
                f"modalities; got {len(dims)} ({', '.join(dims)}). Use 'concat' or 'sum'."
            )
        self.modalities = list(dims)

    def split(self, features: dict[str, Tensor], head: nn.Linear) -> dict[str, Tensor] | None:
        """Per-modality logits that sum to the fused logits, where the fusion allows it."""
        return None


class ConcatFusion(Fusion):
    """``cat(f_1, ..., f_M)`` in the modalities' order; the head is ``Linear(sum d_m, K)``."""

    name = "concat"

    splittable = True

    def __init__(self, dims: dict[str, int], cfg: FusionConfig | None = None) -> None:
        super().__init__(dims)
        self.dims = dict(dims)
        self.out_dim = sum(dims.values())

    def forward(self, features: dict[str, Tensor]) -> Tensor:
        return torch.cat([features[m] for m in self.modalities], dim=1)

    def split(self, features: dict[str, Tensor], head: nn.Linear) -> dict[str, Tensor]:
        # out_m = f_m W[:, slice_m]^T + b / M (BalanceBenchmark's bias/M convention).
        out, start = {}, 0
        bias = head.bias / len(self.modalities) if head.bias is not None else 0.0
        for m in self.modalities:
            stop = start + self.dims[m]
            out[m] = features[m] @ head.weight[:, start:stop].T + bias
            start = stop
        return out


class SumFusion(Fusion):
    """``sum_m Linear_m(f_m)``; with the linear head this equals OGM-GE's ``fc_x(a) + fc_y(v)``."""

    name = "sum"

    splittable = True

    def __init__(self, dims: dict[str, int], cfg: FusionConfig | None = None) -> None:
        super().__init__(dims)
        cfg = cfg or FusionConfig()
        self.proj = nn.ModuleDict({m: nn.Linear(d, cfg.hidden) for m, d in dims.items()})
        self.out_dim = cfg.hidden

    def forward(self, features: dict[str, Tensor]) -> Tensor:
        return torch.stack([self.proj[m](features[m]) for m in self.modalities]).sum(0)

    def split(self, features: dict[str, Tensor], head: nn.Linear) -> dict[str, Tensor]:
        bias = head.bias / len(self.modalities) if head.bias is not None else 0.0
        return {m: self.proj[m](features[m]) @ head.weight.T + bias for m in self.modalities}


def _primary(dims: dict[str, int], cfg: FusionConfig, name: str) -> str:
    primary = cfg.primary if cfg.primary is not None else next(iter(dims))
    if primary not in dims:
        raise ConfigError(
            f"model.fusion_options.primary: got {primary!r}; {name} fusion needs one of "
            f"{', '.join(dims)}"
        )
    return primary


class FiLMFusion(Fusion):
    """FiLM (Perez et al. 2018): ``gamma(c) * f_p + beta(c)``, ``c`` = other modalities."""

    name = "film"

    min_modalities = 2

    def __init__(self, dims: dict[str, int], cfg: FusionConfig | None = None) -> None:
        super().__init__(dims)
        cfg = cfg or FusionConfig()
        self.primary = _primary(dims, cfg, "FiLM")
        self.others = [m for m in dims if m != self.primary]
        cond_dim = sum(dims[m] for m in self.others)
        self.film = nn.Linear(cond_dim, 2 * dims[self.primary])
        self.out_dim = dims[self.primary]

    def forward(self, features: dict[str, Tensor]) -> Tensor:
        cond = torch.cat([features[m] for m in self.others], dim=1)
        gamma, beta = self.film(cond).chunk(2, dim=1)
        return gamma * features[self.primary] + beta


class GatedFusion(Fusion):
    """Gated fusion: ``sigmoid(P_p(f_p)) * sum_{m != p} P_m(f_m)``."""

    name = "gated"

    min_modalities = 2

    def __init__(self, dims: dict[str, int], cfg: FusionConfig | None = None) -> None:
        super().__init__(dims)
        cfg = cfg or FusionConfig()
        self.primary = _primary(dims, cfg, "gated")
        self.proj = nn.ModuleDict({m: nn.Linear(d, cfg.hidden) for m, d in dims.items()})
        self.out_dim = cfg.hidden

    def forward(self, features: dict[str, Tensor]) -> Tensor:
        gate = torch.sigmoid(self.proj[self.primary](features[self.primary]))
        rest = torch.stack(
            [self.proj[m](features[m]) for m in self.modalities if m != self.primary]
        )
        return gate * rest.sum(0)


FUSIONS: dict[str, type[Fusion]] = {
    "concat": ConcatFusion,
    "sum": SumFusion,
    "film": FiLMFusion,
    "gated": GatedFusion,
}


def create_fusion(name: str, dims: dict[str, int], cfg: FusionConfig | None = None) -> Fusion:
    """Build fusion ``name`` for modalities with feature widths ``dims``."""
    if name not in FUSIONS:
        raise ConfigError(f"model.fusion: got {name!r}; expected one of {', '.join(FUSIONS)}")
    return FUSIONS[name](dims, cfg)  # type: ignore[call-arg]
