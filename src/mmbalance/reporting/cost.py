"""Training cost of a method: FLOPs of one training step, per sample.

Counted with ``torch.utils.flop_counter`` over a whole ``Trainer.train_step`` — forward,
backward, every extra pass and hook of the method (AIM's auxiliary and complementary blocks,
G-Blending's heads, MLA's alternating passes) — on one training batch of a fresh model, with the
method put in the state of the *last* epoch (its steady-state phase: AIM's phase 2, after
warm-ups). Divided by the batch size.
"""

from __future__ import annotations

import tempfile
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from mmbalance.config import ExperimentConfig


def step_flops_per_sample(config: ExperimentConfig) -> float:
    """FLOPs of one training step at the last epoch, divided by the batch size."""
    from mmbalance.data.loading import make_loader, to_device
    from mmbalance.experiment import build_experiment
    from mmbalance.training.trainer import Trainer

    cfg = ExperimentConfig.from_dict(config.to_dict())
    cfg.train.tensorboard = False
    data, model, method = build_experiment(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(model, method, data, cfg, tmp)
        last = cfg.train.epochs - 1
        loader = make_loader(data.train, cfg, train=True, epoch=last)
        steps = len(loader)
        method.on_fit_start(trainer.state(0, 0, steps))
        # epoch 0 first: state some methods only build at the start of training
        # (G-Blending's weights, estimated at super-epoch boundaries)
        method.on_epoch_start(trainer.state(0, 0, steps))
        method.on_epoch_start(trainer.state(last, 0, steps))
        batch: dict[str, Any] = to_device(next(iter(loader)), trainer.device)
        counter = FlopCounterMode(display=False)
        with counter:
            trainer.train_step(batch, last, 0, steps)
        return float(counter.get_total_flops()) / batch["label"].numel()


def flops_or_none(config: ExperimentConfig) -> float | None:
    """:func:`step_flops_per_sample`, or ``None`` where a method cannot be put in its last
    epoch's state without training (the table then shows n/a)."""
    try:
        return step_flops_per_sample(config)
    except Exception:  # a cost figure must never fail a comparison
        torch.set_grad_enabled(True)
        return None
