"""MMPareto: the Pareto weights by hand, and one step's encoder gradients recomputed."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_config

from mmbalance.data.loading import make_loader, to_device
from mmbalance.experiment import build_experiment
from mmbalance.methods.mmpareto import pareto_weights
from mmbalance.training.trainer import Trainer


def test_pareto_weights_by_hand() -> None:
    a = torch.tensor([1.0, 0.0])
    k0, k1, cos = pareto_weights(a, torch.tensor([1.0, 1.0]))  # agreeing: plain average
    assert (k0, k1) == (0.5, 0.5) and cos == pytest.approx(1 / math.sqrt(2))
    b = torch.tensor([-1.0, 1.0])  # conflicting: min-norm point of the segment [a, b]
    k0, k1, cos = pareto_weights(a, b)
    assert cos == pytest.approx(-1 / math.sqrt(2))
    assert (k0, k1) == pytest.approx((0.6, 0.4))  # b.(b - a) / ||a - b||^2 = 3 / 5
    new = k0 * a + k1 * b
    assert float((a - b).dot(new)) == pytest.approx(0.0, abs=1e-6)  # orthogonal: minimal norm


def test_one_step_gradients_match_an_independent_computation(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, method={"name": "mmpareto"}, train={"epochs": 1})
    data, model, method = build_experiment(cfg)
    trainer = Trainer(model, method, data, cfg, tmp_path / "run")
    batch = to_device(
        next(iter(make_loader(data.train, cfg.data, True, 0, seed=cfg.seed))), trainer.device
    )
    state = trainer._state(0, 0, 1)
    y = batch["label"]

    # independent: the three gradients of every encoder, from scratch
    out = model(batch["inputs"])
    heads = method.heads
    assert heads is not None
    uni = heads(out.features)
    expected = {}
    for m in model.modalities:
        params = model.modality_parameters(m)
        l_mm = F.cross_entropy(out.logits, y)
        l_sum = l_mm + sum(F.cross_entropy(uni[k], y) for k in model.modalities)
        g_mm = torch.autograd.grad(l_mm, params, retain_graph=True)
        g_m = torch.autograd.grad(F.cross_entropy(uni[m], y), params, retain_graph=True)
        g_sum = torch.autograd.grad(l_sum, params, retain_graph=True)
        fa = torch.cat([g.flatten() for g in g_mm])
        fb = torch.cat([g.flatten() for g in g_m])
        cos = float(fa.dot(fb) / (fa.norm() * fb.norm()))
        if cos > 0:
            k0 = k1 = 0.5
        else:
            k0 = float(fb.dot(fb - fa) / (fa - fb).dot(fa - fb))
            k1 = 1 - k0
        expected[m] = []
        for a, b, s in zip(g_mm, g_m, g_sum, strict=True):
            new = 2 * (k0 * a + k1 * b)
            expected[m].append(1.5 * new * max(1.0, float(s.norm() / new.norm())))

    # the method, as the trainer runs it
    output = method.forward(model, batch, state)
    terms = method.loss(output, batch, state)
    loss = torch.stack([t.reshape(()) for t in terms.values()]).sum()
    trainer.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    method.on_after_backward(model, state)
    for m in model.modalities:
        for p, want in zip(model.modality_parameters(m), expected[m], strict=True):
            assert torch.allclose(p.grad, want, rtol=1e-4, atol=1e-7)
    # the heads keep the summed gradient
    head_grad = torch.autograd.grad(
        F.cross_entropy(model(batch["inputs"]).logits, y), model.head.weight
    )[0]
    assert torch.allclose(model.head.weight.grad, head_grad, rtol=1e-5, atol=1e-7)
