"""Every registered method trains two steps on a toy model: register it, it is tested."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import tiny_config

from mmbalance.errors import CapabilityError, ConfigError
from mmbalance.experiment import build_experiment
from mmbalance.methods import METHODS, create_method, register_method
from mmbalance.methods.base import Method
from mmbalance.models.fusion import FUSIONS
from mmbalance.testing import MethodTester
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
def test_every_method_trains_through_the_real_step_on_every_fusion_it_claims(
    name: str, fusion: str, tmp_path: Path
) -> None:
    """Register it and it is tested: two steps through ``Trainer.run_steps`` (every hook,
    clipping and the unimodal-head term included), every parameter it trains reached, state
    saved and restored whole, the next step after a restore identical."""
    report = MethodTester(
        name,
        EXAMPLE_OPTIONS.get(name, {}),
        root=tmp_path,
        model={"fusion": fusion, "fusion_options": {"primary": "b"}},
    ).check()
    assert len(report.losses) == 2 and report.expected <= report.reached


def test_the_tester_catches_a_method_that_forgets_its_state(tmp_path: Path) -> None:
    """A method whose loss depends on a step counter it does not save: the tester's
    save / restore check must fail on it (and pass once the counter is saved)."""
    import torch.nn.functional as F

    class Forgetful(Method):
        name = "forgetful_test"

        def __init__(self, options=None) -> None:
            super().__init__(options)
            self.steps = 0

        def loss(self, output, batch, state):
            return {"ce": (1 + self.steps) * F.cross_entropy(output.logits, batch["label"])}

        def on_step_end(self, state) -> None:
            self.steps += 1

    class Careful(Forgetful):
        name = "careful_test"

        def get_extra_state(self):
            return {"steps": self.steps}

        def set_extra_state(self, state) -> None:
            self.steps = int(state["steps"])

    try:
        register_method(Forgetful)
        register_method(Careful)
        with pytest.raises(AssertionError, match="differs"):
            MethodTester("forgetful_test", root=tmp_path / "f").check()
        MethodTester("careful_test", root=tmp_path / "c").check()
    finally:
        METHODS.pop("forgetful_test", None)
        METHODS.pop("careful_test", None)


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
    with pytest.raises((CapabilityError, ConfigError), match=needle):
        build_experiment(cfg)  # before any run folder or trainer exists


def test_a_method_registered_from_outside_owns_its_modules(tmp_path: Path) -> None:
    """docs/design.md's ``AuxHeads``: heads assigned in ``build`` reach the model's optimiser
    and the checkpoint without a list written by hand, its counter travels as extra state, and
    the shared tester passes it (save / restore included)."""
    import torch
    import torch.nn.functional as F

    class AuxHeads(Method):
        name = "aux_heads_test"

        def build(self, model) -> None:
            k = model.head.out_features
            self.heads = torch.nn.ModuleDict(
                {m: torch.nn.Linear(e.out_dim, k) for m, e in model.encoders.items()}
            )
            self.steps = 0

        def loss(self, output, batch, state):
            y = batch["label"]
            terms = {"ce": F.cross_entropy(output.logits, y)}
            for m, f in output.features.items():
                terms[f"ce_{m}"] = F.cross_entropy(self.heads[m](f), y)
            return terms

        def on_step_end(self, state) -> None:
            self.steps += 1

        def get_extra_state(self):
            return {"steps": self.steps}

        def set_extra_state(self, state) -> None:
            self.steps = int(state["steps"])

    try:
        register_method(AuxHeads)
        trainer, report = MethodTester("aux_heads_test", root=tmp_path / "t").run(steps=3)
        heads = list(trainer.method.heads.parameters())
        in_optimiser = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
        assert heads and all(id(p) in in_optimiser for p in heads)
        assert {f"heads.{m}.weight" for m in ("a", "b")} <= set(trainer.method.state_dict())
        assert trainer.state_dict()["method"]["_extra_state"] == {"steps": 3}
        assert any(k.startswith("heads.") for k in report.changed_method)
        MethodTester("aux_heads_test", root=tmp_path / "c").check()
    finally:
        METHODS.pop("aux_heads_test", None)
