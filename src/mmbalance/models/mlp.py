"""MLP encoder for feature vectors ``[B, F]``: one hidden layer (Linear, norm, ReLU) = one block."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from torch import Tensor, nn

from mmbalance.errors import ConfigError
from mmbalance.models.base import BlockEncoder
from mmbalance.models.init import init_weights
from mmbalance.structured import check_positive


@dataclass
class MLPConfig:
    """Options of :class:`MLPEncoder` (``type: mlp``)."""

    hidden: list[int] = field(default_factory=lambda: [128, 128])
    norm: Literal["batch", "layer", "none"] = "batch"
    dropout: float = 0.0

    def validate(self, where: str) -> None:
        if not self.hidden:
            raise ConfigError(f"{where}.hidden: got []; expected at least one layer width")
        for i, h in enumerate(self.hidden):
            check_positive(h, f"{where}.hidden[{i}]")


class MLPEncoder(BlockEncoder):
    """Identity stem, one block per hidden layer; the last hidden activation is the feature."""

    def __init__(self, in_features: int, cfg: MLPConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or MLPConfig()
        self.stem = nn.Flatten(1)  # accepts [B, F] (and flattens any extra axes)
        blocks = []
        prev = in_features
        for width in cfg.hidden:
            layers: list[nn.Module] = [nn.Linear(prev, width)]
            if cfg.norm == "batch":
                layers.append(nn.BatchNorm1d(width))
            elif cfg.norm == "layer":
                layers.append(nn.LayerNorm(width))
            layers.append(nn.ReLU())
            if cfg.dropout > 0:
                layers.append(nn.Dropout(cfg.dropout))
            blocks.append(nn.Sequential(*layers))
            prev = width
        self.blocks = nn.ModuleList(blocks)
        self.out_dim = prev
        init_weights(self)

    def pool(self, h: Tensor, frames: int) -> Tensor:
        return h
