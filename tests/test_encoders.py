"""Encoders a user brings (issue #24, docs/encoders.md): a module of their own registered from
outside the package, wrapped by module names or read through the protocol; local weights
for every family; frozen encoder parts; every method on them."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from conftest import tiny_config, without_time
from encoder_plugin import TinyAudioCNN
from torch import nn

import mmbalance as mb
from mmbalance.cli import main
from mmbalance.config import ModelConfig
from mmbalance.errors import CapabilityError, ConfigError
from mmbalance.experiment import build_experiment, run_experiment
from mmbalance.methods import METHODS
from mmbalance.models import build_model
from mmbalance.models.wrap import HookedEncoder, ProtocolEncoder, SequentialEncoder
from mmbalance.testing import MethodTester

PLUGIN = Path(__file__).with_name("encoder_plugin.py")
# two image-like modalities (spectrogram-sized), one clearly easier: the toy data for CNNs
IMAGES = {
    "options": {
        "num_samples": 96,
        "num_classes": 3,
        "modalities": {
            "a": {"shape": [1, 16, 16], "strength": 3.0},
            "b": {"shape": [1, 16, 16], "strength": 1.0},
        },
    },
    "batch_size": 16,
}


def _config_file(tmp_path: Path, method: str, **extra: Any) -> Path:
    cfg = {
        "plugins": [str(PLUGIN)],
        "seed": 0,
        "data": {"name": "synthetic", **IMAGES},
        "model": {"encoder": {"type": "tiny_audio_cnn", "stages": 2}},
        "method": {"name": method, "options": {"latent_dim": 8} if method == "aim" else {}},
        "optim": {"name": "sgd", "lr": 0.05},
        "train": {"epochs": 2, "progress": "never", "tensorboard": False},
        **extra,
    }
    path = tmp_path / f"{method}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _rows(run: Path) -> list[dict[str, Any]]:
    import json

    lines = (run / "metrics.jsonl").read_text().splitlines()
    return without_time([json.loads(line) for line in lines if line.strip()])


# -- a module of the user's own, registered from outside, through the CLI ---------------------
@pytest.mark.parametrize("method", ["aim", "ogm_ge", "pmr", "mmpareto"])
def test_a_registered_encoder_trains_through_the_cli_config(tmp_path: Path, method: str) -> None:
    cfg = _config_file(tmp_path, method)
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "run")]) == 0
    written = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    # the family's options and the shared ones, every default written, per modality
    assert written["model"]["encoders"]["a"] == {
        "type": "tiny_audio_cnn",
        "width": 8,
        "stages": 2,
        "pretrained_file": None,
        "strict": True,
        "freeze": False,
    }
    assert written["plugins"] == [str(PLUGIN)]
    # the run folder's config rebuilds it: eval and diagnose read it back
    assert main(["eval", str(tmp_path / "run")]) == 0
    assert main(["diagnose", str(tmp_path / "run")]) == 0


def test_a_registered_encoder_resumes_exactly(tmp_path: Path) -> None:
    cfg = _config_file(tmp_path, "aim", train={"epochs": 3, "progress": "never"})
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "full")]) == 0
    part = ["train", "--config", str(cfg), "--out", str(tmp_path / "part"), "--train.epochs=2"]
    assert main(part) == 0
    assert main(["train", "--resume", str(tmp_path / "part"), "--train.epochs=3"]) == 0
    assert _rows(tmp_path / "part") == _rows(tmp_path / "full")


def test_an_unregistered_type_says_how_to_register_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"model.encoder.type: got 'mine'; expected one of"):
        tiny_config(tmp_path, model={"encoder": {"type": "mine"}})


# -- wrapping a module ------------------------------------------------------------------------
def test_wrapping_by_names_runs_stem_blocks_pool_block_by_block() -> None:
    torch.manual_seed(0)
    net = TinyAudioCNN(1, 4, 2)
    enc = mb.wrap_encoder(
        net, stem=["stem"], blocks=["stages.0", "stages.1"], pool="pool", sample_shape=(1, 16, 16)
    )
    assert isinstance(enc, SequentialEncoder) and enc.runs_block_by_block
    x = torch.randn(3, 1, 16, 16)
    net.eval(), enc.eval()
    inter = enc.forward_intermediates(x)
    h = net.stem(x)
    assert torch.allclose(inter.inputs[0], h)
    assert torch.allclose(inter.outputs[1], net.stages(h))
    assert torch.allclose(inter.pooled, net.pool(net.stages(h)))
    assert enc.out_dim == 16 and enc.depth == 2
    # the parameters are the module's, registered once, under its own names
    assert set(enc.state_dict()) == {f"inner.{k}" for k in net.state_dict()}
    assert [i.channels for i in enc.feature_info((1, 16, 16))] == [8, 16]


class Residual(nn.Module):
    """Blocks with wiring around them that no stem/blocks composition reproduces."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(6, 8)
        self.b1 = nn.Linear(8, 8)
        self.b2 = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        h = h + torch.relu(self.b1(h))
        return self.b2(h)


