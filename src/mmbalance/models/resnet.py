"""ResNet18 as a block encoder: the 4 residual stages are the 4 blocks (D = 4).

Written here (no torchvision dependency). Follows the field's backbone (``methods.md`` s. 1):
no fc, pooled output; audio ``[B, 1, F, T]``; video ``[B, C, T, H, W]`` runs per frame through
the 2-D network and is averaged over frames and space; optical flow uses 2 input channels.
``width`` scales every stage's channels (64, 128, 256, 512) for CPU-sized experiments.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import Tensor, nn

from mmbalance.models.base import BlockEncoder
from mmbalance.models.init import init_weights
from mmbalance.structured import check_positive


@dataclass
class ResNet18Config:
    """Options of :class:`ResNet18Encoder` (``model.encoder`` with ``type: resnet18``)."""

    in_channels: int | None = None  # None: taken from the data (1 audio, 3 RGB, 2 flow)
    width: float = 1.0  # channel multiplier; 1.0 is the real ResNet18
    small_input: bool = False  # 3x3 stride-1 stem without max-pool, for inputs of ~32 px

    def validate(self, where: str) -> None:
        check_positive(self.width, f"{where}.width")
        if self.in_channels is not None:
            check_positive(self.in_channels, f"{where}.in_channels")


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (He et al., 2016)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18Encoder(BlockEncoder):
    """ResNet18 trunk: stem (conv, BN, ReLU, max-pool) then 4 stages of 2 BasicBlocks."""

    def __init__(self, in_channels: int, width: float = 1.0, small_input: bool = False) -> None:
        super().__init__()
        widths = [max(1, round(c * width)) for c in (64, 128, 256, 512)]
        self.in_channels = in_channels
        if small_input:
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False),
                nn.BatchNorm2d(widths[0]),
                nn.ReLU(inplace=True),
            )
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, widths[0], 7, 2, 3, bias=False),
                nn.BatchNorm2d(widths[0]),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(3, 2, 1),
            )
        stages = []
        prev = widths[0]
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(BasicBlock(prev, w, stride), BasicBlock(w, w, 1)))
            prev = w
        self.blocks = nn.ModuleList(stages)
        self.out_dim = widths[-1]
        init_weights(self)

    def prepare(self, x: Tensor) -> tuple[Tensor, int]:
        # [B, H, W] single-channel input (a spectrogram without channel axis) gets one.
        if x.dim() == 3 and self.in_channels == 1:
            x = x.unsqueeze(1)
        if x.dim() == 5:  # video [B, C, T, H, W] -> frames folded into the batch
            b, c, t, h, w = x.shape
            return x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w), t
        if x.dim() != 4:
            raise ValueError(
                f"ResNet18Encoder expects [B, C, H, W] or [B, C, T, H, W]; got {tuple(x.shape)}"
            )
        return x, 1

    def pool(self, h: Tensor, frames: int) -> Tensor:
        # Average over space, then over frames: identical to the field's 3-D adaptive pooling.
        pooled = h.mean(dim=(2, 3))
        return pooled.reshape(-1, frames, pooled.shape[1]).mean(dim=1)

    def scale_channels(self, h: Tensor, scale: Tensor, frames: int) -> Tensor:
        # one scale per clip, shared by its frames (folded into the batch)
        return h * scale.repeat_interleave(frames, dim=0)[:, :, None, None]

    def map_pretrained_keys(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """torchvision's ResNet18 names in this encoder's: ``conv1``/``bn1`` -> the stem,
        ``layerN`` -> ``blocks[N-1]`` (``fc`` is a classifier, dropped by the loader). A file
        already in this encoder's names passes through."""
        mapped: dict[str, Tensor] = {}
        for key, value in state.items():
            if key.startswith("conv1."):
                key = "stem.0." + key[len("conv1.") :]
            elif key.startswith("bn1."):
                key = "stem.1." + key[len("bn1.") :]
            elif key.startswith("layer"):
                stage, rest = key[len("layer") :].split(".", 1)
                key = f"blocks.{int(stage) - 1}.{rest}"
            mapped[key] = value
        return mapped

    def load_pretrained(self, path: str | Path, strict: bool = True) -> None:
        """Load a torchvision-layout ResNet18 state dict from a user file (or one in this
        encoder's own names): ``models/weights.py``, the first conv inflated for 1 or 2 input
        channels. Raises :class:`ConfigError` naming the file and the mismatched keys."""
        from mmbalance.models.weights import load_weights

        load_weights(self, path, strict, "resnet18 (width / channels must match the file)")
