"""Run every benchmark and rewrite BENCHMARKS.md (hours on 2 CPU cores: the suite grids
dominate; every step resumes where it stopped).

python benchmarks/run_all.py
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

STEPS = [
    ["aim_cost.py", "--width", "1.0", "--batch", "64", "--steps", "3"],
    ["suite.py", "--benchmarks", "vec", "seq", "av", "--workers", "2"],
    ["aim_sensitivity.py", "--seeds", "0", "1", "2", "--workers", "2"],
    ["aim_figures.py", "--benchmark", "av", "--seeds", "0", "1", "2"],  # after the two above
    ["aim_tuning.py", "--grids", "regression", "--benchmarks", "reg", "--workers", "2"],
    ["pam_study.py", "--workers", "2"],
    ["loader_throughput.py", "--clips", "96", "--repeats", "3"],
    ["write_report.py"],
]

if __name__ == "__main__":
    for step in STEPS:
        print("+", " ".join(step), flush=True)
        subprocess.run([sys.executable, str(HERE / step[0]), *step[1:]], check=True)