def test_wrapping_without_a_stem_reads_the_blocks_of_the_modules_own_forward() -> None:
    torch.manual_seed(0)
    net = Residual()
    enc = mb.wrap_encoder(net, blocks=["b1", "b2"], sample_shape=(6,))
    assert isinstance(enc, HookedEncoder) and not enc.runs_block_by_block
    x = torch.randn(4, 6)
    inter = enc.forward_intermediates(x)
    h = net.inp(x)
    assert torch.allclose(inter.inputs[0], h) and torch.allclose(inter.outputs[0], net.b1(h))
    mid = h + torch.relu(net.b1(h))
    assert torch.allclose(inter.inputs[1], mid)
    assert torch.allclose(inter.pooled, net(x)) and torch.allclose(enc(x), net(x))
    # a copy reads its own blocks (the hooks live for one call, nothing points at the original)
    other = copy.deepcopy(enc)
    with torch.no_grad():
        other.inner.b1.weight.zero_()
    assert torch.allclose(
        other.forward_intermediates(x).outputs[0], other.inner.b1.bias.expand(4, 8)
    )


def test_a_protocol_module_is_read_as_it_is() -> None:
    class Mine(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Linear(6, 8)
            self.blocks = nn.ModuleList([nn.Linear(8, 8), nn.Linear(8, 4)])

        def pool(self, h: torch.Tensor) -> torch.Tensor:
            return h * 2

    enc = mb.models.as_block_encoder(Mine(), (6,), "test")
    assert isinstance(enc, ProtocolEncoder) and enc.out_dim == 4 and enc.depth == 2
    x = torch.randn(3, 6)
    m = enc.inner
    assert torch.allclose(enc(x), 2 * m.blocks[1](m.blocks[0](m.stem(x))))


def test_modules_that_cannot_be_read_are_refused_with_what_to_add() -> None:
    with pytest.raises(
        ConfigError,
        match=r"Residual is not a block encoder: it has no stem, blocks, pool.*inp, b1, b2",
    ):
        mb.models.as_block_encoder(Residual(), (6,), "model.encoders.a")
    with pytest.raises(
        ConfigError, match=r"block 'stages.3' is not a submodule .*did you mean .*'stages.1'"
    ):
        mb.wrap_encoder(
            TinyAudioCNN(1, 4, 2), stem=["stem"], blocks=["stages.3"], sample_shape=(1, 8, 8)
        )

    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.b = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(self.b(x))

    with pytest.raises(ConfigError, match=r"block 'b' was called 2 time\(s\)"):
        mb.wrap_encoder(Twice(), blocks=["b"], sample_shape=(4,))


def test_greedy_refuses_an_encoder_it_cannot_run_block_by_block(tmp_path: Path) -> None:
    def build(options: Any, shape: tuple[int, ...]) -> nn.Module:
        return mb.wrap_encoder(Residual(), blocks=["b1", "b2"], sample_shape=shape)

    mb.register_encoder("residual_test", build, replace=True)
    data = {"options": {"modalities": {"a": {"shape": [6], "strength": 3.0}, "b": {"shape": [6]}}}}
    cfg = tiny_config(
        tmp_path, data=data, method={"name": "greedy"}, model={"encoder": {"type": "residual_test"}}
    )
    with pytest.raises(CapabilityError, match="MMTM cannot attach"):
        build_experiment(cfg)
    # AIM runs its auxiliary blocks on the hooked blocks' inputs
    cfg = tiny_config(
        tmp_path,
        data=data,
        method={"name": "aim", "options": {"latent_dim": 4, "start_epoch": 0}},
        model={"encoder": {"type": "residual_test"}},
        train={"epochs": 1},
    )
    result = run_experiment(cfg, tmp_path / "aim")
    assert result.history[-1]["train_mod"] > 0


def test_register_encoder_refuses_what_it_cannot_take() -> None:
    with pytest.raises(ConfigError, match="'resnet18' is a built-in encoder family"):
        mb.register_encoder("resnet18", lambda o, s: nn.Identity())
    with pytest.raises(ConfigError, match=r"option\(s\) \['freeze'\] .* are reserved"):
        from dataclasses import dataclass

        @dataclass
        class Bad:
            freeze: bool = False

        mb.register_encoder("bad_test", lambda o, s: nn.Identity(), Bad)


# -- local weights, every family ------------------------------------------------------------
FAMILIES = {
    "mlp": ({"type": "mlp", "hidden": [8, 8]}, (12,)),
    "transformer": ({"type": "transformer", "layers": 2, "d_model": 8, "heads": 2}, (5, 6)),
    "resnet18": ({"type": "resnet18", "width": 0.0625, "small_input": True}, (1, 16, 16)),
    "registered": ({"type": "tiny_audio_cnn", "width": 4}, (1, 16, 16)),
}


def _encoder(spec: dict[str, Any], shape: tuple[int, ...], seed: int) -> nn.Module:
    torch.manual_seed(seed)
    cfg = ModelConfig(encoder=spec, unimodal_heads=False)
    return build_model(cfg, {"a": shape}, 3).encoders["a"]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_pretrained_file_loads_every_family_and_names_what_does_not_fit(
    tmp_path: Path, family: str, caplog
) -> None:
    spec, shape = FAMILIES[family]
    source = _encoder(spec, shape, seed=1)
    path = tmp_path / "w.pt"
    torch.save(source.state_dict(), path)
    loaded = _encoder({**spec, "pretrained_file": str(path)}, shape, seed=2)
    for k, v in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    # a file of another size: refused, naming the keys, or loaded in part when not strict
    key, value = next((k, v) for k, v in source.state_dict().items() if v.dim() >= 2)
    bad = {**source.state_dict(), key: torch.zeros(value.shape[0] + 1, *value.shape[1:])}
    torch.save(bad, path)
    with pytest.raises(ConfigError, match=rf"does not fit this encoder: shape mismatches \['{key}"):
        _encoder({**spec, "pretrained_file": str(path)}, shape, seed=2)
    with caplog.at_level(logging.INFO, logger="mmbalance"):
        partial = _encoder({**spec, "pretrained_file": str(path), "strict": False}, shape, seed=2)
    assert "not loaded: shape mismatches" in caplog.text
    fresh = _encoder(spec, shape, seed=2)
    assert torch.equal(partial.state_dict()[key], fresh.state_dict()[key])  # left as initialised


def test_a_weights_file_that_is_not_a_state_dict_is_named(tmp_path: Path) -> None:
    spec, shape = FAMILIES["mlp"]
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(ConfigError, match=r"list.pt': expected a state dict .*got list"):
        _encoder({**spec, "pretrained_file": str(tmp_path / "list.pt")}, shape, 0)
    with pytest.raises(ConfigError, match=r"nope\.pt' does not exist"):
        _encoder({**spec, "pretrained_file": str(tmp_path / "nope.pt")}, shape, 0)
    torch.save({"unrelated.weight": torch.zeros(2, 2)}, tmp_path / "other.pt")
    with pytest.raises(
        ConfigError,
        match=r"missing keys \['blocks.0.0.bias'.*unexpected keys \['unrelated.weight'\]",
    ):
        _encoder({**spec, "pretrained_file": str(tmp_path / "other.pt")}, shape, 0)


def test_a_three_channel_first_conv_is_inflated_for_one_channel_input(tmp_path: Path) -> None:
    spec, _ = FAMILIES["registered"]
    rgb = _encoder(spec, (3, 16, 16), seed=1)
    torch.save(rgb.inner.state_dict(), tmp_path / "rgb.pt")  # the user's module's own names
    mono = _encoder({**spec, "pretrained_file": str(tmp_path / "rgb.pt")}, (1, 16, 16), seed=2)
    expected = rgb.inner.stem[0].weight.mean(dim=1, keepdim=True)
    assert torch.allclose(mono.inner.stem[0].weight, expected)


# -- freezing --------------------------------------------------------------------------------
def test_a_frozen_encoder_does_not_train_and_keeps_its_batchnorm_statistics(tmp_path: Path) -> None:
    cfg = tiny_config(
        tmp_path, model={"encoders": {"a": {"type": "mlp", "hidden": [16, 16], "freeze": True}}}
    )
    data, model, method = build_experiment(cfg)
    before = {k: v.clone() for k, v in model.encoders.state_dict().items()}
    trainer = mb.Trainer(model, method, data, cfg, tmp_path / "run")
    optimised = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert not any(id(p) in optimised for p in model.encoders["a"].parameters())
    trainer.fit()
    after = model.encoders.state_dict()
    for k, v in before.items():
        same = torch.equal(after[k], v)
        assert same == k.startswith("a."), k  # a's weights and running stats, not b's


def test_freeze_up_to_a_block_by_depth_or_name(tmp_path: Path) -> None:
    for freeze in (1, "blocks.0"):
        cfg = tiny_config(
            tmp_path,
            model={"encoder": {"type": "mlp", "hidden": [16, 16], "freeze": freeze}},
            train={"epochs": 1},
        )
        _data, model, _method = build_experiment(cfg)
        enc = model.encoders["a"]
        assert [p.requires_grad for p in enc.blocks[0].parameters()] == [False] * 4
        assert all(p.requires_grad for p in enc.blocks[1].parameters())
    with pytest.raises(
        ConfigError, match=r"freeze: no block named 'block.1'.*did you mean 'blocks.1'"
    ):
        build_experiment(
            tiny_config(tmp_path, model={"encoder": {"type": "mlp", "freeze": "block.1"}})
        )
    with pytest.raises(ConfigError, match=r"freeze: got 3; the encoder has blocks 1..2"):
        build_experiment(tiny_config(tmp_path, model={"encoder": {"type": "mlp", "freeze": 3}}))


def test_aim_skips_frozen_blocks_and_refuses_when_all_are(tmp_path: Path) -> None:
    opts = {
        "latent_dim": 8,
        "start_epoch": 0,
        "aux_batch_fraction": 1.0,
        "pdm_batch_fraction": 1.0,
        "pam": True,
    }
    cfg = tiny_config(
        tmp_path,
        method={"name": "aim", "options": opts},
        model={"encoder": {"type": "mlp", "hidden": [16, 16], "freeze": 1}},
        train={"epochs": 1},
    )
    data, model, method = build_experiment(cfg)
    trainer = mb.Trainer(model, method, data, cfg, tmp_path / "r")
    # no decoupler for the frozen first blocks, one for the second
    assert [len(method.decoupler.names[m][0]) for m in model.modalities] == [0, 0]
    assert all(len(method.decoupler.names[m][1]) > 0 for m in model.modalities)
    calls: list[int] = []
    handle = model.encoders["a"].blocks[0].register_forward_pre_hook(lambda m, a: calls.append(1))
    trainer.run_steps(1)
    handle.remove()
    assert len(calls) == 1  # the original pass alone: no auxiliary or complementary pass
    assert method.means.sums["rhoaux_a_d1"] == 0.0 and method.means.sums["rhoaux_a_d2"] > 0
    cfg = tiny_config(
        tmp_path,
        method={"name": "aim", "options": opts},
        model={"encoder": {"type": "mlp", "freeze": True}},
    )
    with pytest.raises(CapabilityError, match="every block of every encoder is frozen"):
        build_experiment(cfg)


def test_diagnosing_and_relearning_leaves_a_frozen_encoder_alone(tmp_path: Path) -> None:
    cfg = tiny_config(
        tmp_path,
        method={"name": "diag_relearn", "options": {"reinit_epoch": 1}},
        model={"encoders": {"a": {"type": "mlp", "hidden": [16, 16], "freeze": True}}},
        train={"epochs": 2},
    )
    data, model, method = build_experiment(cfg)
    before = {k: v.clone() for k, v in model.encoders["a"].state_dict().items()}
    mb.Trainer(model, method, data, cfg, tmp_path / "r").fit()
    assert all(torch.equal(v, model.encoders["a"].state_dict()[k]) for k, v in before.items())


# -- every method on a user's encoder ---------------------------------------------------------
EXAMPLE_OPTIONS: dict[str, dict[str, Any]] = {"unimodal": {"modality": "b"}}


@pytest.mark.parametrize("name", [*METHODS, "aim with PAM"])
def test_every_method_trains_on_a_registered_encoder(tmp_path: Path, name: str) -> None:
    import encoder_plugin  # noqa: F401  (registers tiny_audio_cnn)

    options = dict(EXAMPLE_OPTIONS.get(name, {}))
    if name.startswith("aim"):  # the paper's PAM too: the decoupler on the user's conv blocks
        options.update(latent_dim=8, pam=name == "aim with PAM")
        name = "aim"
    report = MethodTester(
        name,
        options,
        root=tmp_path,
        data=IMAGES,
        model={"encoder": {"type": "tiny_audio_cnn", "width": 4, "stages": 2}},
    ).check()
    assert report.expected <= report.reached


def test_an_encoder_whose_output_the_fusion_cannot_take_is_refused(tmp_path: Path) -> None:
    class Unpooled(mb.BlockEncoder):
        """A subclass that forgets to pool: [N, C, H, W] out."""

        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(1, 4, 3, padding=1)
            self.blocks = nn.ModuleList([nn.Conv2d(4, 4, 3, padding=1)])
            self.out_dim = 4

        def pool(self, h: torch.Tensor, frames: int) -> torch.Tensor:
            return h

    mb.register_encoder("unpooled_test", lambda o, s: Unpooled(), replace=True)
    cfg = tiny_config(tmp_path, data=IMAGES, model={"encoder": {"type": "unpooled_test"}})
    with pytest.raises(ConfigError, match=r"returns \[1, 4, 16, 16\] for one sample; the fusion"):
        build_experiment(cfg)
