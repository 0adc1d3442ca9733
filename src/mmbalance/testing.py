"""A shared tester for balancing methods: register a method, run it through the real training
step, check what every method must do.

In the spirit of torchmetrics' ``MetricTester``: a new method's test is two lines, and it goes
through :meth:`mmbalance.training.trainer.Trainer.run_steps`, the step :meth:`Trainer.fit`
takes (forward, loss, backward, gradient averaging, ``on_after_backward``, clipping, the
optimiser step, ``on_step_end``), not a re-implementation of it::

    from mmbalance.testing import MethodTester

    def test_my_method(tmp_path):
        MethodTester("my_method", {"weight": 0.5}, root=tmp_path).check()
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mmbalance.config import ExperimentConfig
from mmbalance.methods import METHODS, Method, create_method, register_method
from mmbalance.training.seeding import set_rng_state


def toy_config(root: str | Path, **sections: Any) -> ExperimentConfig:
    """Two synthetic vector modalities (``a`` strong, ``b`` weak), 3 classes, tiny MLPs with
    two blocks each, SGD with gradient clipping (so the clipping path runs too)."""
    base: dict[str, Any] = {
        "seed": 0,
        "name": "method-tester",
        "output_dir": str(root),
        "data": {
            "name": "synthetic",
            "options": {
                "num_samples": 96,
                "num_classes": 3,
                "modalities": {
                    "a": {"shape": [12], "strength": 3.0},
                    "b": {"shape": [10], "strength": 1.0},
                },
            },
            "batch_size": 16,
        },
        "model": {"encoder": {"type": "mlp", "hidden": [16, 16]}},
        "optim": {"name": "sgd", "lr": 0.05, "scheduler": "none", "grad_clip": 5.0},
        "train": {"epochs": 2, "progress": "never", "tensorboard": False},
    }
    for key, value in sections.items():
        base[key] = {**base[key], **value} if isinstance(base.get(key), dict) else value
    return ExperimentConfig.from_dict(base)


@dataclass
class StepReport:
    """What :meth:`MethodTester.run` saw."""

    losses: list[dict[str, float]]  # each step's loss terms
    # parameters given a gradient by some pass / that must be: the model's, and the method's
    # own modules that train with the model's optimiser (as "method.<name>")
    reached: set[str] = field(default_factory=set)
    expected: set[str] = field(default_factory=set)
    changed: list[str] = field(default_factory=list)  # model state entries the steps changed
    changed_method: list[str] = field(default_factory=list)  # the method's state_dict entries
    nonfinite_grads: list[str] = field(default_factory=list)


class MethodTester:
    """Build a toy experiment around one method and train it a few steps through the trainer.

    Args:
        method: a registered method's name, or a :class:`Method` instance.
        options: the method's options (with a name).
        root: a folder for the run (a test's ``tmp_path``).
        **sections: config sections merged over :func:`toy_config`'s (e.g.
            ``model={"fusion": "film"}``).
    """

    def __init__(
        self,
        method: str | Method,
        options: dict[str, Any] | None = None,
        *,
        root: str | Path,
        **sections: Any,
    ) -> None:
        self.root = Path(root)
        self.options = dict(options or {})
        self.instance = None if isinstance(method, str) else method
        if self.instance is not None:
            if self.instance.name not in METHODS:
                register_method(type(self.instance))
            name, self.options = self.instance.name, {}
        else:
            name = str(method)
        self.config = toy_config(
            self.root, method={"name": name, "options": self.options}, **sections
        )

    def _make(self) -> Method:
        if self.instance is not None:
            return self.instance
        return create_method(self.config.method.name, self.options)

    def build(self, folder: str = "run") -> Any:
        """The trainer (data, model and method built as ``mmbalance train`` builds them)."""
        from mmbalance.data.registry import build_data
        from mmbalance.experiment import build_model_and_method
        from mmbalance.training.seeding import seed_everything
        from mmbalance.training.trainer import Trainer

        seed_everything(self.config.seed, self.config.train.deterministic)
        data = build_data(self.config.data)
        model, method = build_model_and_method(self.config, data, self._make())
        return Trainer(model, method, data, self.config, self.root / folder)

    def run(self, steps: int = 2) -> tuple[Any, StepReport]:
        """Train ``steps`` steps; record which parameters each optimiser step found a gradient
        on (every pass of every step: MLA's per-modality passes included)."""
        trainer = self.build()
        model, method = trainer.model, trainer.method
        skip = ("unimodal_heads", *method.unused_model_parts)
        report = StepReport(losses=[])
        optimised = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
        # frozen parameters (an encoder's ``freeze``) are meant to get no gradient
        watched = [
            (n, p)
            for n, p in model.named_parameters()
            if not n.startswith(skip) and p.requires_grad
        ]
        watched += [(f"method.{n}", p) for n, p in method.named_parameters() if id(p) in optimised]
        report.expected = {n for n, _ in watched}
        before = {k: v.detach().clone() for k, v in model.state_dict().items()}
        method_before = _tensors(method.state_dict())
        step = trainer.optimizer.step

        def watched_step(*args: Any, **kwargs: Any) -> Any:
            for n, p in watched:
                if p.grad is not None:
                    report.reached.add(n)
                    if not torch.isfinite(p.grad).all():
                        report.nonfinite_grads.append(n)
            return step(*args, **kwargs)

        trainer.optimizer.step = watched_step
        try:
            report.losses = trainer.run_steps(steps)
        finally:
            trainer.optimizer.step = step
        after = model.state_dict()
        report.changed = [k for k, v in after.items() if not torch.equal(v, before[k])]
        method_after = _tensors(method.state_dict())
        report.changed_method = [
            k
            for k, v in method_after.items()
            if k not in method_before or not torch.equal(v, method_before[k])
        ]
        return trainer, report

    def check(self, steps: int = 2) -> StepReport:
        """Run and assert what every method must do: finite losses and gradients, every
        parameter it trains reached by a gradient, the encoders moved, and its state saved and
        restored whole (``state_dict`` / ``load_state_dict``, what exact resume needs)."""
        trainer, report = self.run(steps)
        name = self.config.method.name
        assert len(report.losses) == steps, f"{name}: {len(report.losses)} steps ran"
        for i, terms in enumerate(report.losses):
            bad = {k: v for k, v in terms.items() if not math.isfinite(v)}
            assert not bad, f"{name}: step {i} has non-finite loss terms {bad}"
        assert not report.nonfinite_grads, f"{name}: non-finite gradients {report.nonfinite_grads}"
        missing = sorted(report.expected - report.reached)
        assert not missing, f"{name}: parameters never given a gradient: {missing}"
        assert any(k.startswith("encoders.") for k in report.changed), (
            f"{name}: no encoder parameter changed in {steps} steps"
        )
        if self.instance is None:  # restore into a second trainer, as resume does
            # through bytes, as a checkpoint on disk: nothing shared with the live trainer
            buffer = io.BytesIO()
            torch.save(trainer.state_dict(), buffer)
            buffer.seek(0)
            state = torch.load(buffer, weights_only=True)
            other = self.build("run-restored")
            other.load_state_dict(state)
            _assert_same(
                trainer.method.state_dict(),
                other.method.state_dict(),
                f"{name}: method state after a save / restore",
            )
            # and the restored trainer takes the same next step (state a method forgot to
            # save shows here): same RNG state, the next epoch's first batch
            set_rng_state(state["rng"])
            ahead = trainer.run_steps(1, epoch=1)
            set_rng_state(state["rng"])
            restored = other.run_steps(1, epoch=1)
            assert ahead == restored, (
                f"{name}: the step after a save / restore differs: {ahead} vs {restored}"
            )
        return report


def _assert_same(a: Any, b: Any, where: str) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: keys {set(a) ^ set(b)}"
        for k in a:
            _assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def _tensors(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The tensor entries of a state_dict, cloned (extra state left out)."""
    return {k: v.detach().clone() for k, v in state.items() if isinstance(v, torch.Tensor)}
