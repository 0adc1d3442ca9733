"""Post-hoc evaluation of a finished run at its validation-selected checkpoint (``best.pt``).

Two things the per-epoch metrics cannot give:

- **a linear probe per modality** on the frozen encoder features (the pooled features the
  fusion reads, from the method's own inference, eval mode): multinomial logistic regression
  fitted on the training split (features standardised with training statistics, full-batch
  L-BFGS), its L2 weight picked on the validation split, accuracy reported on test. This is
  "the modality's accuracy inside the multimodal model" of the paper's Table I, measured the
  same way for every method and every fusion. The unimodal heads trained alongside the model
  (``test_acc_<m>`` in ``metrics.csv``) lag behind the features they read; the probe does not.
- **a fused probe**: the same probe on every modality's features concatenated. Beside the
  model's own test accuracy it says whether the trained fusion head uses what the encoders
  hold: a fused probe well above the head means the features are better than the predictions.
- **the test-split class probabilities** of the method's prediction, so late-fusion ensembles
  of separately trained models can be scored (the imbalance certificate).

For a regression (``data.task: regression``) the probe is a ridge regression (closed form on
the standardised features, its L2 weight picked on validation by R^2) and reports R^2, MAE,
RMSE and Pearson r (``test_r2``, ...); the cached test output is the prediction itself.

Results are cached in ``<run>/evaluation.json`` and ``<run>/evaluation_test_probs.npy``.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mmbalance.data.standardize import zscore_stats

EVALUATION = "evaluation.json"
TEST_PROBS = "evaluation_test_probs.npy"
# L2 weights tried for the probe (sum over weights, added to the mean cross-entropy).
PROBE_WEIGHT_DECAYS = (1e-4, 1e-3, 1e-2)
# ridge weights tried for a regression probe (times the number of training samples)
RIDGE_WEIGHTS = (1e-4, 1e-2, 1.0)


def fit_probe(
    x: Tensor, y: Tensor, num_classes: int, weight_decay: float, iterations: int = 200
) -> torch.nn.Linear:
    """A linear classifier on ``x`` (already standardised), fitted by full-batch L-BFGS."""
    generator = torch.Generator().manual_seed(0)
    linear = torch.nn.Linear(x.shape[1], num_classes)
    with torch.no_grad():  # a fixed start: the probe is a function of the features alone
        linear.weight.normal_(0.0, 0.01, generator=generator)
        linear.bias.zero_()
    opt = torch.optim.LBFGS(
        linear.parameters(), lr=1.0, max_iter=iterations, line_search_fn="strong_wolfe"
    )

    def closure() -> Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(linear(x), y) + weight_decay * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return linear


def probe_accuracy(
    features: dict[str, Tensor], labels: dict[str, Tensor], num_classes: int
) -> dict[str, float]:
    """Validation-selected linear probe: ``{"val_acc", "test_acc", "weight_decay"}``.

    ``features`` and ``labels`` hold the ``train``, ``val`` and ``test`` splits.
    """
    mean, scale, _ = zscore_stats(features["train"])
    z = {s: (f - mean) / scale for s, f in features.items()}
    best: dict[str, float] | None = None
    threads = torch.get_num_threads()
    # These matmuls are tiny: one thread is 10-50x faster than several fighting over cores
    # that other runs (compare workers) are using.
    torch.set_num_threads(1)
    try:
        fits = [
            fit_probe(z["train"], labels["train"], num_classes, wd) for wd in PROBE_WEIGHT_DECAYS
        ]
    finally:
        torch.set_num_threads(threads)
    for wd, linear in zip(PROBE_WEIGHT_DECAYS, fits, strict=True):
        with torch.no_grad():
            acc = {
                s: float((linear(z[s]).argmax(1) == labels[s]).float().mean())
                for s in ("val", "test")
            }
        if best is None or acc["val"] > best["val_acc"]:  # ties keep the smaller weight
            best = {"val_acc": acc["val"], "test_acc": acc["test"], "weight_decay": wd}
    assert best is not None
    return best


def ridge_probe(features: dict[str, Tensor], targets: dict[str, Tensor]) -> dict[str, Any]:
    """Validation-selected ridge regression on standardised features: ``{"val_r2",
    "test_r2", "test_mae", "test_rmse", "test_corr", "weight"}`` (R^2 and r None where
    undefined; the weight picked by validation MSE, which ranks as R^2 does)."""
    from mmbalance.tasks import regression_metrics

    mean, scale, _ = zscore_stats(features["train"])
    z = {s: ((f - mean) / scale).double() for s, f in features.items()}
    y = {s: t.double().reshape(t.shape[0], -1) for s, t in targets.items()}
    x = torch.cat([z["train"], torch.ones(len(z["train"]), 1, dtype=torch.float64)], 1)
    y_mean = y["train"].mean(0)
    gram = x.T @ x
    best: dict[str, Any] | None = None
    for weight in RIDGE_WEIGHTS:
        reg = weight * len(x) * torch.eye(x.shape[1], dtype=torch.float64)
        reg[-1, -1] = 0.0  # the intercept is not shrunk
        coef = torch.linalg.solve(gram + reg, x.T @ (y["train"] - y_mean))

        def predict(s: str, coef: Tensor = coef) -> Tensor:
            ones = torch.ones(len(z[s]), 1, dtype=torch.float64)
            return torch.cat([z[s], ones], 1) @ coef + y_mean

        val_mse = float((predict("val") - y["val"]).pow(2).mean())
        if best is None or val_mse < best["val_mse"]:
            test = regression_metrics(predict("test"), y["test"])
            val = regression_metrics(predict("val"), y["val"])
            best = {
                "val_mse": val_mse,
                "val_r2": val["r2"],
                **{f"test_{k}": v for k, v in test.items()},
                "weight": weight,
            }
    assert best is not None
    return best


@torch.no_grad()
def _collect(trainer: Any, split: str) -> tuple[dict[str, Tensor], Tensor, Tensor]:
    """Pooled features per modality, labels and class probabilities of one split."""
    from mmbalance.data.loading import to_device

    model, method = trainer.model, trainer.method
    model.eval()
    feats: dict[str, list[Tensor]] = {}
    labels, probs = [], []
    for raw in trainer.eval_loaders[split]:
        batch = to_device(raw, trainer.device)
        out = method.predict(model, batch["inputs"])
        for m, f in out.features.items():
            feats.setdefault(m, []).append(f.float().flatten(1).cpu())
        labels.append(batch["label"].cpu())
        if trainer.task.regression:  # the prediction itself
            probs.append(trainer.task.point(out.logits).float().cpu())
        else:
            probs.append(out.logits.float().softmax(1).cpu())
    return {m: torch.cat(v) for m, v in feats.items()}, torch.cat(labels), torch.cat(probs)


def evaluate_run(run_dir: str | Path, refresh: bool = False) -> dict[str, Any]:
    """Probe accuracies per modality and test probabilities of ``run_dir``'s ``best.pt``
    (cached; ``refresh`` recomputes)."""
    from mmbalance.experiment import build_experiment, load_run_config
    from mmbalance.training.trainer import Trainer

    run_dir = Path(run_dir)
    cached = run_dir / EVALUATION
    if cached.is_file() and (run_dir / TEST_PROBS).is_file() and not refresh:
        return dict(json.loads(cached.read_text()))
    config = load_run_config(run_dir)
    config.data.num_workers = 0
    config.train.tensorboard = False
    data, model, method = build_experiment(config)
    with tempfile.TemporaryDirectory() as scratch:  # the run folder is only read
        trainer = Trainer(model, method, data, config, scratch)
        trainer.load_weights(run_dir / "checkpoints" / "best.pt")
        splits = {s: _collect(trainer, s) for s in ("train", "val", "test")}
    labels = {s: v[1] for s, v in splits.items()}
    modalities = list(splits["train"][0])
    regression = data.task == "regression"

    def probe(features: dict[str, Tensor]) -> dict[str, Any]:
        if regression:
            return ridge_probe(features, labels)
        return probe_accuracy(features, labels, data.num_classes)

    probes = {m: probe({s: v[0][m] for s, v in splits.items()}) for m in modalities}
    test_probs = splits["test"][2]
    result: dict[str, Any] = {"checkpoint": "best", "task": data.task, "probe": probes}
    if regression:
        from mmbalance.tasks import regression_metrics

        result.update(
            {f"test_{k}": v for k, v in regression_metrics(test_probs, labels["test"]).items()}
        )
    else:
        result["test_acc"] = float((test_probs.argmax(1) == labels["test"]).float().mean())
    if len(modalities) > 1:
        concat = {s: torch.cat([v[0][m] for m in modalities], 1) for s, v in splits.items()}
        result["fused_probe"] = probe(concat)
    np.save(run_dir / TEST_PROBS, test_probs.numpy(), allow_pickle=False)
    np.save(run_dir / "evaluation_test_labels.npy", labels["test"].numpy(), allow_pickle=False)
    cached.write_text(json.dumps(result, indent=1))
    return result


def fused_probe_accuracy(run_dir: str | Path) -> dict[str, float]:
    """The fused probe of ``run_dir`` (``{"val_acc", "test_acc", "weight_decay"}``): from the
    cached evaluation, re-evaluated once where the cache predates it."""
    result = evaluate_run(run_dir)
    if "fused_probe" not in result:
        result = evaluate_run(run_dir, refresh=True)
    if "fused_probe" not in result:
        raise ValueError(f"{str(run_dir)!r}: a fused probe needs two or more modalities")
    return dict(result["fused_probe"])


def test_probabilities(run_dir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The cached test-split probabilities ``[N, K]`` and labels ``[N]`` of a run (for a
    regression: its predictions and targets)."""
    run_dir = Path(run_dir)
    evaluate_run(run_dir)
    probs = np.load(run_dir / TEST_PROBS, allow_pickle=False)
    labels = np.load(run_dir / "evaluation_test_labels.npy", allow_pickle=False)
    return probs, labels
