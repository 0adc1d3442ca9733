"""Training cost of a method: FLOPs of one training step, per sample.

Counted with ``torch.utils.flop_counter`` over whole ``Trainer.train_step`` calls — forward,
backward, every extra pass and hook of the method (AIM's auxiliary and complementary blocks,
G-Blending's heads, MLA's alternating passes) — on training batches of a fresh model, with the
method put in the state of the *last* epoch (its steady-state phase: AIM's phase 2, after
warm-ups), over one cycle of the method's work (``Method.cost_cycle`` steps: AIM with
``pam_every`` k runs PAM's passes on one step in k). Divided by the samples of those steps.
"""

from __future__ import annotations

import tempfile
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from mmbalance.config import ExperimentConfig


def step_flops_per_sample(config: ExperimentConfig) -> float:
    """FLOPs of the training steps of one cost cycle at the last epoch, per sample."""
    from mmbalance.data.loading import make_loader, to_device
    from mmbalance.experiment import build_experiment
    from mmbalance.training.trainer import Trainer

    cfg = ExperimentConfig.from_dict(config.to_dict())
    cfg.train.tensorboard = False
    data, model, method = build_experiment(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(model, method, data, cfg, tmp)
        last = cfg.train.epochs - 1
        loader = make_loader(data.train, cfg.data, train=True, epoch=last, seed=cfg.seed)
        steps = len(loader)
        method.on_fit_start(trainer.state(0, 0, steps))
        # epoch 0 first: state some methods only build at the start of training
        # (G-Blending's weights, estimated at super-epoch boundaries)
        method.on_epoch_start(trainer.state(0, 0, steps))
        method.on_epoch_start(trainer.state(last, 0, steps))
        cycle = method.cost_cycle()
        batches: list[dict[str, Any]] = []
        while len(batches) < cycle:  # a loader shorter than the cycle is read again
            batches += [to_device(b, trainer.device) for b in loader][: cycle - len(batches)]
        counter = FlopCounterMode(display=False)
        with counter:
            for i, batch in enumerate(batches):
                trainer.train_step(batch, last, i % steps, steps)
        return float(counter.get_total_flops()) / sum(b["label"].shape[0] for b in batches)


def flops_or_none(config: ExperimentConfig) -> float | None:
    """:func:`step_flops_per_sample`, or ``None`` where a method cannot be put in its last
    epoch's state without training (the table then shows n/a)."""
    try:
        return step_flops_per_sample(config)
    except Exception:  # a cost figure must never fail a comparison
        torch.set_grad_enabled(True)
        return None
