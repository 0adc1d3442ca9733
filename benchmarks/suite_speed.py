"""Wall time of one joint-training run of each suite benchmark, alone on the machine with every
core (the issue's targets: digits_vec <= 20 s, the others <= 3 minutes on 2 CPU cores), and of
the main job (``mmbalance train`` with no arguments, target < 2 minutes). The datasets are
generated beforehand (generation is timed separately: the first ``prepare``).

Writes ``benchmarks/results/suite_speed.json``.

    python benchmarks/suite_speed.py
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import RESULTS, machine

CONFIGS = ["digits_vec.yaml", "digits_seq.yaml", "digits_av.yaml"]


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--skip-main-job", action="store_true")
    args = parser.parse_args()
    exe = [sys.executable, "-m", "mmbalance.cli"]
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for cfg in CONFIGS:  # generate first, untimed (a fresh machine does it once)
            subprocess.run([*exe, "validate", cfg], check=True, stdout=subprocess.DEVNULL)
        for cfg in CONFIGS:
            out[f"joint {cfg}"] = timed(
                [*exe, "train", "--config", cfg, "--method.name=joint", "--method.options={}",
                 "--train.progress=never", "--out", str(Path(tmp) / cfg)]
            )  # fmt: skip
            print(f"joint {cfg}: {out[f'joint {cfg}']:.1f} s", flush=True)
        if not args.skip_main_job:
            out["main job (mmbalance train)"] = timed(
                [*exe, "train", "--train.progress=never", "--out", str(Path(tmp) / "main")]
            )
            print(f"main job: {out['main job (mmbalance train)']:.1f} s", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "suite_speed.json").write_text(
        json.dumps(
            {
                "command": "python benchmarks/suite_speed.py",
                "machine": machine(),
                "wall_seconds": out,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
