"""Convergence as the AIM paper's Fig. 8 measures it, from the suite's per-epoch validation
curves (``curve`` of every run's compare record): for every method on every benchmark, the
epoch, training wall time and cumulative training FLOPs at which validation accuracy first
reaches joint training's best validation accuracy (of the same seed), and 99% of the method's
own peak; and the accuracy-against-FLOPs figure of each benchmark.

Cumulative FLOPs after epoch e are ``e x train samples x FLOPs per sample`` (the steady-state
cost of a training step, ``reporting/cost.py``, over a method's whole cost cycle); wall time is
the sum of the epochs' ``time_epoch`` (training and evaluation of that epoch, 2 runs at a time
on 2 cores: noisy, the FLOPs are not).

    python benchmarks/convergence.py            # tables from benchmarks/results/suite_*.json
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from common import RESULTS

SUITE = ["digits_vec", "digits_seq", "digits_av"]


def _first(curve: list[float | None], level: float) -> int | None:
    """1-based epoch at which ``curve`` first reaches ``level`` (None: never)."""
    for e, v in enumerate(curve):
        if v is not None and v >= level - 1e-12:
            return e + 1
    return None


def run_convergence(record: dict[str, Any], joint_best: float | None) -> dict[str, Any] | None:
    """One run's epochs / seconds / FLOPs to joint's best and to 99% of its own peak."""
    curve = record.get("curve") or {}
    values = curve.get("val_acc") or curve.get("val_r2")
    if not values:
        return None
    times = [t or 0.0 for t in curve.get("time_epoch", [])]
    per_epoch = (record.get("flops_per_sample") or 0.0) * record.get("train_samples", 0)
    peak = max(v for v in values if v is not None)
    out: dict[str, Any] = {"peak": peak}
    for name, level in (("joint_best", joint_best), ("own99", 0.99 * peak)):
        epoch = None if level is None else _first(values, level)
        out[name] = None
        if epoch is not None:
            out[name] = {
                "epoch": epoch,
                "seconds": sum(times[:epoch]),
                "flops": per_epoch * epoch if per_epoch else None,
            }
    return out


def benchmark_convergence(data: dict[str, Any]) -> dict[str, Any]:
    """Per label of a suite results file: the mean over seeds of each measure, and how many
    seeds reached joint training's best validation accuracy."""
    runs = [r for r in data["runs"] if "failed" not in r and r.get("curve")]
    joint_best = {
        r["seed"]: max(
            v for v in (r["curve"].get("val_acc") or r["curve"]["val_r2"]) if v is not None
        )
        for r in runs
        if r["label"] == "joint"
    }
    out: dict[str, Any] = {}
    for label in dict.fromkeys(r["label"] for r in runs):
        if label.startswith("unimodal"):
            continue
        per_seed = [
            run_convergence(r, joint_best.get(r["seed"])) for r in runs if r["label"] == label
        ]
        per_seed = [p for p in per_seed if p is not None]
        entry: dict[str, Any] = {"seeds": len(per_seed)}
        for name in ("joint_best", "own99"):
            hit = [p[name] for p in per_seed if p[name] is not None]
            entry[f"{name}_reached"] = len(hit)
            for key in ("epoch", "seconds", "flops"):
                vals = [h[key] for h in hit if h[key] is not None]
                entry[f"{name}_{key}"] = statistics.fmean(vals) if vals else None
        entry["peak"] = statistics.fmean(p["peak"] for p in per_seed) if per_seed else None
        out[label] = entry
    return out


def markdown(name: str, table: dict[str, Any], labels: list[str] | None = None) -> str:
    """A convergence table; FLOPs relative to joint training's to its own 99% peak."""
    joint = table.get("joint", {})
    base = joint.get("own99_flops")

    def rel(v: float | None) -> str:
        return "n/a" if v is None or not base else f"{v / base:.2f}x"

    def num(v: float | None, digits: int = 1) -> str:
        return "n/a" if v is None else f"{v:.{digits}f}"

    lines = [
        f"#### {name}",
        "",
        "| method | reaches joint's best val (seeds) | at epoch | train time (s) | FLOPs (x "
        "joint's to its 99% peak) | epoch to 99% of own peak | time (s) | FLOPs (x) | "
        "peak val (%) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label in labels or list(table):
        e = table.get(label)
        if e is None:
            continue
        lines.append(
            f"| {label} | {e['joint_best_reached']}/{e['seeds']} | {num(e['joint_best_epoch'])} | "
            f"{num(e['joint_best_seconds'])} | {rel(e['joint_best_flops'])} | "
            f"{num(e['own99_epoch'])} | {num(e['own99_seconds'])} | {rel(e['own99_flops'])} | "
            f"{num(100 * e['peak'], 2) if e['peak'] is not None else 'n/a'} |"
        )
    return "\n".join(lines) + "\n"


def figure(name: str, data: dict[str, Any], labels: list[str], out: Path) -> Path:
    """Validation accuracy (mean over seeds) against cumulative training FLOPs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for label in labels:
        runs = [r for r in data["runs"] if r["label"] == label and r.get("curve")]
        if not runs:
            continue
        curves = [r["curve"].get("val_acc") or r["curve"]["val_r2"] for r in runs]
        n = min(len(c) for c in curves)
        mean = [100 * statistics.fmean(c[e] for c in curves) for e in range(n)]
        per_epoch = (runs[0].get("flops_per_sample") or 0) * runs[0]["train_samples"]
        xs = [per_epoch * (e + 1) for e in range(n)] if per_epoch else list(range(1, n + 1))
        style = "-" if not label.startswith("aim") else "-o"
        ax.plot(xs, mean, style, ms=3, label=label, lw=2 if label in ("joint", "aim") else 1.2)
    ax.set_xscale("log")
    ax.set(
        xlabel="cumulative training FLOPs",
        ylabel="validation accuracy (%)",
        title=f"{name}: accuracy vs training compute (Fig. 8)",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main() -> None:
    for name in SUITE:
        path = RESULTS / f"suite_{name}.json"
        if not path.is_file():
            continue
        data = json.loads(path.read_text())
        print(markdown(name, benchmark_convergence(data)))


if __name__ == "__main__":
    main()
