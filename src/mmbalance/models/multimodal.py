"""``MultimodalModel``: per-modality block encoders, a fusion and a linear head.

Per-modality accuracy for *every* fusion comes from :class:`UnimodalHeads`: one linear head per
modality trained with cross-entropy on the **detached** encoder feature. Detaching means the
heads only read the encoders (a linear probe trained online): they never change what the
encoders learn, so the balance being measured is the method's, not the probe's. Concat and sum
additionally expose the field's exact split of the fused logits (``split_logits``).
"""

from __future__ import annotations

from collections.abc import ItemsView, ValuesView
from dataclasses import dataclass
from typing import Any, cast

from torch import Tensor, nn

from mmbalance.models.base import BlockEncoder, Intermediates
from mmbalance.models.fusion import Fusion
from mmbalance.models.init import init_weights


@dataclass
class ModelOutput:
    """What one forward pass returns.

    Attributes:
        logits: fused logits ``[B, K]``.
        features: pooled per-modality features ``{m: [B, d_m]}`` (attached to the graph).
        unimodal_logits: ``{m: [B, K]}`` from the detached unimodal heads (None if disabled).
        split_logits: ``{m: [B, K]}`` exact split of ``logits`` (concat/sum only, else None).
        intermediates: per-modality block inputs/outputs when requested, else None.
    """

    logits: Tensor
    features: dict[str, Tensor]
    unimodal_logits: dict[str, Tensor] | None = None
    split_logits: dict[str, Tensor] | None = None
    intermediates: dict[str, Intermediates] | None = None


class UnimodalHeads(nn.Module):
    """``Linear(d_m, K)`` per modality on detached features (a probe trained with the model)."""

    def __init__(self, dims: dict[str, int], num_classes: int) -> None:
        super().__init__()
        self.heads = nn.ModuleDict({m: nn.Linear(d, num_classes) for m, d in dims.items()})
        init_weights(self)

    def forward(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        # only the modalities present: an alternating pass may encode one modality alone
        return {m: self.heads[m](f.detach()) for m, f in features.items() if m in self.heads}


class EncoderDict(nn.ModuleDict):
    """``nn.ModuleDict`` of :class:`BlockEncoder`: the same module, typed, so that
    ``model.encoders[m].depth`` and ``.blocks`` are known to a type checker."""

    def __getitem__(self, key: str) -> BlockEncoder:
        return cast(BlockEncoder, super().__getitem__(key))

    def values(self) -> ValuesView[BlockEncoder]:
        return cast(ValuesView[BlockEncoder], super().values())

    def items(self) -> ItemsView[str, BlockEncoder]:
        return cast(ItemsView[str, BlockEncoder], super().items())


class MultimodalModel(nn.Module):
    """Encoders keyed by modality name, a fusion, a linear head and optional unimodal heads."""

    encoders: EncoderDict
    head: nn.Linear

    def __init__(
        self,
        encoders: dict[str, BlockEncoder],
        fusion: Fusion,
        head: nn.Linear,
        unimodal_heads: UnimodalHeads | None = None,
        input_shapes: dict[str, tuple[int, ...]] | None = None,
    ) -> None:
        super().__init__()
        # Per-sample input shape of each modality, when known: what per-depth methods need to
        # make prototypes or probe shapes (``BlockEncoder.feature_info``).
        self.input_shapes = dict(input_shapes or {})
        # ``type`` and every option of each encoder, when built from a config (build_model)
        self.encoder_specs: dict[str, dict[str, Any]] = {}
        self.encoders = EncoderDict(encoders)
        self.fusion = fusion
        self.head = head
        self.unimodal_heads = unimodal_heads

    @property
    def modalities(self) -> list[str]:
        return list(self.encoders.keys())

    def encode(
        self, inputs: dict[str, Tensor], return_intermediates: bool = False
    ) -> tuple[dict[str, Tensor], dict[str, Intermediates] | None]:
        """Pooled features per modality (and each block's input/output when asked)."""
        if not return_intermediates:
            return {m: enc(inputs[m]) for m, enc in self.encoders.items()}, None
        inter = {m: enc.forward_intermediates(inputs[m]) for m, enc in self.encoders.items()}
        return {m: i.pooled for m, i in inter.items()}, inter

    def classify(self, features: dict[str, Tensor]) -> ModelOutput:
        """Fusion, head and unimodal logits from already-computed features."""
        logits = self.head(self.fusion(features))
        split = self.fusion.split(features, self.head)
        uni = self.unimodal_heads(features) if self.unimodal_heads is not None else None
        return ModelOutput(logits, features, uni, split)

    def forward(self, inputs: dict[str, Tensor], return_intermediates: bool = False) -> ModelOutput:
        missing = [m for m in self.encoders if m not in inputs]
        if missing:
            raise KeyError(f"input batch lacks modalities {missing}; model has {self.modalities}")
        features, inter = self.encode(inputs, return_intermediates)
        out = self.classify(features)
        out.intermediates = inter
        return out

    def modality_parameters(self, modality: str) -> list[nn.Parameter]:
        """The trainable encoder parameters of one modality (a frozen part, the encoder's
        ``freeze`` option, is left out): methods select by structure, never by name."""
        return [p for p in self.encoders[modality].parameters() if p.requires_grad]
