"""Evaluation: fused and per-modality accuracy / macro-F1 on one split."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader

from mmbalance.data.loading import to_device
from mmbalance.models.multimodal import ModelOutput, MultimodalModel
from mmbalance.training.metrics import accuracy, macro_f1


@torch.no_grad()
def evaluate(
    model: MultimodalModel,
    loader: DataLoader,
    num_classes: int,
    device: torch.device,
    prefix: str,
    predict: Callable[[MultimodalModel, dict[str, Tensor]], ModelOutput] | None = None,
) -> dict[str, float]:
    """Metrics on ``loader`` (eval mode, no gradient, no RNG consumed).

    ``predict(model, inputs)`` is the method's inference (default: the plain model).

    Keys: ``{prefix}_loss``, ``{prefix}_acc``, ``{prefix}_f1``; per modality ``{prefix}_acc_<m>``
    and ``{prefix}_f1_<m>`` from the unimodal heads (every fusion); for concat/sum also
    ``{prefix}_splitacc_<m>`` from the exact split of the fused logits.
    """
    was_training = model.training
    model.eval()
    preds: dict[str, list[torch.Tensor]] = {"": []}
    labels: list[torch.Tensor] = []
    loss_sum, n = 0.0, 0
    for raw in loader:
        batch = to_device(raw, device)
        out = predict(model, batch["inputs"]) if predict is not None else model(batch["inputs"])
        y = batch["label"]
        loss_sum += float(F.cross_entropy(out.logits, y, reduction="sum"))
        n += y.numel()
        labels.append(y.cpu())
        preds[""].append(out.logits.argmax(1).cpu())
        for kind, logits in (("acc", out.unimodal_logits), ("splitacc", out.split_logits)):
            for m, lg in (logits or {}).items():
                preds.setdefault(f"{kind}_{m}", []).append(lg.argmax(1).cpu())
    model.train(was_training)
    y_all = torch.cat(labels)
    metrics = {f"{prefix}_loss": loss_sum / max(n, 1)}
    for key, chunks in preds.items():
        p = torch.cat(chunks)
        if key == "":
            metrics[f"{prefix}_acc"] = accuracy(p, y_all)
            metrics[f"{prefix}_f1"] = macro_f1(p, y_all, num_classes)
        elif key.startswith("acc_"):
            m = key[len("acc_") :]
            metrics[f"{prefix}_acc_{m}"] = accuracy(p, y_all)
            metrics[f"{prefix}_f1_{m}"] = macro_f1(p, y_all, num_classes)
        else:
            metrics[f"{prefix}_{key}"] = accuracy(p, y_all)
    return metrics
