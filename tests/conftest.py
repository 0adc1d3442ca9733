"""Shared fixtures: tiny configs that train in well under a second per epoch on a CPU."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from mmbalance.config import ExperimentConfig


def tiny_config(tmp_path: Any = None, **sections: Any) -> ExperimentConfig:
    """A synthetic two-modality vector experiment (a strong and a weak modality)."""
    base: dict[str, Any] = {
        "seed": 0,
        "name": "tiny",
        "output_dir": str(tmp_path) if tmp_path is not None else "runs",
        "data": {
            "name": "synthetic",
            "options": {
                "num_samples": 240,
                "num_classes": 3,
                "modalities": {
                    "a": {"shape": [12], "strength": 3.0},
                    "b": {"shape": [10], "strength": 1.0},
                },
            },
            "batch_size": 32,
        },
        "model": {"encoder": {"type": "mlp", "hidden": [16, 16]}},
        "optim": {"name": "sgd", "lr": 0.05, "scheduler": "step", "step_size": 2, "gamma": 0.5},
        "train": {"epochs": 3, "progress": "never", "tensorboard": False},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return ExperimentConfig.from_dict(base)


@pytest.fixture
def tiny(tmp_path: Any) -> ExperimentConfig:
    return tiny_config(tmp_path)


@pytest.fixture(autouse=True)
def _single_thread() -> None:
    # Two CI cores: one intra-op thread per test process keeps timings predictable.
    torch.set_num_threads(1)


def without_time(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Metric rows minus the wall-clock column, for comparing runs exactly."""
    return [{k: v for k, v in r.items() if k != "time_epoch"} for r in rows]
