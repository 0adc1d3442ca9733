"""The block-encoder interface every encoder family implements.

An encoder is ``stem`` followed by ``blocks`` (the D depths AIM modulates) and a pooling step,
as timm's ``forward_intermediates`` / ``feature_info`` expose it. Per-depth methods (AIM's
prototypes and auxiliary blocks, per-depth diagnostics) use only this interface, so they work
for every family: ResNet18 stages, Transformer layers, MLP hidden layers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class FeatureInfo:
    """What block ``depth`` (1-based) outputs: channels and the per-sample shape."""

    depth: int
    channels: int
    shape: tuple[int, ...]  # per-sample output shape of the block (frames folded into batch)
    module: str  # dotted name inside the encoder, e.g. "blocks.2"


@dataclass
class Intermediates:
    """Every block's input and output for one batch.

    ``inputs[d]`` is the input of block ``d+1`` (``inputs[0]`` is the stem output) and
    ``outputs[d]`` its output, so ``inputs[d+1] is outputs[d]``. ``frames`` is the number of
    video frames folded into the batch dimension (1 for non-video input): tensors here have
    ``batch * frames`` rows.
    """

    inputs: list[Tensor]
    outputs: list[Tensor]
    pooled: Tensor
    frames: int = 1


class BlockEncoder(nn.Module):
    """Base class: ``stem`` -> ``blocks`` -> ``pool``.

    Subclasses build ``self.stem``, ``self.blocks`` and set ``self.out_dim``; they override
    ``pool`` (and ``prepare``/``restore`` for inputs that need reshaping, e.g. video).
    ``docs/encoders.md`` says how any ``nn.Module`` becomes one (``mmbalance.wrap_encoder``).
    """

    stem: nn.Module
    blocks: nn.ModuleList
    out_dim: int
    # Whether stem, blocks and pool compose to the encoder's forward, so a method may run the
    # blocks one at a time and change what passes between them (Greedy's MMTM). An encoder
    # that runs its own forward and reads the blocks through hooks (timm) sets False.
    runs_block_by_block: bool = True
    # The stem and the first ``frozen_blocks`` blocks do not train (``freeze`` option); their
    # modules stay in eval mode (BatchNorm statistics kept), see ``models/weights.py``.
    frozen_blocks: int = 0
    frozen_modules: list[nn.Module]

    @property
    def block_names(self) -> list[str]:
        """The blocks' names as a user knows them (``freeze``, error messages)."""
        return [f"blocks.{d}" for d in range(len(self.blocks))]

    def map_pretrained_keys(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """A weights file's keys in this encoder's ``state_dict`` names (identity by default;
        ResNet18 maps torchvision's)."""
        return state

    def train(self, mode: bool = True) -> BlockEncoder:
        super().train(mode)
        for module in getattr(self, "frozen_modules", []):
            if module is self:  # the whole encoder is frozen
                for m in self.modules():
                    m.training = False
            else:
                module.eval()
        return self

    @property
    def depth(self) -> int:
        """Number of blocks D."""
        return len(self.blocks)

    def prepare(self, x: Tensor) -> tuple[Tensor, int]:
        """Reshape raw input for the stem; returns the tensor and the folded frame count."""
        return x, 1

    def pool(self, h: Tensor, frames: int) -> Tensor:
        """Reduce the last block's output to one ``[batch, out_dim]`` feature per sample."""
        raise NotImplementedError

    def scale_channels(self, h: Tensor, scale: Tensor, frames: int) -> Tensor:
        """Multiply a block output channel-wise by ``scale [batch, channels]`` (the channels
        ``pool`` keeps), e.g. MMTM's excitation. Default: ``[B, C]`` vector features."""
        return h * scale

    def forward_intermediates(self, x: Tensor) -> Intermediates:
        """Run the encoder keeping each block's input and output."""
        h, frames = self.prepare(x)
        h = self.stem(h)
        inputs: list[Tensor] = []
        outputs: list[Tensor] = []
        for block in self.blocks:
            inputs.append(h)
            h = block(h)
            outputs.append(h)
        return Intermediates(inputs, outputs, self.pool(h, frames), frames)

    def forward(self, x: Tensor) -> Tensor:
        h, frames = self.prepare(x)
        h = self.stem(h)
        for block in self.blocks:
            h = block(h)
        return self.pool(h, frames)

    @torch.no_grad()
    def feature_info(self, sample_shape: tuple[int, ...]) -> list[FeatureInfo]:
        """Shapes of every block output for one input sample of ``sample_shape``.

        Runs a single dummy sample in eval mode (BatchNorm statistics are not touched).
        """
        was_training = self.training
        self.eval()
        try:
            device = next(self.parameters()).device
            inter = self.forward_intermediates(torch.zeros(1, *sample_shape, device=device))
        finally:
            self.train(was_training)
        # "channels" is the width of the block output once pooled like the final feature
        # (conv channels, Transformer d_model, MLP width): what a per-depth probe reads.
        return [
            FeatureInfo(
                d + 1,
                int(self.pool(out, inter.frames).shape[1]),
                tuple(out.shape[1:]),
                f"blocks.{d}",
            )
            for d, out in enumerate(inter.outputs)
        ]


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Run ``module`` in eval mode (no BN statistic updates, no dropout), then restore each
    sub-module's own training flag."""
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, flag in flags:
            m.training = flag


def per_sample(h: Tensor, frames: int) -> Tensor:
    """Un-fold video frames: ``[B*T, ...] -> [B, T, ...]`` (identity view when ``frames == 1``)."""
    if frames == 1:
        return h
    return h.reshape(h.shape[0] // frames, frames, *h.shape[1:])
