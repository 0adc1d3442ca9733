"""Unimodal training: one modality alone, the reference rows of the AIM paper's Table I.

The model is built with only the chosen modality's encoder (``select_modalities``), so its
accuracy is what that modality reaches when nothing else competes for the gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

from mmbalance.errors import ConfigError
from mmbalance.methods.base import Method


@dataclass
class UnimodalOptions:
    """``method.options`` of ``unimodal``."""

    modality: str = ""  # required: the one modality to train

    def validate(self, where: str) -> None:
        if not self.modality:
            raise ConfigError(f"{where}.modality: required; the name of the modality to train")


class Unimodal(Method):
    """Cross-entropy on a single-modality model."""

    name = "unimodal"
    description = "train one modality alone (method.options.modality)"
    Options = UnimodalOptions
    supports_regression = True  # the task loss of the one modality's prediction

    def select_modalities(self, available: list[str]) -> list[str]:
        if self.options.modality not in available:
            raise ConfigError(
                f"method.options.modality: got {self.options.modality!r}; "
                f"expected one of {', '.join(available)}"
            )
        return [self.options.modality]
