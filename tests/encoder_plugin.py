"""A user's own audio CNN, registered from outside the package (docs/encoders.md's example).

The network is written without mmbalance in mind (a stem, conv stages, a classifier);
``build`` names its parts with ``mmbalance.wrap_encoder`` and ``register_encoder`` makes it
``type: tiny_audio_cnn`` in configs. A config imports this file with ``plugins: [path]``.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

import mmbalance as mb


@dataclass
class TinyAudioCNNOptions:
    """Options of ``type: tiny_audio_cnn`` (checked and written to config.yaml by mmbalance)."""

    width: int = 8
    stages: int = 2


class TinyAudioCNN(nn.Module):
    """conv-BN-ReLU stem, ``stages`` conv stages that halve the map, average pooling, a
    classifier: an ordinary network someone already has."""

    def __init__(self, in_channels: int, width: int, stages: int, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()
        )
        self.stages = nn.Sequential(
            *[
                nn.Sequential(
                    nn.Conv2d(width * 2**i, width * 2 ** (i + 1), 3, padding=1),
                    nn.BatchNorm2d(width * 2 ** (i + 1)),
                    nn.ReLU(),
                    nn.MaxPool2d(2),
                )
                for i in range(stages)
            ]
        )
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(width * 2**stages, classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pool(self.stages(self.stem(x))))


def build(options: TinyAudioCNNOptions, sample_shape: tuple[int, ...]) -> nn.Module:
    """A small audio CNN (the test plugin's)."""
    net = TinyAudioCNN(sample_shape[0], options.width, options.stages)
    return mb.wrap_encoder(
        net,
        stem=["stem"],
        blocks=[f"stages.{i}" for i in range(options.stages)],
        pool="pool",
        sample_shape=sample_shape,
    )


# replace: a test process may import this file both as a module and as a config's plugin
mb.register_encoder("tiny_audio_cnn", build, TinyAudioCNNOptions, replace=True)
