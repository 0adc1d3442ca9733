"""Evaluation: fused and per-modality metrics on one split (accuracy / macro-F1 for classes;
MAE, RMSE, R^2, Pearson r for a regression, ``mmbalance.tasks``)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from mmbalance.data.loading import to_device
from mmbalance.models.multimodal import ModelOutput, MultimodalModel
from mmbalance.tasks import Task, regression_metrics
from mmbalance.training.metrics import accuracy, macro_f1


@torch.no_grad()
def evaluate(
    model: MultimodalModel,
    loader: DataLoader,
    num_classes: int,
    device: torch.device,
    prefix: str,
    predict: Callable[[MultimodalModel, dict[str, Tensor]], ModelOutput] | None = None,
    task: Task | None = None,
) -> dict[str, float | None]:
    """Metrics on ``loader`` (eval mode, no gradient, no RNG consumed).

    ``predict(model, inputs)`` is the method's inference (default: the plain model).

    Classification keys: ``{prefix}_loss``, ``{prefix}_acc``, ``{prefix}_f1``; per modality
    ``{prefix}_acc_<m>`` and ``{prefix}_f1_<m>`` from the unimodal heads (every fusion); for
    concat/sum also ``{prefix}_splitacc_<m>`` from the exact split of the fused logits.
    Regression keys: ``{prefix}_loss`` (the task loss), ``{prefix}_mae``, ``_rmse``, ``_r2``,
    ``_corr`` (None where undefined), the sentiment numbers for a score target, and per modality
    the same from the unimodal heads (``{prefix}_r2_<m>``, ...).
    """
    task = task or Task()
    was_training = model.training
    model.eval()
    preds: dict[str, list[torch.Tensor]] = {"": []}
    labels: list[torch.Tensor] = []
    loss_sum, n = 0.0, 0
    for raw in loader:
        batch = to_device(raw, device)
        out = predict(model, batch["inputs"]) if predict is not None else model(batch["inputs"])
        y = batch["label"]
        loss_sum += float(task.criterion(out.logits, y, reduction="sum"))
        n += y.shape[0]
        labels.append(y.cpu())
        preds[""].append(task.point(out.logits).float().cpu())
        heads: list[tuple[str, dict[str, Tensor] | None]] = [("acc", out.unimodal_logits)]
        if not task.regression:  # the split of the fused logits: a classification reading
            heads.append(("splitacc", out.split_logits))
        for kind, logits in heads:
            for m, lg in (logits or {}).items():
                preds.setdefault(f"{kind}_{m}", []).append(task.point(lg).float().cpu())
    model.train(was_training)
    y_all = torch.cat(labels)
    metrics: dict[str, float | None] = {f"{prefix}_loss": loss_sum / max(n, 1)}
    for key, chunks in preds.items():
        p = torch.cat(chunks)
        suffix = "" if key == "" else f"_{key.split('_', 1)[1]}"
        if task.regression:
            values = regression_metrics(p, y_all, task.score_range if key == "" else None)
            metrics.update({f"{prefix}_{name}{suffix}": v for name, v in values.items()})
            continue
        p = p.long()
        if key == "":
            metrics[f"{prefix}_acc"] = accuracy(p, y_all)
            metrics[f"{prefix}_f1"] = macro_f1(p, y_all, num_classes)
        elif key.startswith("acc_"):
            metrics[f"{prefix}_acc{suffix}"] = accuracy(p, y_all)
            metrics[f"{prefix}_f1{suffix}"] = macro_f1(p, y_all, num_classes)
        else:
            metrics[f"{prefix}_{key}"] = accuracy(p, y_all)
    return metrics
