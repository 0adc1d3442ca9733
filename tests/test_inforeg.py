"""InfoReg: the learning-window coefficient, the regulation strength, and one regulated step."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_config

from mmbalance.data.loading import make_loader, to_device
from mmbalance.experiment import build_experiment, run_experiment
from mmbalance.methods.inforeg import regulation, window_k
from mmbalance.training.trainer import Trainer


def test_window_k_by_hand() -> None:
    assert window_k([]) == 1.0
    assert window_k([2.0]) == pytest.approx(1.0)  # tr2 = 0 while there is one trace
    traces = [float(t) for t in range(1, 13)]  # 1..12
    tr1 = sum(range(3, 13)) / 10  # the last ten: 3..12
    tr2 = sum(range(2, 12)) / 10  # the ten before the last: 2..11
    assert window_k(traces) == pytest.approx((tr1 - tr2) / tr1)
    assert window_k([4.0, 4.0, 2.0], window=2) == pytest.approx((3.0 - 4.0) / 3.0)


def test_regulation_by_hand() -> None:
    d, beta = regulation(torch.tensor([30.0, 29.5, 10.0]), [0.95, 0.1, 0.1])
    assert d == 0 and beta == pytest.approx(0.95 * math.exp(math.tanh(0.5)))
    d, beta = regulation(torch.tensor([3.0, 7.0]), [0.95, 0.1])
    assert d == 1 and beta == pytest.approx(0.1 * math.exp(math.tanh(4.0)))


def test_one_regulated_step_adds_the_proximal_term(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, method={"name": "inforeg"}, train={"epochs": 1})
    data, model, method = build_experiment(cfg)
    trainer = Trainer(model, method, data, cfg, tmp_path / "run")
    state = trainer._state(0, 0, 1)
    method.on_epoch_start(state)
    with torch.no_grad():  # move the encoders away from their epoch-start values
        for p in model.parameters():
            p.add_(0.01)
    batch = to_device(
        next(iter(make_loader(data.train, cfg.data, True, 0, seed=cfg.seed))), trainer.device
    )
    out = method.forward(model, batch, state)
    terms = method.loss(out, batch, state)
    y = batch["label"]
    assert method.heads is None  # concat: the fused head's own split (official)
    uni = out.split_logits
    for m in model.modalities:  # the unimodal terms are the split's cross-entropies
        assert terms[f"ce_{m}"].item() == pytest.approx(F.cross_entropy(uni[m], y).item())
    scores = [
        float(uni[m].detach().softmax(1).gather(1, y[:, None]).sum()) for m in model.modalities
    ]
    d = max(range(2), key=lambda j: scores[j])
    plain = {}
    loss = sum(terms.values())
    trainer.optimizer.zero_grad()
    loss.backward(retain_graph=True)
    for m in model.modalities:
        plain[m] = [p.grad.clone() for p in model.modality_parameters(m)]
    head_grad = model.head.weight.grad.clone()
    assert head_grad.abs().sum() > 0  # the unimodal terms train the fused head too
    method.on_after_backward(model, state)
    c = (0.95, 0.1)[d]  # official constants: audio (first) 0.95, visual (second) 0.1
    beta = c * math.exp(math.tanh(scores[d] - scores[1 - d]))
    dom, other = model.modalities[d], model.modalities[1 - d]
    for p, g in zip(model.modality_parameters(dom), plain[dom], strict=True):
        assert torch.allclose(p.grad, g + beta * 0.01, atol=1e-6)  # theta - theta_0 = 0.01
    for p, g in zip(model.modality_parameters(other), plain[other], strict=True):
        assert torch.equal(p.grad, g)  # the weaker modality is left alone
    assert F.cross_entropy(out.logits, y).item() == pytest.approx(terms["ce"].item())


def test_trains_logs_the_window_and_resumes_its_traces(tmp_path: Path) -> None:
    result = run_experiment(
        tiny_config(tmp_path, method={"name": "inforeg"}, train={"epochs": 3}), tmp_path / "r"
    )
    rows = result.history
    assert rows[0]["method_k"] == 1.0 and rows[0]["method_fisher_trace"] > 0
    traces = [r["method_fisher_trace"] for r in rows]
    assert rows[2]["method_k"] == pytest.approx(window_k(traces[:2]))
