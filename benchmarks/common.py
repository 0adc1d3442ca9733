"""Helpers shared by the benchmark scripts: machine description and mean ± std."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
from pathlib import Path

import torch

import mmbalance

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"


def machine() -> dict[str, str]:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "torch_threads": str(torch.get_num_threads()),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "mmbalance": mmbalance.__version__,
        "git_commit": commit or "unknown",
        "platform": platform.platform(),
    }


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    if not values:
        return float("nan"), float("nan")
    if len(values) == 1:
        return values[0], 0.0
    return statistics.mean(values), statistics.stdev(values)


def fmt(values: list[float], scale: float = 100.0, digits: int = 2) -> str:
    """``mean ± std`` in percent (by default)."""
    m, s = mean_std([v * scale for v in values])
    return f"{m:.{digits}f} ± {s:.{digits}f}"
