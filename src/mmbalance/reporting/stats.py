"""Statistics of results over seeds: mean ± sample std, and paired differences with a 95%
t-interval (seeds pair two methods that share data split, initial weights and batch order)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

# Two-sided 97.5% quantiles of Student's t with df = 1..30 (df > 30: the normal 1.96 is within
# 2% of the exact value).
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t975(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom (df >= 1)."""
    if df < 1:
        raise ValueError(f"t975: df must be >= 1; got {df}")
    return _T975[df - 1] if df <= len(_T975) else 1.96


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and *sample* standard deviation (0 for one value)."""
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def paired_interval(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
    """Mean of ``a - b`` over pairs and its 95% t-interval (``low``, ``high``; ``nan`` with one
    pair). ``a`` and ``b`` are aligned: the i-th entries come from the same seed."""
    if len(a) != len(b) or not a:
        raise ValueError(
            f"paired_interval: need equally long, non-empty lists; got {len(a)}, {len(b)}"
        )
    diff = [x - y for x, y in zip(a, b, strict=True)]
    mean = statistics.mean(diff)
    if len(diff) < 2:
        return {"mean": mean, "low": math.nan, "high": math.nan, "n": 1}
    half = t975(len(diff) - 1) * statistics.stdev(diff) / math.sqrt(len(diff))
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": len(diff)}


def format_interval(d: dict[str, float], scale: float = 100.0) -> str:
    """``+2.10 [+0.80, +3.40]`` (points, with ``scale`` 100 for accuracies in [0, 1])."""
    if math.isnan(d["low"]):
        return f"{scale * d['mean']:+.2f} (one seed)"
    return f"{scale * d['mean']:+.2f} [{scale * d['low']:+.2f}, {scale * d['high']:+.2f}]"
