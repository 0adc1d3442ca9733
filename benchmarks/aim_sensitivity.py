"""AIM's sensitivity to its main options on the suite's fastest benchmark (digits_vec): the
start epoch E (the paper's Fig. 7), the modulation weight ``lambda_mod``, the distance
temperature's scale ``dap_auto_scale`` and the decoupler's ``latent_dim``, one at a time with
the others at their defaults, each value x seeds, paired by seed with joint training.

Each sweep is a ``compare`` grid (resumable) under ``benchmarks/runs/aim_sensitivity/``; the
tables go to ``benchmarks/results/aim_sensitivity.json`` / ``.md``.

    python benchmarks/aim_sensitivity.py --seeds 0 1 2 --workers 2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from common import RESULTS, ROOT, machine

from mmbalance.methods.aim.method import AIMOptions
from mmbalance.reporting.compare import compare, grid_from_dict
from mmbalance.reporting.stats import format_interval, mean_std, paired_interval

SWEEPS: dict[str, list[Any]] = {
    "start_epoch": [0, 1, 3, 5, 10],
    "lambda_mod": [0.3, 1.0, 3.0, 10.0, 30.0],
    "dap_auto_scale": [0.05, 0.1, 0.2, 0.5, 1.0],
    "latent_dim": [16, 64, 256, 512],
}
PAM_SWEEPS = {"latent_dim"}
BENCHMARK = "digits_vec.yaml"


def sweep(key: str, seeds: list[int], workers: int) -> dict[str, Any]:
    grid = grid_from_dict(
        {
            "experiment": BENCHMARK,
            # latent_dim sizes PAM's decoupler: its sweep runs the paper's method (PAM on)
            "methods": {
                "joint": {},
                "aim": {"options": {"pam": True}} if key in PAM_SWEEPS else {},
            },
            "sweep": {"key": f"method.options.{key}", "values": SWEEPS[key], "methods": ["aim"]},
            "seeds": seeds,
            "output_dir": str(ROOT / "runs" / "aim_sensitivity" / key),
            "workers": workers,
        },
        Path.cwd(),
        f"aim_sensitivity {key}",
    )
    folder = compare(grid)
    records = json.loads((folder / "results.json").read_text())["runs"]
    joint = {r["seed"]: r["test"]["test_acc"] for r in records if r["label"] == "joint"}
    rows = []
    for value in SWEEPS[key]:
        aim = {
            r["seed"]: r["test"]["test_acc"]
            for r in records
            if r["label"] == "aim" and r["sweep_value"] == value and "failed" not in r
        }
        common = sorted(set(aim) & set(joint))
        rows.append(
            {
                "value": value,
                "aim": mean_std([aim[s] for s in common]),
                "vs_joint": paired_interval([aim[s] for s in common], [joint[s] for s in common]),
                "seeds": common,
            }
        )
    return {"joint": mean_std(list(joint.values())), "rows": rows}


def markdown(result: dict[str, Any]) -> str:
    lines = []
    for key, data in result["sweeps"].items():
        j = data["joint"]
        lines += [
            f"`{key}` (joint training: {100 * j[0]:.2f} ± {100 * j[1]:.2f}):",
            "",
            f"| {key} | AIM test acc (%) | AIM - joint, paired [95% CI] |",
            "|---|---|---|",
        ]
        for row in data["rows"]:
            m, s = row["aim"]
            lines.append(
                f"| {row['value']} | {100 * m:.2f} ± {100 * s:.2f} | "
                f"{format_interval(row['vs_joint'])} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--sweeps",
        nargs="+",
        choices=list(SWEEPS),
        default=[k for k in SWEEPS if k not in PAM_SWEEPS],
    )
    args = parser.parse_args()
    result = {
        "command": f"python benchmarks/aim_sensitivity.py --seeds "
        f"{' '.join(map(str, args.seeds))} --workers {args.workers}",
        "machine": machine(),
        "benchmark": BENCHMARK,
        "seeds": args.seeds,
        # the options every sweep holds fixed, so a table can never outlive its defaults unsaid
        "aim_defaults": dataclasses.asdict(AIMOptions()),
        "sweeps": {k: sweep(k, args.seeds, args.workers) for k in args.sweeps},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "aim_sensitivity.json").write_text(json.dumps(result, indent=1))
    (RESULTS / "aim_sensitivity.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
