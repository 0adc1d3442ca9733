"""The imbalance certificate of a benchmark: does joint training starve a modality?

From joint-training runs and unimodal-only runs of the same seeds (``mmbalance imbalance`` or a
``compare`` grid with ``unimodal: true``), per modality m and paired by seed:

- ``alone``: test accuracy of m trained alone (the unimodal model's own head);
- ``joint probe``: the linear probe of m's encoder inside the jointly trained model
  (:mod:`mmbalance.reporting.evaluation`), the paper's Table I view;
- the gap ``joint probe - alone`` with its 95% t-interval over seeds (and ``joint probe -
  alone probe``, the same instrument on both sides);

and the late-fusion ensemble of the unimodal models (mean of their class probabilities) against
joint training. The benchmark passes when its most starved modality's probe is at least
``threshold`` points below its unimodal accuracy with the interval's upper end below 0.

For a regression the same, in R^2 (the probes are ridge regressions; the ensemble averages
the unimodal models' predictions): the certificate's gap is in R^2, ``threshold`` 0.08 of it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from mmbalance.reporting.evaluation import test_probabilities
from mmbalance.reporting.stats import format_interval, mean_std, paired_interval
from mmbalance.tasks import r2

THRESHOLD = 0.08  # the starved modality must score >= 8 pts lower inside joint training


def unimodal_label(m: str) -> str:
    """The label ``compare`` gives the unimodal-only runs of modality ``m``."""
    return f"unimodal {m}"


def _by_seed(records: list[dict[str, Any]], label: str) -> dict[int, dict[str, Any]]:
    return {
        r["seed"]: r
        for r in records
        if r["label"] == label and "failed" not in r and r.get("sweep_value") is None
    }


def imbalance_certificate(
    records: list[dict[str, Any]],
    modalities: list[str],
    joint: str = "joint",
    threshold: float = THRESHOLD,
) -> dict[str, Any] | None:
    """The certificate from ``compare`` records (None without joint and unimodal runs)."""
    joint_runs = _by_seed(records, joint)
    alone_runs = {m: _by_seed(records, unimodal_label(m)) for m in modalities}
    seeds = sorted(set(joint_runs).intersection(*(set(v) for v in alone_runs.values())))
    if not seeds:
        return None
    regression = any("test_r2" in r["test"] for r in joint_runs.values())
    key = "test_r2" if regression else "test_acc"
    out: dict[str, Any] = {
        "seeds": seeds,
        "threshold": threshold,
        "modalities": {},
        "metric": "r2" if regression else "acc",
    }
    for m in modalities:
        alone = [alone_runs[m][s]["test"][key] for s in seeds]
        alone_probe = [alone_runs[m][s]["evaluation"]["probe"][m][key] for s in seeds]
        joint_probe = [joint_runs[s]["evaluation"]["probe"][m][key] for s in seeds]
        if any(v is None for v in (*alone, *alone_probe, *joint_probe)):
            return None  # an undefined R^2 (constant targets): no certificate
        out["modalities"][m] = {
            "alone": mean_std(alone),
            "alone_probe": mean_std(alone_probe),
            "joint_probe": mean_std(joint_probe),
            "gap": paired_interval(joint_probe, alone),
            "gap_probe": paired_interval(joint_probe, alone_probe),
        }
    ensemble, fused = [], []
    for s in seeds:
        probs = [test_probabilities(alone_runs[m][s]["run_dir"]) for m in modalities]
        labels = probs[0][1]
        mean_probs = np.mean([p for p, _ in probs], axis=0)
        if regression:  # the mean of the unimodal predictions
            score = r2(torch.from_numpy(mean_probs), torch.from_numpy(labels))
            ensemble.append(float("nan") if score is None else score)
        else:
            ensemble.append(float((mean_probs.argmax(1) == labels).mean()))
        fused.append(joint_runs[s]["test"][key])
    out["ensemble"] = mean_std(ensemble)
    out["joint"] = mean_std(fused)
    out["ensemble_minus_joint"] = paired_interval(ensemble, fused)
    starved = min(modalities, key=lambda m: out["modalities"][m]["gap"]["mean"])
    gap = out["modalities"][starved]["gap"]
    passed = gap["mean"] <= -threshold and not math.isnan(gap["high"]) and gap["high"] < 0
    out["starved"] = starved
    out["passed"] = bool(passed)
    return out


def _pct(cell: tuple[float, float]) -> str:
    return f"{100 * cell[0]:.2f} ± {100 * cell[1]:.2f}"


def certificate_markdown(cert: dict[str, Any], name: str) -> str:
    """The certificate as a Markdown section."""
    seeds = ", ".join(map(str, cert["seeds"]))
    measure = "test R² x 100" if cert.get("metric") == "r2" else "test accuracy %"
    lines = [
        f"Imbalance certificate of `{name}` (seeds {seeds}; {measure}, mean ± sample "
        "std; gaps are paired by seed, mean [95% CI], points).",
        "",
        "| modality | trained alone | alone, probe | probe inside joint | gap (joint probe - "
        "alone) | gap (probe - probe) |",
        "|---|---|---|---|---|---|",
    ]
    for m, row in cert["modalities"].items():
        lines.append(
            f"| {m} | {_pct(row['alone'])} | {_pct(row['alone_probe'])} | "
            f"{_pct(row['joint_probe'])} | {format_interval(row['gap'])} | "
            f"{format_interval(row['gap_probe'])} |"
        )
    lines += [
        "",
        f"- Late-fusion ensemble of the unimodal models: {_pct(cert['ensemble'])}; joint "
        f"training: {_pct(cert['joint'])}; ensemble - joint: "
        f"{format_interval(cert['ensemble_minus_joint'])}.",
    ]
    gap = cert["modalities"][cert["starved"]]["gap"]
    verdict = "PASSES" if cert["passed"] else "FAILS"
    lines.append(
        f"- Starved modality: **{cert['starved']}**, {format_interval(gap)} pts inside joint "
        f"training. Criterion (>= {100 * cert['threshold']:.0f} pts below, interval below 0): "
        f"**{verdict}**."
    )
    return "\n".join(lines) + "\n"
