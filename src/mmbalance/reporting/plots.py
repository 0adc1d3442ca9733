"""Figures from a run folder, reproducing the AIM paper's diagnostics.

- Fig. 1 ``modality_accuracy.png``: per-modality accuracy over training (unimodal heads),
  optionally against unimodal-only reference runs (dashed).
- Fig. 4 ``orthogonality.png``: prototype orthogonality matrices (Eq. 16) per modality and depth.
- Fig. 5 ``aux_vs_original.png``: depth-averaged performance of original vs auxiliary blocks
  (``s_bar^m = mean_d s_d^m``), per modality.
- Fig. 6 ``depth_imbalance.png``: per-depth modality discrepancy ``alpha_d`` (Eq. 14).

Each function returns the series it drew, so tests can check the plotted numbers.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display is needed (or wanted) on a training machine
import matplotlib.pyplot as plt

from mmbalance.errors import ConfigError
from mmbalance.training.logger import read_rows

Series = dict[str, list[float]]


def _rows(run_dir: Path) -> list[dict[str, Any]]:
    rows = read_rows(run_dir / "metrics.jsonl")
    if not rows:
        raise ConfigError(f"{str(run_dir)!r} has no metrics.jsonl rows to plot")
    return rows


def primary_metric(rows: list[dict[str, Any]]) -> str:
    """``r2`` for a regression's rows (their val_r2), ``acc`` for classification."""
    return "r2" if "val_r2" in rows[-1] else "acc"


def _series(rows: list[dict[str, Any]], key: str) -> list[float]:
    """One column of the rows, an undefined value (None) as NaN: a gap in the line."""
    return [float("nan") if r.get(key) is None else float(r[key]) for r in rows]


def _modalities(rows: list[dict[str, Any]], split: str = "val") -> list[str]:
    prefix = f"{split}_{primary_metric(rows)}_"
    return [k[len(prefix) :] for k in rows[-1] if k.startswith(prefix)]


def plot_modality_accuracy(
    run_dir: Path, out: Path, references: dict[str, Path] | None = None, split: str = "val"
) -> Series:
    """Fig. 1: accuracy of each modality (its unimodal head) and of the fused model per epoch
    (R^2 for a regression)."""
    rows = _rows(run_dir)
    metric = primary_metric(rows)
    epochs = [r["epoch"] + 1 for r in rows]
    series: Series = {"fused": _series(rows, f"{split}_{metric}")}
    for m in _modalities(rows, split):
        series[m] = _series(rows, f"{split}_{metric}_{m}")
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (name, values) in enumerate(list(series.items())):
        ax.plot(epochs, values, label=name, color=f"C{i}", lw=2 if name == "fused" else 1.5)
        ref = (references or {}).get(name)
        if ref is not None:
            ref_rows = _rows(ref)
            ref_values = _series(ref_rows, f"{split}_{metric}")
            series[f"{name} (unimodal run)"] = ref_values
            ax.plot(
                [r["epoch"] + 1 for r in ref_rows],
                ref_values,
                "--",
                color=f"C{i}",
                label=f"{name} alone",
            )
    name = "R²" if metric == "r2" else "accuracy"
    ax.set(xlabel="epoch", ylabel=f"{split} {name}", title=f"Per-modality {name} (Fig. 1)")
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, out)
    return series


def _number(value: Any) -> float:
    """A logged value as a float; NaN (a gap in the line) where an epoch did not log it."""
    return math.nan if value is None or value == "" else float(value)


def _save(fig: Any, out: Path, tight: bool = True) -> None:
    if tight:
        fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def _depth_keys(row: dict[str, Any], pattern: str) -> dict[tuple[str, int], str]:
    out = {}
    for k in row:
        match = re.fullmatch(pattern, k)
        if match:
            out[(match.group(1), int(match.group(2)))] = k
    return out


