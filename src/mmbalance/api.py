"""The few-lines Python API: train a method on :class:`DataSplits` built from your tensors."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmbalance.config import ExperimentConfig
from mmbalance.data.base import DataSplits
from mmbalance.errors import ConfigError
from mmbalance.methods import METHODS, Method, register_method
from mmbalance.models.multimodal import MultimodalModel
from mmbalance.structured import init_fields
from mmbalance.training.trainer import RunResult


def train(
    data: DataSplits,
    /,
    method: str | Method = "joint",
    method_options: dict[str, Any] | None = None,
    *,
    model: MultimodalModel | Mapping[str, Any] | None = None,
    epochs: int = 30,
    seed: int = 0,
    run_dir: str | Path | None = None,
    **sections: dict[str, Any],
) -> RunResult:
    """Train ``method`` on ``data``; returns the validation-selected result.

    The same path as ``mmbalance train`` (:func:`mmbalance.experiment.train_on`): under
    ``torchrun`` each process joins the group and trains its shard of every batch.

    Args:
        data: splits, e.g. from :func:`mmbalance.from_tensors` (positional: the keyword
            ``data=`` is the config section below).
        method: a name from :func:`mmbalance.list_methods`, or a built :class:`Method`
            (e.g. ``mmbalance.methods.create_method("ogm_ge", alpha=0.5)`` or your own
            subclass); its options are written to the run's ``config.yaml``.
        method_options: the method's hyper-parameters (with a method name only).
        model: a built :class:`MultimodalModel` (e.g. from :func:`mmbalance.build_model`,
            or with your own encoders), or the config's model section as a mapping
            (``model={"fusion": "film"}``).
        epochs: training epochs.
        seed: seeds model init, shuffling and dropout.
        run_dir: where metrics and checkpoints go (default: ``runs/<name>-...``).
        **sections: any other config sections as mappings, e.g.
            ``optim={"name": "adamw", "lr": 1e-3}``, ``data={"batch_size": 32}`` (only
            loader fields apply: the data is given).
    """
    from mmbalance.experiment import train_on

    instance: Method | None = None
    if isinstance(method, Method):
        if method_options:
            raise ConfigError(
                "method_options: give the options to the Method you pass "
                f"({type(method).__name__}), not beside it"
            )
        instance = method
        name, options = method.name, init_fields(method.options)
        registered = METHODS.get(name)
        if registered is None:
            register_method(type(method))  # passed in by hand: make its name known
        elif not isinstance(method, registered):
            raise ConfigError(
                f"method: {type(method).__name__} is named {name!r}, which is "
                f"{registered.__name__}'s name; give your class another name"
            )
    elif isinstance(method, str):
        name, options = method, dict(method_options or {})
    else:
        raise ConfigError(
            f"method: expected a method name or a Method instance; got {type(method).__name__}"
        )
    if isinstance(model, Mapping):  # the model section of the config, not a built model
        sections = {**sections, "model": dict(model)}
        model = None
    if model is not None and not isinstance(model, MultimodalModel):
        raise ConfigError(
            f"model: expected a MultimodalModel (mmbalance.build_model); got {type(model).__name__}"
        )
    train_section = {"epochs": epochs, **sections.pop("train", {})}
    # the data decides the task (from_tensors(..., task="regression")): recorded in config.yaml
    data_section = {**sections.pop("data", {}), "task": data.task}
    config = ExperimentConfig.from_dict(
        {
            "seed": seed,
            "name": "tensors",
            "data": data_section,
            "method": {"name": name, "options": options},
            "train": train_section,
            **sections,
        }
    )
    return train_on(config, data, model=model, method=instance, run_dir=run_dir)
