"""Does AIM still lift the starved modality on other architectures? (issue #24)

digits_av with a timm CNN and a timm ViT in place of the ResNet18 x0.25
(``benchmarks/timm/grid_av_{cnn,vit}.yaml``): joint training and AIM (its default), 3 seeds,
each modality alone for the imbalance, through ``mmbalance compare`` (resumable). Writes
``benchmarks/results/timm_av.{json,md}``: test accuracy at the validation-selected epoch,
AIM − joint paired by seed for the fused model and each modality's probe, the imbalance
certificate of each architecture, and AIM's cost relative to joint training (training FLOPs per
sample and wall time per run). Needs timm and the torchvision built for the installed torch
(docs/encoders.md); the torch version is recorded with the numbers.

    python benchmarks/timm_av.py --workers 2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
from typing import Any

from common import RESULTS, ROOT, machine

from mmbalance.reporting.compare import compare, finished_records, load_grid
from mmbalance.reporting.stats import format_interval, paired_interval

CHANCE = 1 / 10  # digits_av's ten classes
GRIDS = {
    "cnn": "timm resnet18 (channels 16-32-64-128)",
    "vit": "timm ViT (patch 8, width 64, 4 layers; normalize: data, AdamW, batch 32, 40 epochs)",
}


def summarize(
    name: str, records: list[dict[str, Any]], cert: dict[str, Any] | None
) -> dict[str, Any]:
    """Rows for joint training and every AIM label of the grid; each AIM label paired with
    joint by seed; the AIM label with the best mean validation accuracy is the one reported
    (``selected``: one configuration per grid, chosen on validation, never on test)."""
    by = {(r["label"], int(r["seed"])): r for r in records if "failed" not in r}
    labels = sorted({label for (label, _) in by if label == "aim" or label.startswith("aim ")})
    seeds = sorted(
        set.intersection(*({s for (lb, s) in by if lb == label} for label in ["joint", *labels]))
    )
    mods = sorted(next(iter(by.values()))["evaluation"]["probe"])

    def acc(label: str, key: str, split: str = "test") -> list[float]:
        out = []
        for s in seeds:
            r = by[(label, s)]
            out.append(
                float(r[split][f"{split}_acc"])
                if key == "fused"
                else float(r["evaluation"]["probe"][key][f"{split}_acc"])
            )
        return out

    table: dict[str, Any] = {"seeds": seeds, "modalities": mods, "rows": {}, "paired": {}}
    for label in ("joint", *labels):
        row = {k: statistics.fmean(acc(label, k)) for k in ("fused", *mods)}
        row["std"] = statistics.stdev(acc(label, "fused")) if len(seeds) > 1 else 0.0
        row["val"] = statistics.fmean(acc(label, "fused", "val"))
        row["seconds"] = statistics.fmean(float(by[(label, s)]["seconds"]) for s in seeds)
        row["flops"] = by[(label, seeds[0])]["flops_per_sample"]
        table["rows"][label] = row
    for label in labels:
        table["paired"][label] = {
            k: paired_interval(acc(label, k), acc("joint", k)) for k in ("fused", *mods)
        }
    selected = max(labels, key=lambda label: table["rows"][label]["val"])
    table["selected"] = selected
    joint, aim = table["rows"]["joint"], table["rows"][selected]
    table["cost"] = {
        "flops_ratio": aim["flops"] / joint["flops"] if joint["flops"] else None,
        "time_ratio": aim["seconds"] / joint["seconds"],
    }
    table["certificate"] = cert
    # which code trained each run (BENCHMARKS.md's "Which code produced these numbers")
    table["runs"] = [
        {k: r.get(k) for k in ("label", "seed", "git_commit", "code_sha256")}
        for r in records
        if "failed" not in r
    ]
    return table


def markdown(payload: dict[str, Any]) -> str:
    m = payload["machine"]
    lines = [
        "Test accuracy (%) at the validation-selected epoch, mean over seeds "
        f"{payload['seeds']}; AIM − joint paired by seed, mean [95% CI], points; per-modality "
        "columns are linear probes on the frozen encoder features. Cost: training FLOPs per "
        "sample and wall time per run, AIM / joint.",
        "",
        f"`{payload['command']}` — {m['cpu']}, {m['cores']} cores, torch {m['torch']}, "
        f"timm {payload['timm']}, mmbalance @ {m['git_commit']}.",
        "",
    ]
    for key, t in payload["grids"].items():
        mods = t["modalities"]
        cert = t.get("certificate") or {}
        starved = cert.get("starved")
        lines += [
            f"### digits_av, {GRIDS[key]}",
            "",
            "| method | val acc | test acc | "
            + " | ".join(f"{x} probe" for x in mods)
            + " | time (s) | FLOPs / sample |",
            "|---|---|---|" + "---|" * (len(mods) + 2),
        ]
        for label, row in t["rows"].items():
            cells = [f"{100 * row['val']:.2f}"]
            cells.append(f"{100 * row['fused']:.2f} ± {100 * row['std']:.2f}")
            cells += [f"{100 * row[x]:.2f}" for x in mods]
            cells += [f"{row['seconds']:.0f}", f"{row['flops'] / 1e6:.1f} M"]
            mark = " (selected on val)" if label == t["selected"] and len(t["paired"]) > 1 else ""
            lines.append(f"| {label}{mark} | " + " | ".join(cells) + " |")
        lines.append("")
        for label, paired in t["paired"].items():
            lines.append(
                f"- {label} − joint: fused {format_interval(paired['fused'])}; "
                + "; ".join(f"{x} probe {format_interval(paired[x])}" for x in mods)
                + "."
            )
        lines += [
            "",
            f"Cost of AIM ({t['selected']}): {t['cost']['flops_ratio']:.2f}x joint training's "
            f"FLOPs per sample, {t['cost']['time_ratio']:.2f}x its wall time per run.",
        ]
        if t["rows"]["joint"]["fused"] < 2 * CHANCE:
            # a grid whose encoders learned nothing cannot say what AIM does to them
            lines.append(
                f"Joint training stays near chance ({100 * t['rows']['joint']['fused']:.2f}% "
                f"on {round(1 / CHANCE)} classes): this encoder did not learn the benchmark, so "
                "this grid measures no effect of AIM (docs/encoders.md)."
            )
        if starved:
            gap = cert["modalities"][starved]["gap"]
            lines.append(
                f"Imbalance under joint training: **{starved}** is starved, "
                f"{format_interval(gap)} points inside joint training against alone "
                "(passes the suite's criterion)."
                if cert["passed"]
                else f"Imbalance under joint training: none by the suite's criterion; "
                f"{starved} is the furthest below its unimodal accuracy, "
                f"{format_interval(gap)} points inside joint training against alone."
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-run", action="store_true")
    args = parser.parse_args()
    import timm

    payload: dict[str, Any] = {"grids": {}, "seeds": [0, 1, 2], "timm": timm.__version__}
    for key in GRIDS:
        grid = load_grid(ROOT / "timm" / f"grid_av_{key}.yaml")
        grid = dataclasses.replace(
            grid, output_dir=str(ROOT / "runs" / "timm" / f"digits_av_{key}")
        )
        if not args.no_run:
            compare(grid, workers=args.workers)
        records = finished_records(grid)
        results = json.loads(
            (ROOT / "runs" / "timm" / f"digits_av_{key}" / "results.json").read_text()
        )
        payload["grids"][key] = summarize(key, records, results.get("certificate"))
    payload["machine"] = machine()
    payload["command"] = "python benchmarks/timm_av.py --workers 2"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "timm_av.json").write_text(json.dumps(payload, indent=1))
    (RESULTS / "timm_av.md").write_text(markdown(payload))
    print((RESULTS / "timm_av.md").read_text())


if __name__ == "__main__":
    main()
