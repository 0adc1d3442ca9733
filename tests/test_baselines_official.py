"""The baselines against their official code (issue: "Baselines as published"): each test here
failed before the fix it names."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import tiny_config

from mmbalance.experiment import build_experiment
from mmbalance.methods import functional as MF
from mmbalance.training.trainer import Trainer


def _trainer(tmp_path: Path, name: str, options: dict | None = None, **sections) -> Trainer:
    cfg = tiny_config(tmp_path, method={"name": name, "options": options or {}}, **sections)
    data, model, method = build_experiment(cfg)
    return Trainer(model, method, data, cfg, tmp_path / name)


def test_mla_projector_coefficient_uses_the_batch_index_within_the_epoch(tmp_path: Path) -> None:
    # official utils/utils.py GSPlugin.before_update: alpha = 0.1 ** (batch_index / n + 1)
    assert MF.owm_alpha(0, 10) == pytest.approx(0.1)
    assert MF.owm_alpha(5, 10) == pytest.approx(0.1**1.5)
    mla = _trainer(tmp_path, "mla")
    batch = next(iter(mla._loader(mla.data.train, train=True)))
    mla.step = 43  # epoch 4 of 10-batch epochs: the global step is far from the batch index
    method, model = mla.method, mla.model
    seen = []
    for name in ("a", "b"):
        state = mla._state(4, 3, 10, name)
        out = method.forward(model, batch, state)
        loss = sum(method.loss(out, batch, state).values())
        mla.optimizer.zero_grad()
        loss.backward()
        before = method.projection.clone()
        method.on_after_backward(model, state)
        seen.append((before, method._feature.detach().float(), method.projection.clone()))
    (_, _, first), (before, feature, after) = seen
    assert torch.equal(first, torch.eye(first.shape[0]))  # the first call only records
    expected = MF.owm_update(before, feature, 0.1 ** (1 + 3 / 10))
    assert torch.allclose(after, expected, atol=1e-6)
    wrong = MF.owm_update(before, feature, 0.1 ** (1 + 43 / 10))  # the global-step reading
    assert not torch.allclose(after, wrong, atol=1e-4)


def test_opm_scores_before_dropping_with_the_fused_heads_split(tmp_path: Path) -> None:
    # official Classifier.forward: performance_1/2 from the detached split of fc on the
    # features *before* Modality_drop; the unimodal heads here read them undropped too
    opm = _trainer(tmp_path, "opm", {"p_exe": 1.0, "warmup_epochs": 0, "q_base": 0.9, "lam": 1.0})
    batch = next(iter(opm._loader(opm.data.train, train=True)))
    model, method = opm.model, opm.method
    torch.manual_seed(0)
    out = method.forward(model, batch, opm._state(1, 0, 1))
    with torch.no_grad():
        whole = model(batch["inputs"])
    y = batch["label"]
    expected = torch.stack([MF.true_class_score(whole.split_logits[m], y) for m in ("a", "b")])
    assert torch.allclose(method._scores, expected)
    for m in ("a", "b"):  # heads from the undropped features
        assert torch.allclose(out.unimodal_logits[m], whole.unimodal_logits[m], atol=1e-6)
    assert (out.features["a"].abs().sum(1) == 0).any()  # the fusion saw a's dropped features


def test_opm_ogm_modulates_from_pre_drop_scores_and_only_after_the_warm_up(
    tmp_path: Path,
) -> None:
    opm = _trainer(
        tmp_path, "opm_ogm", {"p_exe": 1.0, "warmup_epochs": 1, "q_base": 0.9, "lam": 1.0}
    )
    batch = next(iter(opm._loader(opm.data.train, train=True)))
    model, method = opm.model, opm.method
    for epoch, modulated in ((0, False), (1, False), (2, True)):
        torch.manual_seed(0)
        state = opm._state(epoch, 0, 1)
        out = method.forward(model, batch, state)
        method.loss(out, batch, state)
        if not modulated:
            assert method.ogm._k is None  # warm-up: neither dropping nor OGM
            continue
        # OGM's k from the same pre-drop scores OPM used, not from the dropped outputs
        expected = MF.ogm_coefficients(method._scores, method.options.alpha)
        assert torch.allclose(method.ogm._k, expected)
        post = torch.stack(
            [MF.true_class_score(out.split_logits[m], batch["label"]) for m in ("a", "b")]
        )
        assert not torch.allclose(MF.ogm_coefficients(post, method.options.alpha), expected)


def test_inforeg_uses_the_fused_heads_split_and_the_official_constants(tmp_path: Path) -> None:
    # official main.py@939b2ed: out_a/out_v from model.module.head (lines 359-363), beta 0.95
    # for audio and 0.1 for visual (lines 465-476)
    from mmbalance.methods.inforeg import InfoRegOptions

    opts = InfoRegOptions()
    assert (opts.scale(0), opts.scale(1), opts.scale(2)) == (0.95, 0.1, 0.1)
    inforeg = _trainer(tmp_path, "inforeg")
    assert inforeg.method.heads is None
    state = inforeg._state(0, 0, 1)
    inforeg.method.on_epoch_start(state)
    batch = next(iter(inforeg._loader(inforeg.data.train, train=True)))
    out = inforeg.method.forward(inforeg.model, batch, state)
    terms = inforeg.method.loss(out, batch, state)
    grads = torch.autograd.grad(terms["ce_a"], inforeg.model.head.weight)
    assert grads[0].abs().sum() > 0
    film = _trainer(tmp_path / "f", "inforeg", model={"fusion": "film"})
    assert film.method.heads is not None  # no split for FiLM: separate heads


def test_pmr_blends_prototypes_only_from_the_end_of_epoch_one(tmp_path: Path) -> None:
    # official calculate_prototype(..., epoch): "if epoch <= 0" no momentum (lines 435-440)
    from mmbalance.methods.pmr import class_means

    pmr = _trainer(tmp_path, "pmr", {"momentum": 0.5})
    method, model = pmr.method, pmr.model
    state0 = pmr._state(0, 0, 1)
    method.on_fit_start(state0)
    with torch.no_grad():
        for p in model.encoders.parameters():
            p.mul_(1.5)  # the features move between refreshes
    fresh = class_means(model, state0.loaders["train"], 3, pmr.device)
    method.on_epoch_end(state0)  # after epoch 0: the new means as they are
    for m in model.modalities:
        assert torch.allclose(method.prototypes[m], fresh[m])
    old = {m: c.clone() for m, c in method.prototypes.items()}
    with torch.no_grad():
        for p in model.encoders.parameters():
            p.mul_(1.5)
    fresh = class_means(model, state0.loaders["train"], 3, pmr.device)
    method.on_epoch_end(pmr._state(1, 0, 1))  # after epoch 1: blended
    for m in model.modalities:
        assert torch.allclose(method.prototypes[m], 0.5 * fresh[m] + 0.5 * old[m])


def test_pmr_entropy_regulariser_raises_the_dominant_modalitys_entropy(tmp_path: Path) -> None:
    pmr = _trainer(tmp_path, "pmr", {"entropy_weight": 0.5, "entropy_epochs": 1})
    state = pmr._state(0, 0, 1)
    pmr.method.on_fit_start(state)
    batch = next(iter(pmr._loader(pmr.data.train, train=True)))
    out = pmr.method.forward(pmr.model, batch, state)
    terms = pmr.method.loss(out, batch, state)
    assert terms["entropy"] < 0  # -0.5 * H, H > 0
    later = pmr.method.loss(out, batch, pmr._state(1, 0, 1))
    assert "entropy" not in later  # only in the first entropy_epochs epochs


def test_greedy_mmtm_width_shared_squeeze_and_no_speed_during_curation(tmp_path: Path) -> None:
    from mmbalance.methods.greedy import MMTM

    assert MMTM(64, 32, 4).squeeze.out_features == int(2 * 96 / 4)  # official dim_out
    g = _trainer(tmp_path, "greedy", {"mmtm_from": 1, "starting_epoch": 0, "eps": 0.0})
    method, model = g.method, g.model
    batch = next(iter(g._loader(g.data.train, train=True)))

    def step(epoch: int) -> None:
        state = g._state(epoch, 0, 1)
        out = method.forward(model, batch, state)
        loss = sum(method.loss(out, batch, state).values())
        g.optimizer.zero_grad()
        loss.backward()
        method.on_after_backward(model, state)
        method.on_step_end(state)

    # one step by hand: the shared squeeze counts in both modalities' bypass speed
    state = g._state(0, 0, 1)
    out = method.forward(model, batch, state)
    g.optimizer.zero_grad()
    sum(method.loss(out, batch, state).values()).backward()
    expected = []
    for j in range(2):
        params = [
            p
            for blk in method.mmtm.values()
            for p in (*blk.excite[j].parameters(), *blk.squeeze.parameters())
        ]
        gn = sum(float(p.grad.pow(2).sum()) for p in params)
        wn = sum(float(p.detach().pow(2).sum()) for p in params)
        expected.append(gn / wn)
    method.on_after_backward(model, state)
    assert method.bypass == pytest.approx(expected, rel=1e-5)
    method.on_step_end(state)  # eps 0: curation starts
    assert method.remaining == method.options.window
    frozen = (list(method.main), list(method.bypass))
    for _ in range(method.options.window):
        step(0)
    assert (method.main, method.bypass) == frozen  # nothing accumulated while curating
    step(0)
    assert method.main != frozen[0]


def test_gblending_gives_no_weight_to_an_output_whose_validation_loss_rose() -> None:
    # G = 1.0 - 1.1 < 0: BalanceBenchmark's |G / O^2| would weigh it like a gain
    o = (1.1 - 0.3) - (1.0 - 0.9)  # 0.7
    assert MF.gblending_weight(0.9, 1.0, 0.3, 1.1) == 0.0
    assert MF.gblending_weight(0.9, 1.0, 0.3, 1.1, "abs") == pytest.approx(0.1 / o**2)
    assert MF.gblending_weight(0.9, 1.0, 0.3, 0.8) == pytest.approx(0.2 / 0.16)


def test_gblending_copies_train_a_super_epoch_at_the_current_learning_rate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gb = _trainer(tmp_path, "gblending", {"super_epoch": 2})
    seen: list[tuple[float, int]] = []
    real_step = torch.optim.SGD.step

    def spy(self: torch.optim.Optimizer, *args: object, **kwargs: object) -> object:
        if self is not gb.optimizer:  # a copy's optimiser
            seen.append((self.param_groups[0]["lr"], id(self)))
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", spy)
    for group in gb.optimizer.param_groups:
        group["lr"] = 0.0123  # where a schedule has taken it
    gb.method.estimate(gb._state(2, 0, 1))
    assert {lr for lr, _ in seen} == {0.0123}
    steps_per_copy = len(seen) // len({i for _, i in seen})
    batches = -(-len(gb.data.train) // gb.method.options.estimate_batch_size)
    assert steps_per_copy == 2 * batches  # super_epoch epochs, not one


@pytest.mark.parametrize("optimiser", ["sgd", "adam", "adamw"])
def test_gblending_copies_use_the_runs_optimiser_whatever_its_kind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, optimiser: str
) -> None:
    """The copies' optimiser is the run's kind with the run's settings. torch keeps entries in
    ``defaults`` that the constructor refuses (AdamW's ``decoupled_weight_decay`` in 2.13):
    copying them blindly crashed every AdamW run of G-Blending at its first estimate."""
    optim = {"name": optimiser, "lr": 0.01, "weight_decay": 0.003}
    gb = _trainer(tmp_path, "gblending", {"super_epoch": 1}, optim=optim)
    made: list[torch.optim.Optimizer] = []
    kind = type(gb.optimizer)
    real_step = kind.step

    def spy(self: torch.optim.Optimizer, *args: object, **kwargs: object) -> object:
        if self is not gb.optimizer:  # a copy's optimiser
            made.append(self)
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(kind, "step", spy)
    weights = gb.method.estimate(gb._state(0, 0, 1))
    assert set(weights) == {"fused", "a", "b"}
    assert made and all(type(o) is kind for o in made)
    for o in made:
        for key in ("lr", "weight_decay"):
            assert o.defaults[key] == gb.optimizer.defaults[key], key
