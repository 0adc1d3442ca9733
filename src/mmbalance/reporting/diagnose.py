"""``mmbalance diagnose RUN_DIR``: how imbalanced is a trained model, per modality and per depth?

Works for a model trained by any method (no method state is needed). For every modality ``m``
and every encoder depth ``d`` the block output is pooled to one vector per sample (eval mode)
and scored two ways on the validation split:

- **prototype score** — AIM's performance measure (Eq. 9) with class prototypes taken as the
  training-split class means of the features: the mean softmax probability of the true class
  over negative Euclidean distances to the prototypes; and its nearest-prototype accuracy;
- **probe accuracy** — a linear classifier fitted on the training features (full-batch L-BFGS,
  a fixed 100 iterations, features standardised with training statistics).

The imbalance at a depth is the coefficient of variation of the scores across modalities
(``alpha_d``, Eq. 14): 0 when every modality is as good as the others at that depth.

For a regression the prototypes are those of the target's quantile bins (AIM's pseudo-classes)
and the probe is a ridge regression, scored by its validation R^2 (``probe_r2``; clipped at 0
for ``alpha``, whose coefficient of variation needs non-negative scores).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from mmbalance.data.standardize import zscore_stats
from mmbalance.methods.features import collect_features
from mmbalance.methods.functional import dam_alpha, prototype_logits


def prototype_scores(
    train: Tensor, y_train: Tensor, val: Tensor, y_val: Tensor, k: int
) -> tuple[float, float]:
    """Eq. 9 score and nearest-prototype accuracy with class-mean prototypes."""
    protos = torch.stack(
        [train[y_train == c].mean(0) if (y_train == c).any() else train.mean(0) for c in range(k)]
    )
    logits = prototype_logits(val, protos)
    prob = logits.softmax(1).gather(1, y_val[:, None]).mean()
    return float(prob), float((logits.argmax(1) == y_val).float().mean())


def probe_accuracy(train: Tensor, y_train: Tensor, val: Tensor, y_val: Tensor, k: int) -> float:
    """Validation accuracy of a linear probe fitted on the training features."""
    mean, scale, _ = zscore_stats(train)
    xt, xv = (train - mean) / scale, (val - mean) / scale
    torch.manual_seed(0)
    linear = torch.nn.Linear(xt.shape[1], k)
    opt = torch.optim.LBFGS(
        linear.parameters(), lr=0.5, max_iter=100, line_search_fn="strong_wolfe"
    )

    def closure() -> Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(linear(xt), y_train) + 1e-4 * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        return float((linear(xv).argmax(1) == y_val).float().mean())


def probe_r2(train: Tensor, y_train: Tensor, val: Tensor, y_val: Tensor) -> float:
    """Validation R^2 of a ridge probe fitted on the training features (clipped at 0)."""
    from mmbalance.reporting.evaluation import ridge_probe

    fit = ridge_probe(
        {"train": train, "val": val, "test": val}, {"train": y_train, "val": y_val, "test": y_val}
    )
    return max(0.0, float(fit["val_r2"] or 0.0))


def diagnose(run_dir: str | Path, checkpoint: str = "best", limit: int = 2000) -> dict[str, Any]:
    """Scores per modality and depth, and ``alpha_d``; written to ``<run>/diagnose.json``."""
    from mmbalance.data.loading import make_loader
    from mmbalance.experiment import build_experiment, load_run_config
    from mmbalance.training.checkpoint import load_checkpoint

    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    config.data.num_workers = 0
    data, model, _ = build_experiment(config)
    state = load_checkpoint(run_dir / "checkpoints" / f"{checkpoint}.pt")
    model.load_state_dict(state["model"])
    device = torch.device("cpu")
    model.to(device).eval()
    train = collect_features(
        model,
        make_loader(data.train, config.data, False, seed=config.seed),
        device,
        blocks=True,
        limit=limit,
    )
    val = collect_features(
        model,
        make_loader(data.val, config.data, False, seed=config.seed),
        device,
        blocks=True,
        limit=limit,
    )
    assert train.blocks is not None and val.blocks is not None
    train_f, y_train, val_f, y_val = train.blocks, train.labels, val.blocks, val.labels
    regression = data.task == "regression"
    k = data.num_classes
    c_train, c_val = y_train, y_val  # what the prototypes classify: classes, or target bins
    if regression:
        from mmbalance.methods.functional import quantile_edges, target_bins

        edges = quantile_edges(y_train, 10)
        c_train, c_val, k = target_bins(y_train, edges), target_bins(y_val, edges), len(edges) + 1
    probe_key = "probe_r2" if regression else "probe_acc"
    out: dict[str, Any] = {
        "run_dir": str(run_dir),
        "checkpoint": checkpoint,
        "modalities": {},
        "probe": probe_key,
    }
    for m in train_f:
        rows = []
        for d, (xt, xv) in enumerate(zip(train_f[m], val_f[m], strict=True)):
            s, proto_acc = prototype_scores(xt, c_train, xv, c_val, k)
            probe = (
                probe_r2(xt, y_train, xv, y_val)
                if regression
                else probe_accuracy(xt, y_train, xv, y_val, k)
            )
            rows.append(
                {
                    "depth": d + 1,
                    "prototype_score": s,
                    "prototype_acc": proto_acc,
                    probe_key: probe,
                }
            )
        out["modalities"][m] = rows
    mods = list(out["modalities"])
    depth = min(len(v) for v in out["modalities"].values())
    for key in ("prototype_score", probe_key):
        table = torch.tensor([[out["modalities"][m][d][key] for m in mods] for d in range(depth)])
        out[f"alpha_{key}"] = dam_alpha(table).tolist() if len(mods) > 1 else [0.0] * depth
    (run_dir / "diagnose.json").write_text(json.dumps(out, indent=1))
    plot_diagnosis(out, run_dir / "diagnose.png")
    return out


def plot_diagnosis(result: dict[str, Any], path: Path) -> None:
    """Probe accuracy and prototype score per depth for each modality, and ``alpha_d``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    probe = result.get("probe", "probe_acc")
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for i, (m, rows) in enumerate(result["modalities"].items()):
        depths = [r["depth"] for r in rows]
        left.plot(depths, [r[probe] for r in rows], "o-", color=f"C{i}", label=f"{m} probe")
        left.plot(
            depths, [r["prototype_score"] for r in rows], "s--", color=f"C{i}", label=f"{m} proto s"
        )
    left.set(xlabel="depth (block)", ylabel="validation score", title="Per-modality, per-depth")
    depths = list(range(1, len(result[f"alpha_{probe}"]) + 1))
    left.set_xticks(depths)
    right.set_xticks(depths)
    left.grid(alpha=0.3)
    left.legend(fontsize=8)
    width = 0.4
    right.bar([d - width / 2 for d in depths], result[f"alpha_{probe}"], width, label="probe")
    right.bar(
        [d + width / 2 for d in depths], result["alpha_prototype_score"], width, label="proto s"
    )
    right.set(
        xlabel="depth (block)", ylabel="alpha_d (CV across modalities)", title="Imbalance (Eq. 14)"
    )
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def format_report(result: dict[str, Any]) -> str:
    """A plain-text table of :func:`diagnose`'s result."""
    mods = list(result["modalities"])
    probe = result.get("probe", "probe_acc")
    name = "probe R^2" if probe == "probe_r2" else "probe acc"
    lines = [
        f"imbalance of {result['run_dir']} ({result['checkpoint']} checkpoint), validation split",
        "depth | "
        + " | ".join(f"{m}: proto s / proto acc / {name}" for m in mods)
        + " | alpha (proto s) | alpha (probe)",
    ]
    depth = len(result[f"alpha_{probe}"])
    for d in range(depth):
        cells = [
            "{:.3f} / {:.3f} / {:.3f}".format(
                result["modalities"][m][d]["prototype_score"],
                result["modalities"][m][d]["prototype_acc"],
                result["modalities"][m][d][probe],
            )
            for m in mods
        ]
        lines.append(
            f"{d + 1} | "
            + " | ".join(cells)
            + f" | {result['alpha_prototype_score'][d]:.3f} | {result[f'alpha_{probe}'][d]:.3f}"
        )
    worst = max(range(depth), key=lambda d: result[f"alpha_{probe}"][d])
    last = {m: result["modalities"][m][-1][probe] for m in mods}
    weak = min(last, key=last.__getitem__)
    lines.append(
        f"weakest modality at the last depth: {weak} ({name} {last[weak]:.3f}); "
        f"largest imbalance at depth {worst + 1}"
    )
    return "\n".join(lines)
