"""One pass over a loader collecting what the encoders output: the helper behind PMR's and
D&R's class statistics and ``mmbalance diagnose``'s per-depth probes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from mmbalance.models.base import eval_mode
from mmbalance.models.multimodal import MultimodalModel


@dataclass
class Features:
    """Features of every sample of one pass, in loader order.

    Attributes:
        pooled: ``{m: [N, d_m]}``, each encoder's output (what the fusion reads).
        labels: ``[N]``.
        blocks: ``{m: [[N, C_d] per depth]}``, each block's output pooled like the encoder's
            (``BlockEncoder.pool``), when asked for; else None.
    """

    pooled: dict[str, Tensor]
    labels: Tensor
    blocks: dict[str, list[Tensor]] | None = None


@torch.no_grad()
def collect_features(
    model: MultimodalModel,
    loader: Iterable[dict[str, Any]],
    device: torch.device,
    *,
    blocks: bool = False,
    limit: int | None = None,
    to_cpu: bool = True,
) -> Features:
    """Run ``model``'s encoders over ``loader`` in eval mode (no BatchNorm statistic moves,
    no dropout) and collect their features.

    Args:
        blocks: also collect every block's pooled output (per-depth probes).
        limit: stop after the batch that reaches this many samples, and keep that many.
        to_cpu: move each batch's features to the CPU (as float32 for ``blocks``) as they
            come; False keeps them on ``device`` in the model's dtype.
    """
    pooled: dict[str, list[Tensor]] = {}
    per_depth: dict[str, list[list[Tensor]]] = {}
    labels: list[Tensor] = []
    seen = 0
    with eval_mode(model):
        for batch in loader:
            inputs = {m: x.to(device) for m, x in batch["inputs"].items()}
            feats, inter = model.encode(inputs, return_intermediates=blocks)
            for m, f in feats.items():
                pooled.setdefault(m, []).append(f.cpu() if to_cpu else f)
            if inter is not None:
                for m, it in inter.items():
                    enc = model.encoders[m]
                    outs = [enc.pool(h, it.frames) for h in it.outputs]
                    if to_cpu:
                        outs = [x.float().cpu() for x in outs]
                    rows = per_depth.setdefault(m, [[] for _ in outs])
                    for d, x in enumerate(outs):
                        rows[d].append(x)
            labels.append(batch["label"] if to_cpu else batch["label"].to(device))
            seen += batch["label"].shape[0]
            if limit is not None and seen >= limit:
                break
    n = seen if limit is None else min(seen, limit)
    return Features(
        pooled={m: torch.cat(v)[:n] for m, v in pooled.items()},
        labels=torch.cat(labels)[:n],
        blocks={m: [torch.cat(x)[:n] for x in v] for m, v in per_depth.items()} if blocks else None,
    )
