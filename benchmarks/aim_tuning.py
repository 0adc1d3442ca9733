"""AIM's tuning grids (``benchmarks/tuning/aim_*.yaml``): AIM's options against joint training
on the suite's **validation** split, three seeds each, so that a default is chosen without
looking at the test split (the test columns are printed beside, never used for the choice).

Each grid runs through ``mmbalance compare`` (resumable), into ``benchmarks/runs/tuning/``;
the table goes to ``benchmarks/results/aim_tuning.{json,md}``. Besides the accuracies it fits
a **fused probe** (one linear classifier on all modalities' frozen features together, the
probe of ``mmbalance.reporting.evaluation``): when it is well above the model's own head, the
features hold more than the trained head uses.

    python benchmarks/aim_tuning.py --grids regression --benchmarks reg --workers 2
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Any

from common import RESULTS, ROOT, machine

from mmbalance.reporting.compare import compare, finished_records, load_grid
from mmbalance.reporting.evaluation import fused_probe_accuracy
from mmbalance.reporting.stats import format_interval, paired_interval

GRIDS = ROOT / "tuning"
NAMES = {"vec": "digits_vec", "seq": "digits_seq", "av": "digits_av", "reg": "regress_av"}
# grid files benchmarks/tuning/<set>_<benchmark>.yaml, results benchmarks/results/<set>_tuning.*
# (the step-7 and step-8 grids, "aim" and "aim_head", measured options since removed: they
# are in tuning/archive/ with the commits that ran them)
GRID_SETS = {
    "regression": "docs/regression.md, AIM's regression form (target bins or block error)",
}


def _metric(record: dict[str, Any], key: str) -> float:
    """Accuracy, or R^2 for a regression's runs."""
    m = "r2" if "val_r2" in record["val"] else "acc"
    if key == "val":
        return float(record["val"][f"val_{m}"])
    if key == "test":
        return float(record["test"][f"test_{m}"])
    if key.startswith("fused_probe_"):
        return float(record["fused_probe"][key[len("fused_probe_") :] + f"_{m}"])
    return float(record["evaluation"]["probe"][key][f"test_{m}"])


