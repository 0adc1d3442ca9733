"""The imbalance suite's grids (``benchmarks/suite/*.yaml``): every method x seeds on each
benchmark, with each modality trained alone for the imbalance certificate.

Each grid runs through ``mmbalance compare`` (resumable: finished runs are skipped, an
interrupted one resumes from its last checkpoint), then the finished runs' records, tables and
certificate are written to ``benchmarks/results/suite_<benchmark>.json`` / ``.md``, which
``write_report.py`` turns into BENCHMARKS.md. ``--only`` runs some of a grid's labels first
(the rest later, into the same folders); the results always cover every finished run.

Runs whose folders are not on this machine (a fresh clone holds the results files, not the
run folders) are taken from the previous ``suite_<benchmark>.json``, except for the methods
that ``--only`` runs, whose stored runs are all dropped (their code changed): so after a change
to one method, ``--only`` re-runs its labels, the other methods' stored runs stay in the tables
(the results file lists them under ``stored_labels``, with the commit that measured them), and
the changed method's labels not re-run yet are listed as not measured.

    python benchmarks/suite.py --benchmarks vec seq av --workers 2
    python benchmarks/suite.py --benchmarks av --only joint aim mmpareto "unimodal audio"
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from common import RESULTS, ROOT, machine

from mmbalance.reporting.compare import (
    GridConfig,
    compare,
    finished_records,
    load_grid,
    summarize,
)

GRIDS = ROOT / "suite"
NAMES = {"vec": "digits_vec", "seq": "digits_seq", "av": "digits_av", "reg": "regress_av"}


def method_diagnostics(records: list[dict[str, Any]]) -> dict[str, dict[str, list[float]]]:
    """Per label, each ``method_*`` column of metrics.csv (OGM's coefficients, PMR's beta, ...):
    the mean over seeds at the first epoch, a quarter, half, three quarters and the last. AIM's
    per-depth columns are left out (its section and figures show them)."""
    out: dict[str, dict[str, list[float]]] = {}
    for label in dict.fromkeys(r["label"] for r in records):
        if label.startswith("aim") or label.startswith("unimodal"):
            continue
        series: dict[str, list[list[float]]] = {}
        for r in records:
            path = Path(r["run_dir"]) / "metrics.csv"
            if r["label"] != label or not path.is_file():
                continue
            with path.open() as fh:
                rows = list(csv.DictReader(fh))
            n = len(rows)
            picks = sorted({0, n // 4, n // 2, (3 * n) // 4, n - 1})
            for k in rows[0]:
                if k.startswith("method_"):
                    vals = [rows[i][k] for i in picks]
                    if all(v not in ("", None) for v in vals):
                        series.setdefault(k[len("method_") :], []).append([float(v) for v in vals])
        out[label] = {k: [sum(c) / len(c) for c in zip(*v, strict=True)] for k, v in series.items()}
    return out


def stored_records(
    old: dict[str, Any], grid: GridConfig, records: list[dict[str, Any]], fresh: set[str]
) -> list[dict[str, Any]]:
    """The grid's runs that have no finished folder here, from the previous results ``old``:
    same label and seed, never a run of a method in ``fresh`` (re-run on this machine)."""
    have = {(r["label"], int(r["seed"])) for r in records}
    out = []
    for r in old.get("runs", []):
        key = (r["label"], int(r["seed"]))
        if key in have or r["method"] in fresh or r["label"] not in grid.methods:
            continue
        if int(r["seed"]) in grid.seeds:
            out.append(r)
    return out


def dirty_sources() -> list[str]:
    """The package's source files that differ from the commit (``git status``): runs trained
    from them would enter the tables as the commit's, which they are not."""
    import subprocess

    out = subprocess.run(
        ["git", "status", "--porcelain", "--", "src"],
        cwd=ROOT.parent,
        capture_output=True,
        text=True,
    ).stdout
    return [line[3:] for line in out.splitlines() if line.strip()]


def run(bench: str, seeds: list[int] | None, only: list[str] | None, workers: int) -> None:
    grid = load_grid(GRIDS / f"grid_{bench}.yaml")
    # the grid's output_dir is relative to the repo root; this script may run from anywhere
    grid = dataclasses.replace(grid, output_dir=str(ROOT / "runs" / "suite" / NAMES[bench]))
    todo = grid  # what runs now; the results always cover every finished run of the grid
    if seeds:
        todo = dataclasses.replace(todo, seeds=list(seeds))
    if only:
        unknown = [k for k in only if k not in grid.methods]
        if unknown:
            raise SystemExit(f"--only {unknown}: not in {GRIDS}/grid_{bench}.yaml")
        todo = dataclasses.replace(todo, methods={k: grid.methods[k] for k in only})
    compare(todo, workers=workers)
    records = finished_records(grid)
    previous = RESULTS / f"suite_{NAMES[bench]}.json"
    old = json.loads(previous.read_text()) if previous.is_file() else {}
    fresh = {grid.methods[k].get("name") or k for k in only or []}  # method names
    stored = stored_records(old, grid, records, fresh)
    records += stored
    order = list(grid.methods)  # the grid's row order, whichever machine ran each run
    records.sort(
        key=lambda r: (order.index(r["label"]) if r["label"] in order else len(order), r["seed"])
    )
    modalities = json.loads((Path(grid.output_dir) / "results.json").read_text())["modalities"]
    # The certificate reads the joint and unimodal runs' test predictions from their folders:
    # where those runs are stored ones, their stored certificate is the same computation.
    cert_labels = {"joint"} | {k for k in grid.methods if k.startswith("unimodal")}
    stored_cert = None
    if any(r["label"] in cert_labels for r in stored):
        stored_cert = old["certificate"]
    text, payload = summarize(grid, records, modalities, stored_cert)
    payload["command"] = f"python benchmarks/suite.py --benchmarks {bench} --workers {workers}"
    payload["machine"] = machine()
    payload["method_diagnostics"] = method_diagnostics(records)
    if stored:
        payload["stored_labels"] = sorted({r["label"] for r in stored})
        payload["stored_commit"] = old.get("stored_commit") or old["machine"].get("git_commit")
        for label in payload["stored_labels"]:  # their metrics.csv stayed on the old machine
            if label in old.get("method_diagnostics", {}):
                payload["method_diagnostics"][label] = old["method_diagnostics"][label]
    payload["grid_file"] = f"benchmarks/suite/grid_{bench}.yaml"
    for r in payload["runs"]:  # paths on this machine mean nothing elsewhere
        r["run_dir"] = os.path.relpath(r["run_dir"], ROOT.parent)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"suite_{NAMES[bench]}.json").write_text(json.dumps(payload, indent=1))
    (RESULTS / f"suite_{NAMES[bench]}.md").write_text(text)
    print(f"wrote {RESULTS / f'suite_{NAMES[bench]}.json'} ({len(records)} runs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--benchmarks", nargs="+", choices=list(NAMES), default=list(NAMES))
    parser.add_argument(
        "--seeds", type=int, nargs="+", help="run only these seeds now (default: the grid's)"
    )
    parser.add_argument("--only", nargs="+", help="run these labels of the grid now")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--allow-dirty",
        action="store_true",
        help="train although src/ differs from the commit (the tables then say so)",
    )
    args = parser.parse_args()
    dirty = dirty_sources()
    if dirty and not args.allow_dirty:
        raise SystemExit(
            f"src/ has uncommitted changes ({', '.join(dirty[:5])}): commit them first, so the "
            "results name the code that produced them (or pass --allow-dirty)"
        )
    for bench in args.benchmarks:
        run(bench, args.seeds, args.only, args.workers)


if __name__ == "__main__":
    main()
