"""The AIM paper's analyses on the imbalance suite, from run folders:

- Fig. 5a: the auxiliary blocks' scores s~ against the original blocks' s, per modality and
  depth (last epoch) and over training, from the suite's runs of the paper's AIM (PAM on:
  the default has no auxiliary blocks);
- Fig. 6: alpha_d (Eq. 14) under AIM (the default) against joint training. Joint training's
  alpha comes from AIM with ``lambda_mod: 0, split_ce: 0`` (the model trains on CE alone; the
  prototypes train beside it and only measure);
- Fig. 7: fused test accuracy against the start epoch E (``aim_sensitivity.py``'s sweep).

Needs ``suite.py`` (the AIM runs of the benchmark) first; trains the ``lambda_mod: 0`` runs
itself (resumable). Writes ``benchmarks/results/figures/*.png`` and
``benchmarks/results/aim_figures.json``.

    python benchmarks/aim_figures.py --benchmark av --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from common import RESULTS, ROOT, machine

from mmbalance.reporting.compare import _slug, compare, grid_from_dict

NAMES = {"vec": "digits_vec", "seq": "digits_seq", "av": "digits_av"}
FIGURES = RESULTS / "figures"


def _rows(run: Path) -> list[dict[str, float]]:
    with (run / "metrics.csv").open() as fh:
        return [
            {k: float(v) for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(fh)
        ]


def _mean(runs: list[Path], key: str) -> list[float]:
    series = [[r[f"method_{key}"] for r in _rows(run)] for run in runs]
    return [sum(v) / len(v) for v in zip(*series, strict=True)]


def fig5(name: str, runs: list[Path]) -> dict[str, Any]:
    last = _rows(runs[0])[-1]
    keys = sorted(k for k in last if re.fullmatch(r"method_s_.+_d\d+", k))
    pairs = [re.fullmatch(r"method_s_(.+)_d(\d+)", k).groups() for k in keys]  # type: ignore[union-attr]
    mods = sorted({m for m, _ in pairs})
    depth = max(int(d) for _, d in pairs)
    out: dict[str, Any] = {}
    fig, axes = plt.subplots(1, len(mods), figsize=(4.5 * len(mods), 3.6), squeeze=False)
    for ax, m in zip(axes[0], mods, strict=True):
        s = [_mean(runs, f"s_{m}_d{d}")[-1] for d in range(1, depth + 1)]
        s_aux = [_mean(runs, f"saux_{m}_d{d}")[-1] for d in range(1, depth + 1)]
        out[m] = {"s": s, "saux": s_aux}
        x = range(1, depth + 1)
        ax.bar([i - 0.2 for i in x], s, width=0.4, label="original blocks (s)")
        ax.bar([i + 0.2 for i in x], s_aux, width=0.4, label="auxiliary blocks (s~)")
        ax.set(xlabel="depth d", ylabel="score (Eq. 9), last epoch", title=f"{name}: {m}")
        ax.set_xticks(list(x))
        ax.legend(fontsize=8)
    fig.suptitle(f"Fig. 5a on {name}: auxiliary blocks score below the original ones")
    fig.tight_layout()
    fig.savefig(FIGURES / f"fig5a_{name}.png", dpi=120)
    plt.close(fig)
    return out


def fig6(name: str, aim: list[Path], joint: list[Path]) -> dict[str, Any]:
    depth = len([k for k in _rows(aim[0])[-1] if re.fullmatch(r"method_alpha_d\d+", k)])
    out: dict[str, Any] = {}
    fig, axes = plt.subplots(1, depth, figsize=(3.4 * depth, 3.2), squeeze=False)
    for d, ax in enumerate(axes[0], 1):
        a, j = _mean(aim, f"alpha_d{d}"), _mean(joint, f"alpha_d{d}")
        out[f"d{d}"] = {"aim": a, "joint": j}
        ax.plot(range(1, len(j) + 1), j, label="joint training")
        ax.plot(range(1, len(a) + 1), a, label="AIM")
        ax.set(xlabel="epoch", ylabel="alpha_d (Eq. 14)", title=f"depth {d}")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"Fig. 6 on {name}: modality discrepancy per depth")
    fig.tight_layout()
    fig.savefig(FIGURES / f"fig6_{name}.png", dpi=120)
    plt.close(fig)
    return out


def fig7() -> dict[str, Any] | None:
    path = RESULTS / "aim_sensitivity.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    sweep = data["sweeps"].get("start_epoch")
    if sweep is None:
        return None
    xs = [r["value"] for r in sweep["rows"]]
    ms = [100 * r["aim"][0] for r in sweep["rows"]]
    ss = [100 * r["aim"][1] for r in sweep["rows"]]
    fig, ax = plt.subplots(figsize=(4.5, 3.4))
    ax.errorbar(xs, ms, yerr=ss, marker="o", capsize=3, label="AIM")
    ax.axhline(100 * sweep["joint"][0], color="grey", ls="--", label="joint training")
    ax.set(xlabel="start epoch E", ylabel="fused test accuracy (%)", title="Fig. 7 on digits_vec")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(FIGURES / "fig7_digits_vec.png", dpi=120)
    plt.close(fig)
    return {"E": xs, "aim_mean": ms, "aim_std": ss, "joint": 100 * sweep["joint"][0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--benchmark", choices=list(NAMES), default="av")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    name = NAMES[args.benchmark]
    runs = ROOT / "runs" / "suite" / name / "runs"
    aim = [runs / "aim" / f"s{s}" for s in args.seeds]  # the default: Fig. 6 (DAM)
    # Fig. 5a needs auxiliary blocks: the paper's method (PAM on), a label of the suite grid
    paper = [runs / _slug("aim paper (PAM every step)") / f"s{s}" for s in args.seeds]
    missing = [str(r) for r in aim + paper if not (r / "summary.json").is_file()]
    if missing:
        raise SystemExit(f"run benchmarks/suite.py --benchmarks {args.benchmark} first: {missing}")
    grid = grid_from_dict(
        {
            "experiment": f"{name}.yaml",
            "methods": {
                "aim lambda 0": {"name": "aim", "options": {"lambda_mod": 0.0, "split_ce": 0.0}}
            },
            "seeds": args.seeds,
            "output_dir": str(ROOT / "runs" / "figures" / name),
            "workers": args.workers,
        },
        Path.cwd(),
        "aim_figures",
    )
    folder = compare(grid)
    joint = [folder / "runs" / "aim_lambda_0" / f"s{s}" for s in args.seeds]
    FIGURES.mkdir(parents=True, exist_ok=True)
    result = {
        "command": f"python benchmarks/aim_figures.py --benchmark {args.benchmark} --seeds "
        + " ".join(map(str, args.seeds)),
        "machine": machine(),
        "benchmark": name,
        "seeds": args.seeds,
        "fig5a": fig5(name, paper),
        "fig6": fig6(name, aim, joint),
        "fig7": fig7(),
    }
    (RESULTS / "aim_figures.json").write_text(json.dumps(result, indent=1))
    print(f"wrote {FIGURES} and {RESULTS / 'aim_figures.json'}")


if __name__ == "__main__":
    main()