def plot_depth_imbalance(run_dir: Path, out: Path) -> Series:
    """Fig. 6: ``alpha_d`` (coefficient of variation of s_d over modalities) per epoch."""
    rows = _rows(run_dir)
    keys = sorted(k for k in rows[-1] if re.fullmatch(r"method_alpha_d\d+", k))
    if not keys:
        raise ConfigError(f"{str(run_dir)!r}: no per-depth alpha logged (not an AIM run)")
    series = {k.removeprefix("method_alpha_"): [_number(r.get(k)) for r in rows] for k in keys}
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, values in series.items():
        ax.plot([r["epoch"] + 1 for r in rows], values, label=f"depth {name[1:]}")
    ax.set(
        xlabel="epoch", ylabel="alpha_d (Eq. 14)", title="Modality discrepancy per depth (Fig. 6)"
    )
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, out)
    return series


def plot_aux_vs_original(run_dir: Path, out: Path) -> Series:
    """Fig. 5: ``mean_d s_d^m`` of original and auxiliary blocks per modality per epoch."""
    rows = _rows(run_dir)
    orig = _depth_keys(rows[-1], r"method_s_(.+)_d(\d+)")
    aux = _depth_keys(rows[-1], r"method_saux_(.+)_d(\d+)")
    if not aux:
        raise ConfigError(f"{str(run_dir)!r}: no auxiliary-block scores logged (AIM with PAM)")
    mods = sorted({m for m, _ in orig})
    series: Series = {}
    for m in mods:
        for label, keys in (("original", orig), ("auxiliary", aux)):
            ks = [k for (mm, _), k in keys.items() if mm == m]
            series[f"{m} {label}"] = [sum(r[k] for k in ks) / len(ks) for r in rows]
    fig, axes = plt.subplots(1, len(mods), figsize=(5 * len(mods), 4), squeeze=False)
    epochs = [r["epoch"] + 1 for r in rows]
    for ax, m in zip(axes[0], mods, strict=True):
        ax.plot(epochs, series[f"{m} original"], label="original blocks")
        ax.plot(epochs, series[f"{m} auxiliary"], label="auxiliary blocks")
        ax.set(xlabel="epoch", ylabel="mean over depths of s (Eq. 9)", title=f"{m} (Fig. 5)")
        ax.grid(alpha=0.3)
        ax.legend()
    _save(fig, out)
    return series


def plot_orthogonality(run_dir: Path, out: Path, epoch: int | None = None) -> dict[str, Any]:
    """Fig. 4: the ``[K, K]`` prototype cosine-similarity matrices (Eq. 16) of one epoch."""
    path = run_dir / "aim_orthogonality.jsonl"
    if not path.is_file():
        raise ConfigError(f"{str(run_dir)!r}: no aim_orthogonality.jsonl (AIM with prototypes)")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    row = rows[-1] if epoch is None else next(r for r in rows if r["epoch"] == epoch)
    mats = row["matrices"]
    mods = list(mats)
    depth = len(mats[mods[0]])
    fig, axes = plt.subplots(
        len(mods), depth, figsize=(2.6 * depth, 2.6 * len(mods)), squeeze=False
    )
    for i, m in enumerate(mods):
        for d in range(depth):
            ax = axes[i][d]
            im = ax.imshow(mats[m][d], vmin=-1, vmax=1, cmap="coolwarm")
            ax.set_title(f"{m}, depth {d + 1}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.colorbar(im, ax=axes, shrink=0.8)
    fig.suptitle(f"Prototype orthogonality O_d^m (Eq. 16), epoch {row['epoch'] + 1}")
    _save(fig, out, tight=False)
    return {"epoch": row["epoch"], "matrices": mats}


def plot_run(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    references: dict[str, Path] | None = None,
) -> list[Path]:
    """Every figure that applies to the run; returns the files written (``<run>/plots``)."""
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir / "plots"
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "modality_accuracy.png"]
    plot_modality_accuracy(run_dir, written[0], references)
    for name, fn in (
        ("depth_imbalance.png", plot_depth_imbalance),
        ("aux_vs_original.png", plot_aux_vs_original),
        ("orthogonality.png", plot_orthogonality),
    ):
        try:
            fn(run_dir, out / name)
        except ConfigError:
            continue  # that diagnostic was not logged by this method
        written.append(out / name)
    return written