def gradient_cosines(records: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per modality, the epoch means of ``mod_ce_cos_<m>`` (logged by ``mod_projection``:
    cosine of L_mod's and CE's gradient on the encoder) over every seed: mean, min, max."""
    values: dict[str, list[float]] = {}
    for r in records:
        with (Path(r["run_dir"]) / "metrics.csv").open() as fh:
            for row in csv.DictReader(fh):
                for k, v in row.items():
                    if k.startswith("method_mod_ce_cos_") and v not in ("", None):
                        values.setdefault(k[len("method_mod_ce_cos_") :], []).append(float(v))
    return {m: {"mean": sum(v) / len(v), "min": min(v), "max": max(v)} for m, v in values.items()}


def run_folder(grids: str, bench: str) -> Path:
    """Where a tuning grid's runs go: ``runs/tuning/<benchmark>`` for the step-7 grids (``aim``),
    ``runs/tuning/<grids>_<benchmark>`` for the others."""
    name = NAMES[bench] if grids == "aim" else f"{grids}_{NAMES[bench]}"
    return ROOT / "runs" / "tuning" / name


def rows_for(bench: str, workers: int, run: bool, grids: str = "aim") -> dict[str, Any] | None:
    """Run (or finish) one grid and tabulate it, paired by seed with its joint rows; None when
    no run of it is on this machine (a fresh clone holds the results, not the run folders)."""
    import dataclasses

    grid = load_grid(GRIDS / f"{grids}_{bench}.yaml")
    grid = dataclasses.replace(grid, output_dir=str(run_folder(grids, bench)))
    if run:
        compare(grid, workers=workers)
    records = finished_records(grid)
    if not records:
        return None
    for r in records:  # the fused probe is cached in the run folder, like the per-modality ones
        r["fused_probe"] = fused_probe_accuracy(r["run_dir"])
    by_label: dict[str, dict[int, dict[str, Any]]] = {}
    for r in records:
        by_label.setdefault(r["label"], {})[int(r["seed"])] = r
    joint = by_label.get("joint", {})
    modalities = sorted(next(iter(records))["evaluation"]["probe"]) if records else []
    keys = ["val", "test", "fused_probe_val", "fused_probe_test", *modalities]
    regression = "val_r2" in records[0]["val"]
    out: dict[str, Any] = {
        "labels": {},
        "modalities": modalities,
        "metric": "R²" if regression else "acc",
    }
    for label, seeds in by_label.items():
        paired = sorted(s for s in seeds if s in joint)
        entry: dict[str, Any] = {"seeds": sorted(seeds)}
        for k in keys:
            vals = [_metric(seeds[s], k) for s in sorted(seeds)]
            entry[k] = sum(vals) / len(vals)
            if label != "joint" and len(paired) >= 2:
                entry[f"{k}_vs_joint"] = paired_interval(
                    [_metric(seeds[s], k) for s in paired], [_metric(joint[s], k) for s in paired]
                )
        cosines = gradient_cosines(list(seeds.values()))
        if cosines:
            entry["mod_ce_cos"] = cosines
        out["labels"][label] = entry
    return out


def markdown(bench: str, table: dict[str, Any]) -> str:
    mods = table["modalities"]
    metric = table.get("metric", "acc")
    head = (
        f"| configuration | seeds | **val {metric}** | val − joint | fused probe val | "
        f"test {metric} | test − joint | " + " | ".join(f"{m} probe − joint" for m in mods) + " |"
    )
    lines = [f"### {NAMES[bench]}", "", head, "|" + "---|" * (7 + len(mods))]
    for label, e in table["labels"].items():

        def diff(k: str, entry: dict[str, Any] = e) -> str:
            d = entry.get(f"{k}_vs_joint")
            return format_interval(d) if d else ""

        lines.append(
            f"| {label} | {len(e['seeds'])} | {100 * e['val']:.2f} | {diff('val')} | "
            f"{100 * e['fused_probe_val']:.2f} | {100 * e['test']:.2f} | {diff('test')} | "
            + " | ".join(diff(m) for m in mods)
            + " |"
        )
    for label, e in table["labels"].items():
        if "mod_ce_cos" in e:
            lines.append(
                f"\n`{label}`: cosine of L_mod's and CE's gradient on each encoder, epoch means "
                "over every seed, mean (min, max): "
                + ", ".join(
                    f"{m} {c['mean']:.2f} ({c['min']:.2f}, {c['max']:.2f})"
                    for m, c in e["mod_ce_cos"].items()
                )
            )
    return "\n".join(lines) + "\n"


def suite_means(payload: dict[str, Any]) -> str:
    """Mean validation accuracy over the benchmarks, for the settings every grid ran."""
    tables = [payload[n] for n in NAMES.values() if n in payload]
    if len(tables) < 2:
        return ""
    common = [k for k in tables[0]["labels"] if all(k in t["labels"] for t in tables)]
    names = [n for n in NAMES.values() if n in payload]
    lines = [
        "### Mean over the benchmarks (validation)",
        "",
        "| configuration | " + " | ".join(names) + " | mean |",
        "|---|" + "---|" * (len(names) + 1),
    ]
    for label in common:
        vals = [100 * t["labels"][label]["val"] for t in tables]
        lines.append(
            f"| {label} | "
            + " | ".join(f"{v:.2f}" for v in vals)
            + f" | {sum(vals) / len(vals):.2f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--benchmarks", nargs="+", choices=list(NAMES), default=list(NAMES))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-run", action="store_true", help="tabulate finished runs only")
    parser.add_argument(
        "--grids",
        choices=list(GRID_SETS),
        default="regression",
        help="which grids: " + "; ".join(f"{k}: {v}" for k, v in GRID_SETS.items()),
    )
    args = parser.parse_args()
    path = RESULTS / f"{args.grids}_tuning.json"
    payload: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    for bench in args.benchmarks:
        table = rows_for(bench, args.workers, not args.no_run, args.grids)
        if table is not None:  # else keep the stored table
            payload[NAMES[bench]] = table
    payload["machine"] = machine()
    payload["command"] = (
        f"python benchmarks/aim_tuning.py --grids {args.grids} "
        f"--benchmarks {' '.join(args.benchmarks)} --workers {args.workers}"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1))
    intro = (
        "AIM's options against joint training on the **validation** split (accuracy, or R² x 100 "
        "for a regression, at the validation-selected epoch, mean over seeds; differences "
        "paired by seed, mean [95% CI], points). Choices are made on the validation columns; "
        "the test columns are for the record. Fused probe: one linear probe on every "
        "modality's frozen features together.\n\n"
        f"`{payload['command']}`\n\n"
    )
    tables = [markdown(b, payload[NAMES[b]]) for b in NAMES if NAMES[b] in payload]
    tables.append(suite_means(payload))
    (RESULTS / f"{args.grids}_tuning.md").write_text(intro + "\n".join(tables))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
