"""AIM as a method: gradient routing (Eq. 13), BatchNorm safety, DAP, phases, resume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_config, without_time

from mmbalance.errors import CapabilityError, ConfigError
from mmbalance.experiment import build_experiment, run_experiment
from mmbalance.methods.aim.decoupler import decoupler_size
from mmbalance.methods.aim.method import AIM, AIMOptions
from mmbalance.models.resnet import ResNet18Encoder
from mmbalance.training.trainer import Trainer

# PAM on: these tests exercise the paper's whole mechanism (the default has PAM off)
AIM_FAST = {"latent_dim": 8, "dap_steps": 3, "start_epoch": 0, "pam": True}
# The paper read literally: input-space DAP (Eqs. 3-6), flat Euclidean distances at tau = 1, a
# randomly initialised decoupler with a free mask (docs/aim.md lists the defaults' departures).
AIM_LITERAL = {
    **AIM_FAST,
    "prototypes": "dap",
    "dap_distance": "flat",
    "dap_temperature": 1.0,
    "decoupler_init": "random",
    "mask_share": None,
    "recon_loss": "sum",
    "lambda_mod": 1.0,  # CE + L_mod
    "dam_normalize": False,  # Eq. 15 with Eq. 14's alpha as it is
    "aux_batch_fraction": 1.0,  # every pass on the whole batch
    "pdm_batch_fraction": 1.0,
    "split_ce": 0.0,  # the head trains on the fused CE only
}

# Two image modalities through tiny ResNet18s: BatchNorm everywhere.
RESNET_TINY: dict[str, Any] = {
    "data": {
        "options": {
            "num_samples": 48,
            "num_classes": 3,
            "modalities": {
                "a": {"shape": [3, 8, 8], "strength": 3.0},
                "b": {"shape": [2, 8, 8], "strength": 1.0},
            },
        },
        "batch_size": 16,
    },
    "model": {"encoder": {"type": "resnet18", "width": 0.0625, "small_input": True}},
}


def _setup(tmp_path: Path, method_options: dict | None = None, **sections: Any):
    cfg = tiny_config(
        tmp_path,
        method={"name": "aim", "options": {**AIM_FAST, **(method_options or {})}},
        **sections,
    )
    data, model, method = build_experiment(cfg)
    trainer = Trainer(model, method, data, cfg, tmp_path / "run")
    state = trainer.state(0, 0, 1)
    method.on_fit_start(state)
    batch = next(iter(trainer.train_loader()))
    return trainer, method, model, batch, state


def _grads(loss: torch.Tensor, params: list[torch.nn.Parameter]) -> list[torch.Tensor | None]:
    return list(torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True))


def _nonzero(g: torch.Tensor | None) -> bool:
    return g is not None and bool(g.abs().sum() > 0)


def test_eq13_auxiliary_loss_reaches_original_weights_through_the_decoupler_only(
    tmp_path: Path,
) -> None:
    # One block per encoder, no norm: a block is relu(x @ W^T + b) and its auxiliary block
    # relu(x @ theta_b^T + b), both recomputed here by hand from the weights.
    _trainer, method, model, batch, state = _setup(
        tmp_path,
        {**AIM_LITERAL, "only_auxiliary": True, "dam": False, "pdm_during_modulation": False},
        model={"encoder": {"type": "mlp", "hidden": [6], "norm": "none"}},
    )
    out = method.forward(model, batch, state)
    terms = method.loss(out, batch, state)
    assert set(terms) == {"ce", "mod"}
    assert all(g is None for g in _grads(terms["mod"], list(method.decoupler.parameters())))
    y = batch["label"]
    protos = method.dap.propagate(model, "flat")
    s, s_aux, loss_aux = [], [], []
    for m in model.modalities:
        block = model.encoders[m].blocks[0][0]  # the Linear of the only block
        layer = method.decoupler.layers[m][0]["0__weight"]
        lat = block.weight @ layer.phi_lat.weight.detach().T + layer.phi_lat.bias.detach()
        mask = torch.sigmoid(lat @ layer.phi_mask.weight.detach().T + layer.phi_mask.bias.detach())
        theta_b = (lat * mask) @ layer.psi.weight.detach().T + layer.psi.bias.detach()  # Eq. 7
        x = batch["inputs"][m]
        for weight, scores, losses in ((block.weight, s, None), (theta_b, s_aux, loss_aux)):
            h = torch.relu(x @ weight.T + block.bias)
            logits = -torch.sqrt(((h[:, None] - protos[m][0][None]) ** 2).sum(-1) + 1e-8)
            scores.append(logits.softmax(1)[torch.arange(len(y)), y].mean().detach())
            if losses is not None:
                losses.append(F.cross_entropy(logits, y))
    e, e_aux = torch.exp(-torch.stack(s)), torch.exp(-torch.stack(s_aux))
    rho_aux = e_aux / (e.sum() + e_aux.sum())  # Eq. 12
    # L_mod = rho~ . L~ (one depth, alpha = 1, original weights zero): its gradient w.r.t. W is
    # J_pdm(W)^T g_theta_b (Eq. 13).
    expected_loss = (rho_aux * torch.stack(loss_aux)).sum()
    assert terms["mod"].item() == pytest.approx(expected_loss.item(), rel=1e-5)
    for m in model.modalities:
        block = model.encoders[m].blocks[0][0]
        got = _grads(terms["mod"], [block.weight, block.bias])
        expected = torch.autograd.grad(expected_loss, [block.weight, block.bias], retain_graph=True)
        assert _nonzero(got[0])
        assert torch.allclose(got[0], expected[0], atol=1e-6)
        assert torch.allclose(got[1], expected[1], atol=1e-6)


def test_l_pdm_moves_only_the_decoupler(tmp_path: Path) -> None:
    _trainer, method, model, batch, state = _setup(tmp_path, {"start_epoch": 5})  # phase 1
    out = method.forward(model, batch, state)
    terms = method.loss(out, batch, state)
    assert "mod" not in terms and "pdm" in terms
    model_grads = _grads(terms["pdm"], list(model.parameters()))
    assert all(g is None or not g.abs().sum() for g in model_grads)
    dec_grads = _grads(terms["pdm"], list(method.decoupler.parameters()))
    assert all(_nonzero(g) for g in dec_grads)


def test_phase_two_loss_trains_model_and_keeps_decoupler_gradients_pdm_only(tmp_path: Path) -> None:
    _trainer, method, model, batch, state = _setup(tmp_path)
    out = method.forward(model, batch, state)
    terms = method.loss(out, batch, state)
    assert set(terms) == {"ce", "mod", "pdm", "split_ce"}  # concat: split_ce on by default
    enc_params = [p for p in model.encoders.parameters()]
    assert any(_nonzero(g) for g in _grads(terms["mod"], enc_params))
    for term in ("mod", "split_ce"):
        assert all(g is None for g in _grads(terms[term], list(method.decoupler.parameters())))


def test_auxiliary_and_complementary_passes_leave_batchnorm_statistics_untouched(
    tmp_path: Path,
) -> None:
    _trainer, method, model, batch, state = _setup(tmp_path, AIM_LITERAL, **RESNET_TINY)

    def bn_stats():
        return {
            k: v.clone()
            for k, v in model.state_dict().items()
            if "running" in k or "num_batches" in k
        }

    before = bn_stats()
    with torch.no_grad():
        method.dap.propagate(model, "flat")  # Eq. 6 runs in eval mode
    assert all(torch.equal(v, bn_stats()[k]) for k, v in before.items())
    out = method.forward(model, batch, state)
    after_forward = bn_stats()  # the real training forward updates them, as it should
    assert any(not torch.equal(v, after_forward[k]) for k, v in before.items())
    terms = method.loss(out, batch, state)
    assert {"mod", "pdm"} <= set(terms)
    assert all(torch.equal(v, bn_stats()[k]) for k, v in after_forward.items())


def test_dap_training_leaves_model_weights_and_bn_statistics_untouched(tmp_path: Path) -> None:
    _trainer, method, model, _batch, _state = _setup(tmp_path, AIM_LITERAL, **RESNET_TINY)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    protos = {m: p.detach().clone() for m, p in method.dap.prototypes.items()}
    for _ in range(3):
        method.dap.step(model, method.optimizers["dap"])
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert all(p.grad is None for p in model.parameters())
    assert any(not torch.equal(protos[m], method.dap.prototypes[m]) for m in protos)
    assert model.training  # eval mode was only for the prototype pass


def test_class_means_and_prototype_initialisation(tmp_path: Path) -> None:
    trainer, method, model, _batch, _state = _setup(tmp_path, AIM_LITERAL)
    train = trainer.data.train
    for m in model.modalities:
        for k in range(3):
            expected = train.inputs[m][train.labels == k].mean(0)
            assert torch.allclose(method.dap.class_mean(m)[k], expected, atol=1e-5)
        assert torch.equal(method.dap.prototypes[m].detach(), method.dap.class_mean(m))
    assert method.dap.reconstruction_loss().item() == 0.0  # identity decoder at the means


def test_phase_switch_at_start_epoch_and_phase_one_equals_joint_training(tmp_path: Path) -> None:
    aim = run_experiment(
        tiny_config(tmp_path, method={"name": "aim", "options": {**AIM_FAST, "start_epoch": 2}}),
        tmp_path / "aim",
    )
    joint = run_experiment(tiny_config(tmp_path, train={"epochs": 2}), tmp_path / "joint")
    assert [r["method_phase"] for r in aim.history] == [1.0, 1.0, 2.0]
    assert ["train_mod" in r for r in aim.history] == [False, False, True]
    # Phase 1 trains the model with CE alone: the same trajectory as joint training.
    for a, j in zip(aim.history[:2], joint.history, strict=True):
        assert a["val_acc"] == j["val_acc"] and a["train_ce"] == pytest.approx(
            j["train_ce"], rel=1e-6
        )
    assert (tmp_path / "aim" / "aim_orthogonality.jsonl").read_text().count("\n") == 3


class CrashingAIM(AIM):
    def on_epoch_start(self, state) -> None:
        if state.epoch == 2:
            raise KeyboardInterrupt


# pam_every 3: the crash falls inside a cycle (5 steps per epoch), so the resumed run needs the
# cached auxiliary scores of Eq. 12 from the checkpoint
@pytest.mark.parametrize(
    ("prototypes", "pam_every"), [("centroid", 1), ("dap", 1), ("centroid", 3)]
)
def test_resume_mid_run_restores_prototypes_decoupler_and_optimisers_exactly(
    tmp_path: Path, prototypes: str, pam_every: int
) -> None:
    options = {**AIM_FAST, "start_epoch": 1, "prototypes": prototypes, "pam_every": pam_every}
    cfg = tiny_config(tmp_path, method={"name": "aim", "options": options}, train={"epochs": 4})

    def trainer(run: str, cls=AIM) -> Trainer:
        data, model, _ = build_experiment(cfg)
        return Trainer(model, cls(AIMOptions(**options)), data, cfg, tmp_path / run)

    full = trainer("full")
    full_result = full.fit()
    crashed = trainer("crash", CrashingAIM)
    with pytest.raises(KeyboardInterrupt):
        crashed.fit()
    resumed = trainer("crash")
    resumed.resume()
    result = resumed.fit()
    assert without_time(result.history) == without_time(full_result.history)
    # the method is an nn.Module: its decoupler (and DAP) are submodules of its state_dict,
    # the centroids and its own optimisers travel as extra state
    a, b = full.method.state_dict(), resumed.method.state_dict()
    extra_a, extra_b = a.pop("_extra_state"), b.pop("_extra_state")
    assert a.keys() == b.keys()
    assert any(k.startswith("decoupler.") for k in a)
    assert any(k.startswith("dap.") for k in a) == (prototypes == "dap")
    for k, v in a.items():
        assert torch.equal(v, b[k]), k
    if prototypes != "dap":
        for m, per_depth in extra_a["centroids"]["centroids"].items():
            for d, v in per_depth.items():
                assert torch.equal(v, extra_b["centroids"]["centroids"][m][d]), (m, d)
    for name, opt_state in extra_a["optimizers"].items():
        for idx, st in opt_state["state"].items():
            for k, v in st.items():
                assert torch.equal(
                    torch.as_tensor(v),
                    torch.as_tensor(extra_b["optimizers"][name]["state"][idx][k]),
                ), (name, k)


@pytest.mark.parametrize(
    ("options", "field"),
    [({"pam_every": 4}, "pam_every"), ({"mask_hard": True}, "mask_hard")],
)
def test_pam_settings_without_pam_are_refused(options: dict, field: str) -> None:
    """PAM is off by default: ``pam_every`` or ``mask_hard`` alone would change nothing, so
    they are refused with the option to add; with ``pam: true`` they pass."""
    with pytest.raises(ConfigError, match=rf"method.options.{field}: .*add pam: true"):
        AIMOptions(**options).validate("method.options")
    AIMOptions(pam=True, **options).validate("method.options")


def test_pam_only_settings_without_pam_are_named_in_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level("WARNING", logger="mmbalance"):
        AIMOptions(latent_dim=64, recon_loss="sum").validate("method.options")
    [record] = caplog.records
    assert "method.options: latent_dim=64, recon_loss='sum' set, but pam is false" in (
        record.getMessage()
    )
    caplog.clear()
    with caplog.at_level("WARNING", logger="mmbalance"):
        AIMOptions(pam=True, latent_dim=64).validate("method.options")
        AIMOptions(lambda_mod=3.0).validate("method.options")  # not PAM's: nothing to say
    assert not caplog.records


@pytest.mark.parametrize(
    "options",
    [
        {"pam": False},  # w/o PAM
        {"dam": False},  # w/o DAM
        {"scores": "label"},  # AIM-label
        {"only_auxiliary": True},
        {"dap_distance": "pooled", "dap_temperature": 4.0},
        {"dap_distance": "flat"},
        AIM_LITERAL,  # the paper read literally (input-space DAP, tau = 1, random decoupler)
        {"decoupler": "layer"},  # literal reading: fits at this size
    ],
)
def test_ablations_train(tmp_path: Path, options: dict) -> None:
    result = run_experiment(
        tiny_config(
            tmp_path,
            method={"name": "aim", "options": {**AIM_FAST, **options}},
            train={"epochs": 2},
        ),
        tmp_path / "run",
    )
    last = result.history[-1]
    assert last["train_mod"] > 0 and result.test["test_acc"] > 0.5
    if options.get("pam") is False:
        assert "train_pdm" not in last and "method_saux_a_d1" not in last
    if options.get("scores") == "label":
        assert "train_label_heads" in last


def test_literal_layer_decoupler_is_refused_when_over_budget(tmp_path: Path) -> None:
    cfg = tiny_config(
        tmp_path,
        method={
            "name": "aim",
            "options": {**AIM_FAST, "decoupler": "layer", "decoupler_budget": 10_000},
        },
    )
    data, model, method = build_experiment(cfg)
    with pytest.raises(CapabilityError) as err:
        Trainer(model, method, data, cfg, tmp_path / "run")
    msg = str(err.value)
    size = decoupler_size(model, 8, "layer")
    assert f"{size:,}" in msg and "10,000" in msg and "rowwise" in msg


def test_rowwise_decoupler_size_for_full_resnet18_matches_the_spec() -> None:
    class One(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoders = torch.nn.ModuleDict({"v": ResNet18Encoder(3)})

    size = decoupler_size(One(), 512, "rowwise")  # type: ignore[arg-type]

    # aim.md s. 3 counts 36.7 M per modality with L = 512 everywhere; a latent is never wider
    # than W's largest rank, min(rows, fan_in): the 64-, 128- and 256-channel convs get 64, 128
    # and 256, the three 1x1 downsample convs (fan_in 64, 128, 256) their fan_in
    def layer(fan_in: int, latent: int) -> int:  # Phi_lat + Phi_mask + Psi, with biases
        return (fan_in * latent + latent) + (latent * latent + latent) + (latent * fan_in + fan_in)

    convs = [(64, 576)] * 4 + [(128, 576), (128, 1152), (128, 1152), (128, 1152)]
    convs += [(256, 1152), (256, 2304), (256, 2304), (256, 2304)]
    convs += [(512, 2304), (512, 4608), (512, 4608), (512, 4608)]
    downsample = [64, 128, 256]  # fan_in of the 1x1 convs of stages 2-4
    expected = sum(layer(f, min(rows, 512)) for rows, f in convs)
    expected += sum(layer(f, f) for f in downsample)
    assert size == expected and 23.5e6 < size < 24.0e6
    assert decoupler_size(One(), 512, "layer") > 11e9  # the literal reading: ~11.4 B


def test_unequal_depths_are_refused(tmp_path: Path) -> None:
    cfg = tiny_config(
        tmp_path,
        method={"name": "aim", "options": AIM_FAST},
        model={
            "encoder": {"type": "mlp", "hidden": [8, 8]},
            "encoders": {"b": {"type": "mlp", "hidden": [8]}},
        },
    )
    with pytest.raises(CapabilityError, match="same number of blocks"):
        build_experiment(cfg)  # refused before any run folder or trainer exists


@pytest.mark.parametrize(
    ("modalities", "encoder", "fusion", "optim"),
    [
        (
            {"a": [3, 8, 8], "b": [1, 8, 8]},
            {"type": "resnet18", "width": 0.0625, "small_input": True},
            "concat",
            "sgd",
        ),
        (
            {"a": [3, 2, 8, 8], "b": [2, 2, 8, 8]},
            {"type": "resnet18", "width": 0.0625, "small_input": True},
            "film",
            "adam",
        ),
        (
            {"a": [5, 6], "b": [4, 3], "c": [5, 2]},
            {"type": "transformer", "d_model": 8, "layers": 2, "heads": 2},
            "gated",
            "adamw",
        ),
        (
            {"a": [12], "b": [10], "c": [6], "d": [4]},
            {"type": "mlp", "hidden": [8, 8]},
            "sum",
            "adamw",
        ),
    ],
)
def test_aim_runs_on_every_encoder_family_fusion_and_optimiser(
    tmp_path: Path, modalities: dict, encoder: dict, fusion: str, optim: str
) -> None:
    options = {
        "num_samples": 48,
        "num_classes": 3,
        "modalities": {m: {"shape": s, "strength": 2.0} for m, s in modalities.items()},
    }
    result = run_experiment(
        tiny_config(
            tmp_path,
            data={"options": options, "batch_size": 16},
            model={"encoder": encoder, "fusion": fusion},
            method={"name": "aim", "options": AIM_FAST},
            optim={"name": optim, "lr": 1e-3},
            train={"epochs": 2},
        ),
        tmp_path / "run",
    )
    last = result.history[-1]
    depth = len(encoder.get("hidden", [])) or encoder.get("layers", 4)
    for m in modalities:
        for d in range(1, depth + 1):
            assert 0.0 < last[f"method_s_{m}_d{d}"] <= 1.0
            assert 0.0 < last[f"method_saux_{m}_d{d}"] <= 1.0
    assert last["train_mod"] > 0 and all(
        v is None or v == v for v in last.values()
    )  # no NaN anywhere


def test_pdm_batch_fraction_runs_the_complementary_pass_on_a_sub_batch(tmp_path: Path) -> None:
    _t, method, model, batch, state = _setup(
        tmp_path, {"pdm_batch_fraction": 0.25, "aux_batch_fraction": 1.0}
    )
    seen: list[int] = []
    block = model.encoders["a"].blocks[0]
    handle = block.register_forward_pre_hook(lambda mod, args: seen.append(args[0].shape[0]))
    out = method.forward(model, batch, state)  # the whole batch
    method.loss(out, batch, state)  # auxiliary pass (whole batch) + complementary pass (quarter)
    handle.remove()
    b = batch["label"].shape[0]
    assert seen == [b, b, -(-b // 4)]  # ceil(B / 4)


def test_aux_batch_fraction_runs_the_auxiliary_pass_on_a_sub_batch(tmp_path: Path) -> None:
    _t, method, model, batch, state = _setup(
        tmp_path, {"aux_batch_fraction": 0.5, "pdm_batch_fraction": 1.0}
    )
    seen: list[int] = []
    block = model.encoders["a"].blocks[0]
    handle = block.register_forward_pre_hook(lambda mod, args: seen.append(args[0].shape[0]))
    out = method.forward(model, batch, state)
    method.loss(out, batch, state)
    handle.remove()
    b = batch["label"].shape[0]
    assert seen == [b, -(-b // 2), b]  # original, auxiliary on ceil(B / 2), complementary


def test_a_sub_batch_keeps_two_samples_for_batchnorm() -> None:
    from mmbalance.methods.aim.method import _sub_batch

    assert _sub_batch(0.25, 64) == 16 and _sub_batch(0.25, 5) == 2 and _sub_batch(0.5, 3) == 2
    assert _sub_batch(0.25, 1) == 1  # a batch of one stays one


def test_dam_normalize_weights_the_loss_but_logs_eq14_alpha() -> None:
    from mmbalance.methods import functional as AF
    from mmbalance.methods.aim.method import _Step

    step = _Step(depth=2, modalities=2, device=torch.device("cpu"))
    step.s = torch.tensor([[0.2, 0.6], [0.4, 0.5]])
    step.losses = [[torch.tensor(1.0), torch.tensor(2.0)], [torch.tensor(3.0), torch.tensor(1.0)]]
    for normalize in (False, True):
        method = AIM(AIMOptions(pam=False, dam_normalize=normalize))
        loss, weights = method._modulation(step)
        alpha = AF.dam_alpha(step.s)
        assert torch.allclose(weights["alpha"], alpha)  # Eq. 14 as logged, either way
        rho = weights["rho"]
        per_depth = [(rho[d] * torch.stack(step.losses[d])).sum() for d in range(2)]
        used = alpha / alpha.mean() if normalize else alpha
        assert float(loss) == pytest.approx(float(sum(used[d] * per_depth[d] for d in range(2))))


@pytest.mark.parametrize("share", [0.0, 0.25])
def test_ce_to_encoders_scales_the_fused_ce_gradient_into_the_encoders_only(
    tmp_path: Path, share: float
) -> None:
    """Algorithm 1, line 10 read literally (``ce_to_encoders: 0``): in phase 2 the encoders
    get no gradient from the fused cross-entropy; the head gets all of it; logits unchanged."""
    _trainer, method, model, batch, state = _setup(tmp_path, {"start_epoch": 0})
    enc = list(model.encoders.parameters())
    head = list(model.head.parameters())
    ref = method.forward(model, batch, state)
    ce_ref = F.cross_entropy(ref.logits, batch["label"])
    method.options.ce_to_encoders = share
    out = method.forward(model, batch, state)
    ce = F.cross_entropy(out.logits, batch["label"])
    assert torch.equal(out.logits, ref.logits)  # the forward pass is the same
    for got, want in zip(_grads(ce, enc), _grads(ce_ref, enc), strict=True):
        if share == 0.0:
            assert got is None or not got.abs().sum()
        else:
            assert want is not None and got is not None
            assert torch.allclose(got, share * want, atol=1e-7)
    for got, want in zip(_grads(ce, head), _grads(ce_ref, head), strict=True):
        assert torch.allclose(got, want)
    # L_mod still reaches the encoders at full strength
    terms = method.loss(out, batch, state)
    assert any(_nonzero(g) for g in _grads(terms["mod"], enc))
    method.options.start_epoch = 1  # epoch 0 is now phase 1: plain joint training
    out = method.forward(model, batch, state)
    ce = F.cross_entropy(out.logits, batch["label"])
    for got, want in zip(_grads(ce, enc), _grads(ce_ref, enc), strict=True):
        assert torch.allclose(got, want)


def test_split_ce_is_the_per_modality_cross_entropy_of_the_fused_heads_split(
    tmp_path: Path,
) -> None:
    _t, method, model, batch, state = _setup(tmp_path, {"split_ce": 0.5})
    out = method.forward(model, batch, state)
    terms = method.loss(out, batch, state)
    y = batch["label"]
    w, b = model.head.weight, model.head.bias
    fa, fb = out.features["a"], out.features["b"]  # concat order: a, then b
    za = fa @ w[:, : fa.shape[1]].T + b / 2  # head_a(f_a): its columns and half the bias
    zb = fb @ w[:, fa.shape[1] :].T + b / 2
    assert torch.allclose(za + zb, out.logits, atol=1e-6)  # the split sums to the fused logits
    expected = 0.5 * (F.cross_entropy(za, y) + F.cross_entropy(zb, y))
    assert terms["split_ce"].item() == pytest.approx(expected.item(), rel=1e-6)
    encoders = list(model.encoders.parameters())
    assert any(_nonzero(g) for g in _grads(terms["split_ce"], encoders))
    # phase 1 has no such term; a fusion without an exact split is refused
    _t, method, model, batch, state = _setup(tmp_path / "p1", {"split_ce": 0.5, "start_epoch": 3})
    assert "split_ce" not in method.loss(method.forward(model, batch, state), batch, state)
    config = tiny_config(
        tmp_path, method={"name": "aim", "options": {"split_ce": 1.0}}, model={"fusion": "film"}
    )
    with pytest.raises(CapabilityError, match="split_ce needs a fusion"):
        run_experiment(config, tmp_path / "run")
    # left unset, it is 1 where the fusion splits and 0 (no term) where it does not
    for fusion, weight in (("concat", 1.0), ("sum", 1.0), ("film", 0.0), ("gated", 0.0)):
        _t, method, model, batch, state = _setup(
            tmp_path / fusion, {"split_ce": None}, model={"fusion": fusion}
        )
        assert method.split_weight(model) == weight
        terms = method.loss(method.forward(model, batch, state), batch, state)
        assert ("split_ce" in terms) == (weight > 0)


def test_pam_every_runs_pams_passes_on_one_step_in_k(tmp_path: Path) -> None:
    """``pam_every: 3``: the auxiliary and complementary passes (and the decoupler's Adam
    step) on global steps 0 and 3 only; the other steps run the original blocks alone."""
    trainer, method, model, _batch, _state = _setup(
        tmp_path, {"pam_every": 3, "aux_batch_fraction": 1.0, "pdm_batch_fraction": 1.0}
    )
    calls: list[int] = []
    block = model.encoders["a"].blocks[0]
    handle = block.register_forward_pre_hook(lambda mod, args: calls.append(trainer.step))
    adam_steps: list[int] = []
    adam = method.optimizers["decoupler"]
    original_step = adam.step
    adam.step = lambda *a, **k: (adam_steps.append(trainer.step), original_step(*a, **k))[1]
    terms = trainer.run_steps(4)
    handle.remove()
    # original + auxiliary + complementary on PAM's steps, the original block alone otherwise
    assert [calls.count(i) for i in range(4)] == [3, 1, 1, 3]
    assert adam_steps == [0, 3]
    assert ["pdm" in t for t in terms] == [True, False, False, True]


def test_pam_every_weighs_the_auxiliary_terms_by_k_and_keeps_rho_between() -> None:
    """Eq. 11 with ``pam_every`` k, by hand: on a PAM step the auxiliary terms count k times;
    on the others Eq. 12 reads the last PAM step's s~, so the original blocks keep their weight
    rho = exp(-s) / (sum exp(-s) + sum exp(-s~)), and there is no auxiliary term."""
    import math

    from mmbalance.methods.aim.method import _Step

    method = AIM(AIMOptions(pam_every=4, dam=False))
    method.decoupler = torch.nn.Module()  # type: ignore[assignment]  # only "is not None" is read
    method._has_aux = torch.ones(1, 2)  # both blocks trainable: both have an auxiliary block
    step = _Step(depth=1, modalities=2, device=torch.device("cpu"))
    step.s = torch.tensor([[0.2, 0.6]])
    step.s_aux = torch.tensor([[0.1, 0.5]])
    step.losses = [[torch.tensor(1.0), torch.tensor(2.0)]]
    step.losses_aux = [[torch.tensor(3.0), torch.tensor(4.0)]]
    step.aux_of = [[0, 1]]
    z = sum(math.exp(-v) for v in (0.2, 0.6, 0.1, 0.5))
    originals = (math.exp(-0.2) * 1.0 + math.exp(-0.6) * 2.0) / z
    auxiliary = (math.exp(-0.1) * 3.0 + math.exp(-0.5) * 4.0) / z
    method._pam_step = True
    loss, _ = method._modulation(step)
    assert float(loss) == pytest.approx(originals + 4 * auxiliary)
    # the next step: no auxiliary pass, new original scores, s~ from the step above
    plain = _Step(depth=1, modalities=2, device=torch.device("cpu"))
    plain.s = torch.tensor([[0.3, 0.6]])
    plain.losses = [[torch.tensor(1.5), torch.tensor(2.0)]]
    method._pam_step = False
    loss, weights = method._modulation(plain)
    z = sum(math.exp(-v) for v in (0.3, 0.6, 0.1, 0.5))
    assert float(loss) == pytest.approx((math.exp(-0.3) * 1.5 + math.exp(-0.6) * 2.0) / z)
    assert weights["saux"][0].tolist() == pytest.approx([0.1, 0.5])
