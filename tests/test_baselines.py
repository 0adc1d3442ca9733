"""Baseline methods: coefficients against hand computations, their effect on a real step, and
exact resume for every registered method."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_config, without_time

from mmbalance.experiment import build_experiment
from mmbalance.methods import create_method, list_methods
from mmbalance.methods import functional as MF
from mmbalance.training.trainer import Trainer

EXAMPLE_OPTIONS: dict[str, dict] = {
    "unimodal": {"modality": "b"},
    "aim": {"latent_dim": 8, "dap_steps": 2, "start_epoch": 1},
    "diag_relearn": {"reinit_epoch": 1, "reinit_num": 2},
    "pmr": {"alpha": 1.0},
}


def test_true_class_score_is_a_batch_sum_of_probabilities() -> None:
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]])
    assert MF.true_class_score(logits, torch.tensor([1, 0])).item() == pytest.approx(0.75 + 0.5)


def test_ogm_coefficients_two_and_three_modalities() -> None:
    k = MF.ogm_coefficients(torch.tensor([6.0, 3.0]), alpha=0.5)
    assert k.tolist() == pytest.approx([1 - math.tanh(0.5 * 2.0), 1.0])
    k3 = MF.ogm_coefficients(torch.tensor([6.0, 3.0, 2.0]), alpha=0.5)
    # rho = [6/2, 3/2, 2/3]: each compared with the weakest other modality
    assert k3.tolist() == pytest.approx([1 - math.tanh(1.5), 1 - math.tanh(0.75), 1.0])
    assert MF.ogm_coefficients(torch.tensor([2.0, 2.0]), 1.0).tolist() == [1.0, 1.0]


def test_pmr_betas_weight_only_the_weakest() -> None:
    assert MF.pmr_betas(torch.tensor([0.4, 0.9]), 2.0).tolist() == [2.0, 0.0]
    assert MF.pmr_betas(torch.tensor([0.9, 0.4, 0.7]), 1.0).tolist() == [0.0, 1.0, 0.0]
    assert MF.pmr_betas(torch.tensor([0.5, 0.5]), 1.0).tolist() == [0.0, 0.0]


def test_dr_scaling_kmeans_purity_and_weight() -> None:
    x = torch.tensor([[0.0, 5.0], [2.0, 5.0], [4.0, 5.0]])
    assert MF.minmax_scale(x).tolist() == [[-1.0, -1.0], [0.0, -1.0], [1.0, -1.0]]
    assert MF.cluster_purity(torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 1, 1])) == 0.75
    g = torch.Generator().manual_seed(0)
    blobs = torch.cat([torch.randn(20, 2, generator=g) + 10, torch.randn(20, 2, generator=g) - 10])
    labels = torch.cat([torch.zeros(20), torch.ones(20)]).long()
    assign = MF.kmeans(blobs, 2)
    assert MF.cluster_purity(assign, labels) == 1.0
    assert torch.equal(assign, MF.kmeans(blobs, 2))  # deterministic
    assert MF.relearn_weight(0.1, 3.0) == pytest.approx(math.tanh(0.3))


def _trainer(tmp_path: Path, name: str, options: dict | None = None, **sections) -> Trainer:
    cfg = tiny_config(tmp_path, method={"name": name, "options": options or {}}, **sections)
    data, model, method = build_experiment(cfg)
    return Trainer(model, method, data, cfg, tmp_path / name)


def _grads_after_hook(trainer: Trainer, batch: dict) -> dict[str, torch.Tensor]:
    state = trainer.state(0, 0, 1)
    trainer.method.on_fit_start(state)
    out = trainer.method.forward(trainer.model, batch, state)
    loss = sum(trainer.method.loss(out, batch, state).values())
    trainer.optimizer.zero_grad()
    loss.backward()
    trainer.method.on_after_backward(trainer.model, state)
    return {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}


def test_ogm_scales_exactly_the_dominant_encoders_gradients(tmp_path: Path) -> None:
    joint = _trainer(tmp_path, "joint")
    ogm = _trainer(tmp_path, "ogm", {"alpha": 0.5})
    ogm.model.load_state_dict(joint.model.state_dict())
    batch = next(iter(joint.train_loader()))
    g_joint = _grads_after_hook(joint, batch)
    g_ogm = _grads_after_hook(ogm, batch)
    out = joint.model(batch["inputs"])
    scores = torch.stack(
        [MF.true_class_score(out.split_logits[m], batch["label"]) for m in ("a", "b")]
    )
    assert scores[0] > scores[1]  # modality a (strength 3) dominates
    k = 1 - math.tanh(0.5 * float(scores[0] / scores[1]))
    for name, g in g_joint.items():
        expected = g * k if name.startswith("encoders.a.") else g
        assert torch.allclose(g_ogm[name], expected, atol=1e-6), name


def test_ogm_ge_adds_noise_with_the_gradients_scale_and_conv_only_skips_linear(
    tmp_path: Path,
) -> None:
    joint = _trainer(tmp_path, "joint")
    ge = _trainer(tmp_path, "ogm_ge", {"alpha": 0.5})
    ge.model.load_state_dict(joint.model.state_dict())
    batch = next(iter(joint.train_loader()))
    g_joint = _grads_after_hook(joint, batch)
    g_ge = _grads_after_hook(ge, batch)
    w = "encoders.b.blocks.0.0.weight"  # the non-dominant modality: k = 1, noise only
    noise = g_ge[w] - g_joint[w]
    assert 0.5 < float(noise.std() / g_joint[w].std()) < 1.5
    conv_only = _trainer(tmp_path, "ogm", {"alpha": 0.5, "conv_only": True})
    conv_only.model.load_state_dict(joint.model.state_dict())
    g_conv = _grads_after_hook(conv_only, batch)  # MLP encoders: no 4-D gradient to scale
    assert all(torch.allclose(g_conv[n], g, atol=1e-6) for n, g in g_joint.items())


def test_pmr_adds_the_prototype_ce_of_the_weakest_modality(tmp_path: Path) -> None:
    pmr = _trainer(tmp_path, "pmr", {"alpha": 2.0})
    state = pmr.state(0, 0, 1)
    pmr.method.on_fit_start(state)
    train = pmr.data.train
    model = pmr.model.eval()
    with torch.no_grad():
        feats, _ = model.encode(train.inputs)
    for m in ("a", "b"):
        expected = torch.stack([feats[m][train.labels == k].mean(0) for k in range(3)])
        assert torch.allclose(pmr.method.prototypes[m], expected, atol=1e-5)
    model.train()
    batch = next(iter(pmr._loader(train, train=True)))
    out = model(batch["inputs"])
    terms = pmr.method.loss(out, batch, state)
    logits_b = -torch.cdist(out.features["b"], pmr.method.prototypes["b"])
    assert terms["pce"].item() == pytest.approx(
        2.0 * F.cross_entropy(logits_b, batch["label"]).item(), rel=1e-4
    )
    old = {m: c.clone() for m, c in pmr.method.prototypes.items()}
    pmr.method.on_epoch_end(pmr.state(1, 0, 1))  # blended from the end of epoch 1 on
    model.eval()
    with torch.no_grad():
        feats, _ = model.encode(train.inputs)
    new_a = torch.stack([feats["a"][train.labels == k].mean(0) for k in range(3)])
    assert torch.allclose(pmr.method.prototypes["a"], 0.8 * new_a + 0.2 * old["a"], atol=1e-5)


def test_diag_relearn_moves_encoders_toward_their_initial_weights(tmp_path: Path) -> None:
    dr = _trainer(tmp_path, "diag_relearn", {"reinit_epoch": 1, "reinit_num": 1})
    initial = copy.deepcopy(dr.model.encoders.state_dict())
    result = dr.fit()
    assert dr.method.reinits == 1
    first = result.history[0]
    for m in ("a", "b"):
        assert first[f"method_w_{m}"] == pytest.approx(math.tanh(3.0 * first[f"method_gap_{m}"]))
    assert "method_w_a" not in result.history[1]  # reinit_num reached
    # the relearn formula itself, on known weights
    with torch.no_grad():
        for p in dr.model.encoders.parameters():
            p.fill_(1.0)
    dr.method.relearn(dr.model, {"a": 0.25, "b": 0.0})
    for name, p in dr.model.encoders.named_parameters():
        expected = torch.ones_like(p) if name.startswith("b.") else 0.75 + 0.25 * initial[name]
        assert torch.allclose(p, expected), name


@pytest.mark.parametrize("name", list_methods())
def test_every_method_resumes_exactly(name: str, tmp_path: Path) -> None:
    cfg = tiny_config(
        tmp_path,
        method={"name": name, "options": EXAMPLE_OPTIONS.get(name, {})},
        train={"epochs": 3},
    )

    def trainer(run: str) -> Trainer:
        data, model, _ = build_experiment(cfg)
        return Trainer(
            model, create_method(name, EXAMPLE_OPTIONS.get(name, {})), data, cfg, tmp_path / run
        )

    full = trainer("full").fit()
    crashed = trainer("crash")
    original = crashed.method.on_epoch_start

    def crash_at_2(state) -> None:
        if state.epoch == 2:
            raise KeyboardInterrupt
        original(state)

    crashed.method.on_epoch_start = crash_at_2  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        crashed.fit()
    resumed = trainer("crash")
    resumed.resume()
    result = resumed.fit()
    assert without_time(result.history) == without_time(full.history)


def test_opm_probabilities_rescale_and_dropping(tmp_path: Path) -> None:
    q = MF.opm_drop_probabilities(torch.tensor([6.0, 3.0]), q_base=0.5, lam=0.5)
    assert q.tolist() == pytest.approx([0.5 * (1 + 0.5 * math.tanh(1.0)), 0.0])
    assert MF.opm_drop_probabilities(torch.tensor([9.0, 1.0]), 0.9, 1.0)[0] == 1.0  # clipped
    scale = MF.opm_rescale(torch.tensor([10.0, 30.0]), torch.tensor([0.4, 0.0]))
    assert scale.item() == pytest.approx(1 / (1 - 0.1))
    opm = _trainer(tmp_path, "opm", {"p_exe": 1.0, "warmup_epochs": 0, "q_base": 0.3, "lam": 0.5})
    batch = next(iter(opm.train_loader()))
    model = opm.model
    warm = opm.method.forward(model, batch, opm.state(0, 0, 1))  # epoch 0: warm-up, no drop
    assert opm.method._keep is None
    torch.manual_seed(0)
    out = opm.method.forward(model, batch, opm.state(1, 0, 1))
    feats_a = out.features["a"]
    dropped = feats_a.abs().sum(1) == 0
    assert 0 < int(dropped.sum()) < len(dropped)  # a (dominant) loses some samples' features
    assert torch.equal(out.features["b"] != 0, warm.features["b"] != 0)  # b is never dropped
    q_a = opm.method.means.sums["q_a"]  # the q of this one dropping step
    assert 0 < q_a < 1 and opm.method.means.sums["q_b"] == 0.0
    theta = q_a * 16 / (16 + 16)  # both encoders end in 16 features
    # kept features are scaled by 1 / (1 - theta)
    assert torch.allclose(feats_a[~dropped], warm.features["a"][~dropped] / (1 - theta), atol=1e-5)
    assert opm.method.loss(out, batch, opm.state(1, 0, 1))["ce"].isfinite()


def test_agm_shapley_responses_ratios_and_kappa() -> None:
    f = {
        frozenset(): torch.tensor([0.5]),
        frozenset({"a"}): torch.tensor([2.0]),
        frozenset({"v"}): torch.tensor([1.0]),
        frozenset({"a", "v"}): torch.tensor([4.0]),
    }
    r = MF.shapley_responses(f, ["a", "v"])
    # AGM: m_a = (f(a,v) - f(0,v) + f(a,0)) / 2, m_v = (f(a,v) - f(a,0) + f(0,v)) / 2
    assert r["a"].item() == pytest.approx((4 - 1 + 2) / 2)
    assert r["v"].item() == pytest.approx((4 - 2 + 1) / 2)
    g = torch.Generator().manual_seed(0)
    three = ["a", "b", "c"]
    outs = {
        frozenset(s): torch.randn(2, 3, generator=g)
        for k in range(4)
        for s in __import__("itertools").combinations(three, k)
    }
    resp = MF.shapley_responses(outs, three)
    assert torch.allclose(sum(resp.values()), outs[frozenset(three)], atol=1e-6)  # efficiency
    losses = torch.tensor([0.5, 1.5])
    assert MF.agm_ratios(losses).tolist() == pytest.approx([math.exp(1.0), math.exp(-1.0)])
    running = torch.tensor([1.0, 1.0])  # rbar = [1, 1]
    kappa = MF.agm_kappa(losses, running, alpha=0.5)
    assert kappa.tolist() == pytest.approx(
        [math.exp(0.5 * (1 - math.e)), math.exp(0.5 * (1 - math.exp(-1)))]
    )
    assert MF.agm_kappa(torch.tensor([0.0, 50.0]), running, 1.0)[1].item() == pytest.approx(
        math.exp(1 - math.exp(-50))
    )


def test_agm_forward_sums_to_the_full_output_and_scales_gradients(tmp_path: Path) -> None:
    # no normalisation layers: the train-mode and eval-mode passes are deterministic functions
    agm = _trainer(
        tmp_path,
        "agm",
        {"alpha": 1.0},
        model={"encoder": {"type": "mlp", "hidden": [16], "norm": "none"}},
    )
    batch = next(iter(agm.train_loader()))
    state = agm.state(0, 0, 1)
    out1 = agm.method.forward(agm.model, batch, state)
    assert agm.method.running is not None and agm.method.updates == 1
    assert agm.method.means.sums == {"kappa_a": 1.0, "kappa_b": 1.0}  # no running mean yet: kappa 1
    with torch.no_grad():
        agm.model.train()
        full = agm.model(batch["inputs"]).logits
    assert torch.allclose(out1.logits, full, atol=1e-5)  # responses sum to f(a, b)
    first = agm.method.running.clone()
    agm.method.forward(agm.model, batch, state)
    assert agm.method.updates == 2
    # t-th update: (t-1)/t old + 1/t new; the same batch gives the same losses again
    assert torch.allclose(agm.method.running, first, atol=1e-5)
    x = torch.ones(3, requires_grad=True)
    from mmbalance.methods.agm import _ScaleGrad

    _ScaleGrad.apply(x, 0.25).sum().backward()
    assert x.grad.tolist() == [0.25, 0.25, 0.25]


def test_gblending_weight_and_blended_loss(tmp_path: Path) -> None:
    # G = 1.0 - 0.8 = 0.2; O = (0.8 - 0.3) - (1.0 - 0.9) = 0.4 -> |G / O^2| = 1.25
    assert MF.gblending_weight(0.9, 1.0, 0.3, 0.8) == pytest.approx(0.2 / 0.16)
    gb = _trainer(
        tmp_path, "gblending", {"super_epoch": 2, "estimate_epochs": 1}, train={"epochs": 3}
    )
    head_params = {id(p) for p in gb.method.heads.parameters()}
    opt_params = {id(p) for group in gb.optimizer.param_groups for p in group["params"]}
    assert head_params <= opt_params  # the per-modality classifiers train with the model
    result = gb.fit()
    w = [{k: r[k] for k in r if k.startswith("method_w_")} for r in result.history]
    assert sum(w[0].values()) == pytest.approx(1.0) and set(w[0]) == {
        "method_w_fused",
        "method_w_a",
        "method_w_b",
    }
    assert w[1] == w[0] and w[2] != w[0]  # re-estimated at the super-epoch boundary (epoch 2)
    batch = next(iter(gb.train_loader()))
    state = gb.state(2, 0, 1)
    out = gb.model(batch["inputs"])
    terms = gb.method.loss(out, batch, state)
    heads = gb.method.heads(out.features)
    expected = gb.method.weights["fused"] * F.cross_entropy(out.logits, batch["label"]) + sum(
        gb.method.weights[m] * F.cross_entropy(heads[m], batch["label"]) for m in ("a", "b")
    )
    assert sum(terms.values()).item() == pytest.approx(expected.item(), rel=1e-5)


def test_greedy_speed_and_imbalance() -> None:
    assert MF.relative_speed(2.0, 8.0) == 0.25
    # d = log10(b0 / m0) - log10(b1 / m1) = log10(10) - log10(0.1) = 2
    assert MF.greedy_imbalance([1.0, 1.0], [10.0, 0.1]) == pytest.approx(2.0)


def test_greedy_mmtm_rescales_mid_network_and_curates(tmp_path: Path) -> None:
    g = _trainer(tmp_path, "greedy", {"starting_epoch": 0, "window": 2, "eps": 0.0})
    assert list(g.method.mmtm) == ["1"]  # MLP [16, 16]: an MMTM after depth 2
    mmtm = g.method.mmtm["1"]
    with torch.no_grad():
        for lin in mmtm.excite:
            lin.weight.zero_()
            lin.bias.zero_()  # sigmoid(0) = 0.5 on every channel
    batch = next(iter(g.train_loader()))
    model = g.model.eval()
    plain = model(batch["inputs"])
    out = g.method.predict(model, batch["inputs"])
    assert torch.allclose(out.features["a"], 0.5 * plain.features["a"], atol=1e-6)
    assert torch.allclose(
        out.logits,
        model.classify({m: 0.5 * f for m, f in plain.features.items()}).logits,
        atol=1e-6,
    )
    assert torch.allclose(sum(out.split_logits.values()), out.logits, atol=1e-6)  # prediction = sum
    # a training step: learning speeds accumulate, then curation of the leaning modality starts
    model.train()
    g.train_step(batch, epoch=0, i=0, steps=1)
    assert (
        all(v > 0 for v in g.method.main) and g.method.caring in (0, 1) and g.method.remaining == 2
    )
    caring = g.method.caring
    avg = g.method.averages[f"1_{caring}"]
    with torch.no_grad():
        mmtm.excite[caring].bias.fill_(5.0)  # would push the scale to ~0.99 without curation
    seen = []
    handle = (
        g.model.encoders[g.model.modalities[caring]]
        .blocks[1]
        .register_forward_hook(lambda m, i, o: seen.append(o))
    )
    out = g.method.forward(g.model, batch, g.state(0, 1, 2))
    handle.remove()
    m = g.model.modalities[caring]
    assert torch.allclose(out.features[m], seen[0] * avg, atol=1e-6)  # the running-average scale


def test_mla_projection_and_entropy_weights() -> None:
    p = MF.owm_update(torch.eye(2), torch.tensor([[1.0, 0.0], [1.0, 0.0]]), alpha=1.0)
    # r = [1, 0], k = [1, 0]^T: P = diag(1 - 1/2, 1), then divided by its Frobenius norm
    expected = torch.diag(torch.tensor([0.5, 1.0])) / math.sqrt(1.25)
    assert torch.allclose(p, expected)
    confident = torch.tensor([[10.0, 0.0]])  # entropy ~ 0
    unsure = torch.tensor([[0.0, 0.0]])  # entropy ln 2
    w = MF.entropy_weights([confident, unsure])
    e0 = -(confident.softmax(1) * confident.log_softmax(1)).sum().item()
    # softmax over modalities of (max_j e_j - e_m) = softmax([ln2 - e0, 0])
    a = math.exp(math.log(2) - e0)
    assert w[:, 0].tolist() == pytest.approx([a / (a + 1), 1 / (a + 1)])


def test_mla_alternates_unimodal_steps_and_fuses_at_test_time(tmp_path: Path) -> None:
    mla = _trainer(tmp_path, "mla", {"test_fusion": "fixed", "fixed_weights": [0.55, 0.45]})
    assert mla.method.passes(mla.model) == ["a", "b"]
    batch = next(iter(mla.train_loader()))
    head_before = mla.method.head.weight.detach().clone()
    grads = []
    original = mla.method.on_after_backward

    def record(model, state) -> None:
        g = mla.method.head.weight.grad.clone()
        original(model, state)
        grads.append(
            (state.pass_name, g, mla.method.head.weight.grad.clone(), mla.method.projection.clone())
        )

    mla.method.on_after_backward = record  # type: ignore[method-assign]
    mla.train_step(batch, epoch=0, i=0, steps=1)
    assert [g[0] for g in grads] == ["a", "b"] and mla.method.calls == 2 and mla.step == 1
    assert torch.equal(grads[0][1], grads[0][2])  # first update: no projection yet
    assert torch.allclose(grads[1][2], grads[1][1] @ grads[1][3].T, atol=1e-6)  # g P^T
    assert not torch.equal(head_before, mla.method.head.weight)
    mla.model.eval()
    out = mla.method.predict(mla.model, batch["inputs"])
    la, lb = out.split_logits["a"], out.split_logits["b"]
    assert torch.allclose(out.logits, 0.55 * la + 0.45 * lb, atol=1e-6)
    with pytest.raises(Exception, match="one weight per modality"):
        _trainer(tmp_path / "x", "mla", {"test_fusion": "fixed", "fixed_weights": [1.0]})


def test_score_sources_are_checked_at_construction(tmp_path: Path) -> None:
    from mmbalance.errors import CapabilityError, ConfigError

    cfg = tiny_config(
        tmp_path, method={"name": "ogm", "options": {"scores": "split"}}, model={"fusion": "film"}
    )
    with pytest.raises(CapabilityError, match="'split' needs a concat or sum fusion"):
        build_experiment(cfg)
    cfg = tiny_config(
        tmp_path,
        method={"name": "opm_ogm", "options": {}},
        model={"fusion": "gated", "unimodal_heads": False},
    )
    with pytest.raises(CapabilityError, match="unimodal heads"):
        build_experiment(cfg)
    with pytest.raises(ConfigError, match="alpha"):
        create_method("opm_ogm", alpha=-1.0)  # OGM's options are validated in OPM&OGM too
