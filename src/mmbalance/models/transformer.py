"""Transformer encoder for feature sequences ``[B, T, F]``: one encoder layer = one block.

The stem is the Conv1d projection MulT-style models use to bring each modality's feature size to
a shared ``d_model``, plus sinusoidal positions. The pooled feature is the mean over time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mmbalance.errors import ConfigError
from mmbalance.models.base import BlockEncoder
from mmbalance.models.init import init_weights
from mmbalance.structured import check_positive


@dataclass
class TransformerConfig:
    """Options of :class:`TransformerEncoder` (``type: transformer``)."""

    d_model: int = 64
    layers: int = 3
    heads: int = 4
    ffn_mult: int = 2
    dropout: float = 0.1
    kernel_size: int = 1  # Conv1d projection kernel (MulT uses 1 or 3)

    def validate(self, where: str) -> None:
        for name in ("d_model", "layers", "heads", "ffn_mult", "kernel_size"):
            check_positive(getattr(self, name), f"{where}.{name}")
        if self.d_model % self.heads:
            raise ConfigError(
                f"{where}.heads: got {self.heads}; must divide d_model={self.d_model}"
            )


class _Stem(nn.Module):
    def __init__(self, in_features: int, d_model: int, kernel_size: int) -> None:
        super().__init__()
        self.proj = nn.Conv1d(in_features, d_model, kernel_size, padding=kernel_size // 2)

    def forward(self, x: Tensor) -> Tensor:
        h = self.proj(x.transpose(1, 2)).transpose(1, 2)  # [B, T, d]
        return h + _sinusoid(h.shape[1], h.shape[2], h.device, h.dtype)


def _sinusoid(length: int, dim: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    pos = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, device=device).float() * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim, device=device)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return pe.to(dtype)


class TransformerEncoder(BlockEncoder):
    """Conv1d projection stem, ``layers`` pre-norm Transformer layers, mean-pooled output."""

    def __init__(self, in_features: int, cfg: TransformerConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or TransformerConfig()
        self.stem = _Stem(in_features, cfg.d_model, cfg.kernel_size)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(
                cfg.d_model,
                cfg.heads,
                cfg.d_model * cfg.ffn_mult,
                cfg.dropout,
                batch_first=True,
                norm_first=True,
            )
            for _ in range(cfg.layers)
        )
        self.out_dim = cfg.d_model
        init_weights(self)

    def prepare(self, x: Tensor) -> tuple[Tensor, int]:
        if x.dim() != 3:
            raise ValueError(f"TransformerEncoder expects [B, T, F]; got {tuple(x.shape)}")
        return x, 1

    def pool(self, h: Tensor, frames: int) -> Tensor:
        return h.mean(dim=1)

    def scale_channels(self, h: Tensor, scale: Tensor, frames: int) -> Tensor:
        return h * scale[:, None, :]
