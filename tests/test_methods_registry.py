"""Every registered method trains two steps on a toy model: register it, it is tested."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import tiny_config

from mmbalance.errors import CapabilityError, ConfigError
from mmbalance.experiment import build_experiment
from mmbalance.methods import METHODS, create_method
from mmbalance.methods.base import Method
from mmbalance.models.fusion import FUSIONS
from mmbalance.training.trainer import Trainer

# Methods whose options have no usable default on the toy data ("a", "b").
EXAMPLE_OPTIONS: dict[str, dict] = {"unimodal": {"modality": "b"}}


def _claimed() -> list[tuple[str, str]]:
    """Every (method, fusion) pair a method claims to support."""
    return [
        (name, fusion)
        for name, cls in METHODS.items()
        for fusion in (cls.supported_fusions or tuple(FUSIONS))
    ]


@pytest.mark.parametrize(("name", "fusion"), _claimed())
def test_every_method_trains_two_steps_on_every_fusion_it_claims(
    name: str, fusion: str, tmp_path: Path
) -> None:
    cfg = tiny_config(
        tmp_path,
        method={"name": name, "options": EXAMPLE_OPTIONS.get(name, {})},
        data={"batch_size": 16},
        model={"fusion": fusion, "fusion_options": {"primary": "b"}},
    )
    data, model, method = build_experiment(cfg)
    trainer = Trainer(model, method, data, cfg, tmp_path / "run")
    batches = iter(trainer._loader(data.train, train=True))
    method.on_fit_start(trainer._state(0, 0, 2))
    method.on_epoch_start(trainer._state(0, 0, 2))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    skip = ("unimodal_heads", *method.unused_model_parts)
    trainable = {n for n, _ in model.named_parameters() if not n.startswith(skip)}
    for step in range(2):
        batch = {k: v for k, v in next(batches).items()}
        touched: set[str] = set()
        for pass_name in method.passes(model):  # one pass, or one per modality (MLA)
            state = trainer._state(0, step, 2, pass_name)
            out = method.forward(model, batch, state)
            terms = method.loss(out, batch, state)
            loss = sum(terms.values())
            assert torch.isfinite(loss)
            trainer.optimizer.zero_grad()
            loss.backward()
            method.on_after_backward(model, state)
            for n, p in model.named_parameters():
                if p.grad is not None:
                    assert torch.isfinite(p.grad).all(), n
                    touched.add(n)
            trainer.optimizer.step()
        assert trainable <= touched, sorted(trainable - touched)
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("encoders.") for k in changed)


def test_registry_names_match_classes_and_unknown_names_are_refused() -> None:
    assert all(cls.name == name and issubclass(cls, Method) for name, cls in METHODS.items())
    with pytest.raises(ConfigError, match=r"method.name: got 'nope'; expected one of joint"):
        create_method("nope")
    with pytest.raises(ConfigError, match="unknown field"):
        create_method("joint", alpha=1.0)


def test_unimodal_builds_a_single_modality_model(tmp_path: Path) -> None:
    cfg = tiny_config(
        tmp_path,
        method={"name": "unimodal", "options": {"modality": "b"}},
        model={"fusion": "film"},
    )
    _, model, _ = build_experiment(cfg)
    assert model.modalities == ["b"]
    assert model.fusion.name == "concat"  # one modality: nothing to fuse
    bad = tiny_config(tmp_path, method={"name": "unimodal", "options": {"modality": "z"}})
    with pytest.raises(ConfigError, match=r"modality: got 'z'; expected one of a, b"):
        build_experiment(bad)
    with pytest.raises(ConfigError, match="modality: required"):
        create_method("unimodal")


def test_capabilities_are_checked_at_construction(tmp_path: Path) -> None:
    class TwoOnly(Method):
        name = "two-only"
        max_modalities = 1
        supported_fusions = ("concat",)

    cfg = tiny_config(tmp_path)
    data, model, _ = build_experiment(cfg)
    with pytest.raises(CapabilityError, match="at most 1 modalities; the model has 2"):
        Trainer(model, TwoOnly(), data, cfg, tmp_path / "run")
    TwoOnly.max_modalities = None
    cfg_sum = tiny_config(tmp_path, model={"fusion": "sum"})
    data, model, _ = build_experiment(cfg_sum)
    with pytest.raises(CapabilityError, match="does not support fusion 'sum'; use one of concat"):
        Trainer(model, TwoOnly(), data, cfg_sum, tmp_path / "run2")


@pytest.mark.parametrize(
    ("name", "sections", "needle"),
    [
        ("greedy", {"model": {"fusion": "film"}}, "does not support fusion 'film'; use one of"),
        (
            "greedy",
            {"data": {"options": {"modalities": {m: {"shape": [4]} for m in "abc"}}}},
            "at most 2 modalities",
        ),
        ("mla", {"model": {"encoders": {"b": {"type": "mlp", "hidden": [16, 8]}}}}, "same width"),
        ("aim", {"model": {"encoders": {"b": {"type": "mlp", "hidden": [16]}}}}, "same number"),
        ("ogm", {"data": {"options": {"modalities": {"a": {"shape": [4]}}}}}, "at least 2"),
    ],
)
def test_unsupported_combinations_are_refused_at_construction(
    name: str, sections: dict, needle: str, tmp_path: Path
) -> None:
    cfg = tiny_config(tmp_path, method={"name": name, "options": {}}, **sections)
    data, model, method = build_experiment(cfg)
    with pytest.raises((CapabilityError, ConfigError), match=needle):
        Trainer(model, method, data, cfg, tmp_path / "run")
