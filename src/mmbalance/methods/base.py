"""The method interface: a balancing method is an ``nn.Module`` with hooks the trainer calls.

One reading of :meth:`mmbalance.training.trainer.Trainer.train_epoch` shows where each hook
acts::

    build(model)                                       # modules trained with the model
    setup(model, optimizer)                            # modules with optimisers of their own
    on_fit_start(state)                                # once per fit (also after resume)
    on_epoch_start(state)
    for batch, for each of passes(model):              # one pass unless alternating
        output = forward(model, batch, state)          # alternating / padded passes
        terms  = loss(output, batch, state)            # named terms; the trainer sums them
        backward
        on_after_backward(model, state)                # gradient modulation
        optimiser step (after clipping)
        on_step_end(state)
    diagnostics = on_epoch_end(state)                  # re-init, prototype refresh, logging

Capabilities are class attributes checked once, at construction (:meth:`Method.check`), so an
impossible combination is refused before training with a message saying what would work.

A method owns its modules the way any ``nn.Module`` does: heads, prototypes or a decoupler
assigned as attributes register as submodules, so their parameters reach the optimiser (those
made in :meth:`Method.build`), the checkpoint (``state_dict``) and the gradient averaging under
torchrun without a hand-written list. State that is not a module (running averages, counters,
prototypes kept as plain tensors, the method's own optimisers) goes through
``get_extra_state`` / ``set_extra_state``, which ``state_dict`` / ``load_state_dict`` call.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from mmbalance.errors import CapabilityError
from mmbalance.models.multimodal import ModelOutput, MultimodalModel
from mmbalance.structured import from_dict
from mmbalance.tasks import Task


@dataclass
class NoOptions:
    """A method without hyper-parameters."""


@dataclass(frozen=True)
class TrainState:
    """What a hook may read about the run. Hooks return values; they do not mutate this."""

    epoch: int  # 0-based
    num_epochs: int
    step: int  # global optimiser step, 0-based
    step_in_epoch: int
    steps_per_epoch: int
    model: MultimodalModel
    optimizer: torch.optim.Optimizer
    device: torch.device
    # Unshuffled loaders of the "train" and "val" splits, for methods that need statistics
    # (class means, blend weights). There is deliberately no "test": nothing may select on it.
    loaders: Mapping[str, DataLoader]
    run_dir: Path
    pass_name: str | None = None  # which of ``Method.passes`` this step is (None: the only one)

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])


class EpochMeans:
    """Per-step diagnostics averaged over an epoch (logged as ``method_<name>`` columns)."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.steps = 0

    def add(self, name: str, value: float) -> None:
        """Add ``value`` to this epoch's sum of ``name``."""
        self.sums[name] = self.sums.get(name, 0.0) + value

    def step(self) -> None:
        """Count one step (the divisor of every mean)."""
        self.steps += 1

    def pop(self) -> dict[str, float]:
        """The means over the steps counted so far, then start a new epoch."""
        out = {k: v / max(self.steps, 1) for k, v in self.sums.items()}
        self.sums, self.steps = {}, 0
        return out


