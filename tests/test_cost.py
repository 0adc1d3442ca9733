"""Training FLOPs per sample (``reporting/cost.py``) over a method's cost cycle."""

from __future__ import annotations

import pytest
from conftest import tiny_config

from mmbalance.reporting.cost import step_flops_per_sample


def _flops(tmp_path, options: dict) -> float:
    opts = {"latent_dim": 8, "start_epoch": 0, "aux_batch_fraction": 1.0, "pam": True, **options}
    return step_flops_per_sample(tiny_config(tmp_path, method={"name": "aim", "options": opts}))


def test_pam_every_costs_the_mean_of_a_pam_step_and_plain_steps(tmp_path) -> None:
    """With ``pam_every`` k the cost is counted over k steps: one with PAM's passes (the
    every-step AIM's cost) and k - 1 without them (w/o PAM's cost: the flop counter sees the
    same matrix products there)."""
    full = _flops(tmp_path / "full", {})
    plain = _flops(tmp_path / "plain", {"pam": False})
    assert full > 1.5 * plain  # the auxiliary and complementary passes are counted
    for k in (2, 3):
        every = _flops(tmp_path / f"k{k}", {"pam_every": k})
        assert every == pytest.approx((full + (k - 1) * plain) / k, rel=1e-9)


def test_aims_default_costs_at_most_1_3_times_joint_training(tmp_path) -> None:
    """The default (PAM off) adds its prototype scores and split CE to a joint step: a little
    over joint training's FLOPs, far under the paper's PAM (issue #26: <= 1.3x)."""
    joint = step_flops_per_sample(tiny_config(tmp_path / "j", method={"name": "joint"}))
    default = step_flops_per_sample(tiny_config(tmp_path / "a", method={"name": "aim"}))
    assert joint < default <= 1.3 * joint
