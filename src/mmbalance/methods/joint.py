"""Joint training: every modality's encoder, the fusion and the head trained with CE (Eq. 2).

The baseline every balancing method is compared with; it is :class:`Method` with no change.
"""

from __future__ import annotations

from mmbalance.methods.base import Method


class Joint(Method):
    """Plain multimodal cross-entropy training."""

    name = "joint"
    description = "joint training with cross-entropy (the baseline)"
    supports_regression = True  # the task loss (MSE by default) of the fused prediction
