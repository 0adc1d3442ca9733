"""Weight initialisation shared by the field's codebases (``methods.md`` section 1).

Linear: xavier-normal weights, zero bias. Conv: kaiming-normal, fan_out, ReLU gain.
Normalisation layers: weight 1, bias 0. Matching it matters when results are compared with
published numbers, which all start from this init.
"""

from __future__ import annotations

from torch import nn


def init_weights(module: nn.Module) -> None:
    """Apply the field's initialisation to every sub-module of ``module`` in place."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm)):
            if m.weight is not None:
                nn.init.ones_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