class Method(nn.Module):
    """Base class with no-op hooks; the default ``loss`` is plain cross-entropy (Eq. 2)."""

    name: ClassVar[str] = "base"
    description: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    # Capabilities, checked once by ``check``.
    min_modalities: ClassVar[int] = 1
    max_modalities: ClassVar[int | None] = None
    supported_fusions: ClassVar[tuple[str, ...] | None] = None  # None: every fusion
    needs_intermediates: ClassVar[bool] = False
    unused_model_parts: ClassVar[tuple[str, ...]] = ()  # e.g. ("fusion", "head") for MLA
    modifies_grads: ClassVar[bool] = False
    # Regression (data.task: regression): a method with a documented regression form sets
    # True (docs/regression.md); the others give the reason they have none.
    supports_regression: ClassVar[bool] = False
    no_regression: ClassVar[str] = "it has no regression form yet"
    # classes or numbers, with their loss (set by the trainer from data.task and train.loss)
    task: Task = Task()

    def __init__(self, options: Any = None) -> None:
        super().__init__()
        self.options = options if options is not None else self.Options()

    @classmethod
    def from_config(cls, options: dict[str, Any] | None) -> Method:
        """Build from a ``method.options`` mapping, validated against ``Options``."""
        return cls(from_dict(cls.Options, options, "method.options"))

    # -- construction-time ------------------------------------------------------------------
    def select_modalities(self, available: list[str]) -> list[str]:
        """Which of the data's modalities the model is built with (all, by default)."""
        return list(available)

    def check(self, model: MultimodalModel, fusion: str) -> None:
        """Refuse a model this method cannot train, naming what would work."""
        if self.task.regression and not self.supports_regression:
            raise CapabilityError(
                f"method {self.name!r} cannot train a regression (data.task: regression): "
                f"{self.no_regression}. docs/regression.md lists the methods that can"
            )
        m = len(model.modalities)
        if m < self.min_modalities:
            raise CapabilityError(
                f"method {self.name!r} needs at least {self.min_modalities} modalities; "
                f"the model has {m} ({', '.join(model.modalities)})"
            )
        if self.max_modalities is not None and m > self.max_modalities:
            raise CapabilityError(
                f"method {self.name!r} supports at most {self.max_modalities} modalities; the "
                f"model has {m}. Select {self.max_modalities} with data.modalities."
            )
        if self.supported_fusions is not None and fusion not in self.supported_fusions:
            raise CapabilityError(
                f"method {self.name!r} does not support fusion {fusion!r}; "
                f"use one of {', '.join(self.supported_fusions)}"
            )

    def build(self, model: MultimodalModel) -> None:
        """Create the modules the method trains with the model's optimiser (e.g. G-Blending's
        per-modality classifiers), as attributes. Called once, before the optimiser is built
        from the model's and the method's parameters."""

    def setup(self, model: MultimodalModel, optimizer: torch.optim.Optimizer) -> None:
        """Called once, after the model and optimiser exist and before any resume. Modules
        made here are not in the model's optimiser: the method trains them itself (AIM's
        decoupler, with optimisers of its own)."""

    def passes(self, model: MultimodalModel) -> list[str | None]:
        """Optimisation steps per batch: one (``[None]``) unless a method alternates (MLA:
        one per modality, each its own forward, backward and optimiser step)."""
        return [None]

    def on_fit_start(self, state: TrainState) -> None:
        """At the start of :meth:`Trainer.fit`, fresh or resumed (state already restored)."""

    def cost_cycle(self) -> int:
        """Steps after which the method's per-step work repeats (AIM with ``pam_every`` k: k);
        the training cost per sample is measured over that many steps."""
        return 1

    # -- the loop ---------------------------------------------------------------------------
    def on_epoch_start(self, state: TrainState) -> None:
        """Before the first batch of an epoch."""

    def forward(
        self, model: MultimodalModel, batch: dict[str, Any], state: TrainState
    ) -> ModelOutput:
        """The training forward pass (override for alternating or padded passes)."""
        return model(batch["inputs"], return_intermediates=self.needs_intermediates)

    def task_loss(self, prediction: Tensor, target: Tensor) -> Tensor:
        """The task's loss: cross-entropy (Eq. 2), or MSE / L1 / Huber for a regression."""
        return self.task.criterion(prediction, target)

    def loss(
        self, output: ModelOutput, batch: dict[str, Any], state: TrainState
    ) -> dict[str, Tensor]:
        """Named loss terms; the trainer sums and logs them. Default: the task loss of the
        fused prediction (cross-entropy, Eq. 2; ``ce`` for a regression's loss too: the term
        every method has)."""
        return {"ce": self.task_loss(output.logits, batch["label"])}

    def predict(self, model: MultimodalModel, inputs: dict[str, Tensor]) -> ModelOutput:
        """Inference (validation, test, ``mmbalance eval``); default: the plain model."""
        return model(inputs)

    def on_after_backward(self, model: MultimodalModel, state: TrainState) -> None:
        """After ``backward``, before clipping and the optimiser step (gradient modulation)."""

    def on_step_end(self, state: TrainState) -> None:
        """After the optimiser step."""

    def on_train_epoch_end(self, state: TrainState) -> None:
        """After an epoch's last training step, before the epoch is evaluated (a method whose
        prediction depends on held-out data, MLA's regression fusion, updates it here)."""

    def on_epoch_end(self, state: TrainState) -> dict[str, float]:
        """After the last batch; returns diagnostics logged with the epoch's metrics."""
        return {}
