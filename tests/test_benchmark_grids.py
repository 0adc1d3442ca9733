"""Every grid the benchmark scripts run loads and checks (labels, options, sweeps): a typo in a
grid file is caught here, not hours into a suite run."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmbalance.config import parse_yaml
from mmbalance.reporting.compare import grid_from_dict, load_grid

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
GRIDS = sorted(
    p for folder in ("suite", "tuning", "timm") for p in (BENCHMARKS / folder).glob("*.yaml")
)


@pytest.mark.parametrize("path", GRIDS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_grid_loads(path: Path) -> None:
    grid = load_grid(path)
    assert grid.methods and grid.seeds


def test_pam_study_conditions_load() -> None:
    spec = parse_yaml((BENCHMARKS / "pam_study" / "conditions.yaml").read_text())
    for name, cond in spec["conditions"].items():
        methods = {**spec["labels"], **{e: spec["extra_labels"][e] for e in cond.get("extra", [])}}
        raw = {
            "experiment": cond["experiment"],
            "overrides": cond.get("overrides", []),
            "methods": methods,
            "seeds": spec["seeds"],
        }
        grid = grid_from_dict(raw, BENCHMARKS, name)
        assert "aim w/o PAM" in grid.methods
