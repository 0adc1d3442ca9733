"""The few-lines Python API: train a method on :class:`DataSplits` built from your tensors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmbalance.config import ExperimentConfig
from mmbalance.data.base import DataSplits
from mmbalance.training.seeding import seed_everything
from mmbalance.training.trainer import RunResult


def train(
    data: DataSplits,
    /,
    method: str = "joint",
    method_options: dict[str, Any] | None = None,
    *,
    epochs: int = 30,
    seed: int = 0,
    run_dir: str | Path | None = None,
    **sections: dict[str, Any],
) -> RunResult:
    """Train ``method`` on ``data``; returns the validation-selected result.

    Args:
        data: splits, e.g. from :func:`mmbalance.from_tensors` (positional: the keyword
            ``data=`` is the config section below).
        method: a name from :func:`mmbalance.list_methods`.
        method_options: the method's hyper-parameters.
        epochs: training epochs.
        seed: seeds model init, shuffling and dropout.
        run_dir: where metrics and checkpoints go (default: ``runs/<name>-...``).
        **sections: any other config sections as mappings, e.g.
            ``optim={"name": "adamw", "lr": 1e-3}``, ``model={"fusion": "film"}``,
            ``data={"batch_size": 32}`` (only loader fields apply: the data is given).
    """
    from mmbalance.experiment import build_model_and_method, train_built

    train_section = {"epochs": epochs, **sections.pop("train", {})}
    config = ExperimentConfig.from_dict(
        {
            "seed": seed,
            "name": "tensors",
            "method": {"name": method, "options": method_options or {}},
            "train": train_section,
            **sections,
        }
    )
    seed_everything(config.seed, config.train.deterministic)
    model, built_method = build_model_and_method(config, data)
    return train_built(config, data, model, built_method, run_dir)
