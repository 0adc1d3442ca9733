"""Re-train one seed of a suite grid with the code as it is now and compare every logged number
with the stored runs of ``benchmarks/runs/suite`` (what BENCHMARKS.md was built from): the check
that a refactor changed nothing training computes.

    python benchmarks/reproduce_check.py --benchmark vec --seed 0 --workers 2

Runs with the thread count the stored runs used (``--workers 2`` on a 2-core machine: one
thread each): CPU kernels reduce in thread-dependent orders, so another count drifts at the
1e-7 level from the first step. Prints, per label, whether ``metrics.jsonl`` (every epoch's
losses, accuracies and method diagnostics, timings left out), the selected epoch's val/test
metrics and the post-hoc probes are identical, and the first differing columns where not.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

from common import RESULTS, ROOT, machine

from mmbalance.experiment import code_fingerprint
from mmbalance.reporting.compare import _slug, compare, load_grid

NAMES = {
    "vec": "digits_vec",
    "seq": "digits_seq",
    "av": "digits_av",
    "reg": "regress_av",
    # the timm grids of benchmarks/timm_av.py (their runs under benchmarks/runs/timm)
    "timm_cnn": "digits_av_cnn",
    "timm_vit": "digits_av_vit",
}


def grid_path(benchmark: str) -> Path:
    if benchmark.startswith("timm_"):
        return ROOT / "timm" / f"grid_av_{benchmark.removeprefix('timm_')}.yaml"
    return ROOT / "suite" / f"grid_{benchmark}.yaml"


def _rows(run: Path) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith("time")} for r in rows]


def compare_runs(new: Path, old: Path) -> tuple[str, bool | None]:
    """One line: what is identical between a re-run and a stored run of the same cell; and
    whether everything is (None: no stored run)."""
    if not (old / "compare_record.json").is_file():
        return "no stored run", None
    a, b = _rows(new), _rows(old)
    ra = json.loads((new / "compare_record.json").read_text())
    rb = json.loads((old / "compare_record.json").read_text())
    same = {
        "metrics": a == b,
        "val/test": (ra["val"], ra["test"]) == (rb["val"], rb["test"]),
        "probes": ra["evaluation"]["probe"] == rb["evaluation"]["probe"],
    }
    line = "  ".join(f"{k} {'identical' if v else 'DIFFER'}" for k, v in same.items())
    if not same["val/test"]:
        key = "test_r2" if "test_r2" in ra["test"] else "test_acc"
        line += f"  ({key} {ra['test'][key]:.4f} vs {rb['test'][key]:.4f} stored)"
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        cols = sorted(k for k in set(x) | set(y) if x.get(k) != y.get(k))
        if cols:
            return f"{line}  (first at epoch {i}: {', '.join(cols[:4])})", False
    return line, all(same.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--benchmark", choices=sorted(NAMES), default="vec")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", nargs="*", help="labels of the grid (default: all)")
    parser.add_argument(
        "--out",
        default="/tmp/mmbalance-reproduce-check",
        help="where the re-runs go (one folder per benchmark under it)",
    )
    parser.add_argument(
        "--stored",
        default=None,
        help="the run folders the results were built from (default benchmarks/runs/suite, "
        "benchmarks/runs/timm for the timm grids)",
    )
    args = parser.parse_args()
    if args.stored is None:
        family = "timm" if args.benchmark.startswith("timm") else "suite"
        args.stored = str(ROOT / "runs" / family)
    grid = load_grid(grid_path(args.benchmark))
    methods = {k: v for k, v in grid.methods.items() if not args.only or k in args.only}
    # one folder per benchmark: compare refuses to reuse another benchmark's run folders
    out_dir = Path(args.out) / NAMES[args.benchmark]
    grid = dataclasses.replace(grid, methods=methods, seeds=[args.seed], output_dir=str(out_dir))
    # a fresh folder: compare would take a finished run left there by an earlier check (of
    # other code) as done, and the check would compare that run instead of a re-training
    if out_dir.exists():
        shutil.rmtree(out_dir)
    compare(grid, workers=args.workers)
    stored = Path(args.stored) / NAMES[args.benchmark] / "runs"
    verdicts: dict[str, bool | None] = {}
    seed = f"s{args.seed}"
    for name in sorted(_slug(label) for label in methods):  # this call's labels only
        line, verdicts[name] = compare_runs(out_dir / "runs" / name / seed, stored / name / seed)
        print(f"{name:24s} {line}")
    # kept beside the results, so BENCHMARKS.md can say which code the numbers still hold for
    record = {
        "benchmark": NAMES[args.benchmark],
        "seed": args.seed,
        "identical": verdicts,
        "code_sha256": code_fingerprint(),
        "machine": machine(),
        "command": f"python benchmarks/reproduce_check.py --benchmark {args.benchmark} "
        f"--seed {args.seed} --workers {args.workers}"
        + (" --only " + " ".join(f"'{k}'" for k in args.only) if args.only else ""),
    }
    out = RESULTS / f"reproduce_check_{NAMES[args.benchmark]}.json"
    out.write_text(json.dumps(record, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
