"""timm backbones as encoders (``type: timm``, docs/encoders.md). timm needs a torchvision
built for the installed torch; where it cannot be imported (the CPU-only torch 2.13.0 build
has no matching torchvision) these tests skip, saying why."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from conftest import tiny_config, without_time

from mmbalance.cli import main
from mmbalance.config import ModelConfig
from mmbalance.errors import CapabilityError, ConfigError
from mmbalance.experiment import build_experiment
from mmbalance.methods import METHODS
from mmbalance.models import build_model
from mmbalance.testing import MethodTester

try:
    import timm
except Exception as err:  # ImportError, or torchvision's operators missing for this torch
    timm = None
    REASON = f"timm cannot be imported here ({type(err).__name__}: {err}); docs/encoders.md"
else:
    REASON = ""

pytestmark = pytest.mark.skipif(timm is None, reason=REASON)

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
# tiny configurations of a CNN and a ViT (timm.create_model keyword arguments)
CNN = {"type": "timm", "name": "resnet18", "kwargs": {"channels": [8, 16, 32, 64]}}
VIT = {
    "type": "timm",
    "name": "vit_tiny_patch16_224",
    "depth": 4,
    "kwargs": {"patch_size": 4, "depth": 4, "embed_dim": 16, "num_heads": 2},
}


def _encoder(spec: dict[str, Any], shape: tuple[int, ...], seed: int = 0) -> Any:
    torch.manual_seed(seed)
    return build_model(ModelConfig(encoder=spec, unimodal_heads=False), {"a": shape}, 3).encoders[
        "a"
    ]


def test_timm_blocks_are_the_stages_feature_info_names() -> None:
    cnn = _encoder(CNN, (1, 16, 16))
    assert cnn.block_names == ["layer1", "layer2", "layer3", "layer4"] and cnn.out_dim == 64
    vit = _encoder({**VIT, "depth": 2}, (1, 16, 16))  # 4 layers grouped into 2 blocks
    assert vit.block_names == ["blocks.0+blocks.1", "blocks.2+blocks.3"] and vit.out_dim == 16
    x = torch.randn(3, 1, 16, 16)
    vit.eval()
    inter = vit.forward_intermediates(x)
    net = vit.inner
    tokens = net.norm_pre(net.patch_drop(net._pos_embed(net.patch_embed(x))))
    assert torch.allclose(inter.inputs[0], tokens, atol=1e-6)
    assert torch.allclose(inter.outputs[0], net.blocks[1](net.blocks[0](tokens)), atol=1e-6)
    assert torch.allclose(inter.pooled, net(x), atol=1e-6)  # num_classes=0: the pooled feature


def test_video_runs_frame_by_frame_and_spectrograms_take_one_channel() -> None:
    enc = _encoder(CNN, (3, 2, 16, 16))  # [C, T, H, W]
    enc.eval()
    x = torch.randn(2, 3, 2, 16, 16)
    frames = torch.stack([enc.inner(x[:, :, t]) for t in range(2)], dim=1).mean(dim=1)
    assert torch.allclose(enc(x), frames, atol=1e-6)
    spec = _encoder(VIT, (1, 32, 16))  # a non-square spectrogram: the ViT built for it
    assert spec(torch.randn(2, 1, 32, 16)).shape == (2, 16)


def test_timm_refuses_names_it_does_not_have_and_downloads() -> None:
    with pytest.raises(ConfigError, match=r"no timm model 'resnet181'; close matches: .*resnet18"):
        _encoder({"type": "timm", "name": "resnet181"}, (3, 16, 16))
    with pytest.raises(ConfigError, match="would download weights: give a local file"):
        _encoder({"type": "timm", "name": "resnet18", "kwargs": {"pretrained": True}}, (3, 16, 16))


def test_a_timm_state_dict_loads_as_pretrained_file(tmp_path: Path) -> None:
    source = _encoder(CNN, (3, 16, 16), seed=1)
    torch.save(source.inner.state_dict(), tmp_path / "rn.pth")  # timm's own names
    mono = _encoder({**CNN, "pretrained_file": str(tmp_path / "rn.pth")}, (1, 16, 16), seed=2)
    assert torch.equal(mono.inner.layer3[0].conv1.weight, source.inner.layer3[0].conv1.weight)
    assert torch.allclose(
        mono.inner.conv1.weight, source.inner.conv1.weight.mean(dim=1, keepdim=True), atol=1e-6
    )


def test_normalize_standardises_the_input_before_the_timm_model() -> None:
    given = _encoder({**VIT, "normalize": {"mean": [0.5], "std": [0.25]}}, (1, 16, 16))
    given.eval()
    x = torch.rand(3, 1, 16, 16)
    assert torch.allclose(given(x), given.inner((x - 0.5) / 0.25), atol=1e-6)
    # 'pretrained': the model's own ImageNet statistics; a grey input takes their average
    # (timm reads one channel into an RGB model as R = G = B)
    grey = _encoder({**CNN, "normalize": "pretrained"}, (1, 16, 16))
    cfg = grey.inner.pretrained_cfg
    assert grey.input_norm.mean.tolist() == pytest.approx([sum(cfg["mean"]) / 3])
    assert grey.input_norm.std.tolist() == pytest.approx([sum(cfg["std"]) / 3])
    rgb = _encoder({**CNN, "normalize": "pretrained"}, (3, 16, 16))
    assert rgb.input_norm.mean.tolist() == pytest.approx(list(cfg["mean"]))
    with pytest.raises(ConfigError, match=r"model.encoder.normalize: pretrained: .* 3 channels"):
        _encoder({**CNN, "normalize": "pretrained"}, (2, 16, 16))
    with pytest.raises(ConfigError, match=r"normalize.mean: got 2 values; the data has 1"):
        _encoder({**VIT, "normalize": {"mean": [0.5, 0.5], "std": 1}}, (1, 16, 16))


def test_normalize_data_takes_the_training_splits_statistics() -> None:
    cfg = tiny_config(
        data={"name": "synthetic", **IMAGES}, model={"encoder": {**VIT, "normalize": "data"}}
    )
    data, model, _ = build_experiment(cfg)
    for m in ("a", "b"):
        stacked = torch.stack([data.train[i]["inputs"][m] for i in range(len(data.train))])
        norm = model.encoders[m].input_norm
        assert norm.mean.item() == pytest.approx(stacked.mean().item(), abs=1e-5)
        assert norm.std.item() == pytest.approx(stacked.std().item(), rel=1e-4)


def test_greedy_refuses_timm_encoders(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, data=IMAGES, method={"name": "greedy"}, model={"encoder": CNN})
    with pytest.raises(CapabilityError, match="MMTM cannot attach"):
        build_experiment(cfg)


EXAMPLE_OPTIONS: dict[str, dict[str, Any]] = {
    "unimodal": {"modality": "b"},
    "aim": {"latent_dim": 8},
    # the paper's PAM: the decoupler on a CNN's stages and a ViT's attention and MLP weights
    "aim with PAM": {"latent_dim": 8, "pam": True},
}


@pytest.mark.parametrize("spec", [CNN, VIT], ids=["cnn", "vit"])
@pytest.mark.parametrize("name", [*(m for m in METHODS if m != "greedy"), "aim with PAM"])
def test_every_method_trains_on_timm_encoders(tmp_path: Path, name: str, spec: dict) -> None:
    report = MethodTester(
        name.removesuffix(" with PAM"),
        EXAMPLE_OPTIONS.get(name, {}),
        root=tmp_path,
        data=IMAGES,
        model={"encoder": spec},
    ).check()
    assert report.expected <= report.reached


def test_a_timm_config_trains_and_resumes_exactly(tmp_path: Path) -> None:
    cfg = {
        "data": {"name": "synthetic", **IMAGES},
        "model": {"encoder": {**VIT, "normalize": "data"}},
        "method": {"name": "aim", "options": {"latent_dim": 8, "start_epoch": 1, "pam": True}},
        "optim": {"name": "adamw", "lr": 0.001},
        "train": {"epochs": 3, "progress": "never", "tensorboard": False},
    }
    path = tmp_path / "timm.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "full")]) == 0
    part = ["train", "--config", str(path), "--out", str(tmp_path / "part"), "--train.epochs=2"]
    assert main(part) == 0
    assert main(["train", "--resume", str(tmp_path / "part"), "--train.epochs=3"]) == 0

    def rows(run: str) -> list[dict]:
        lines = (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        return without_time([json.loads(x) for x in lines if x.strip()])

    assert rows("part") == rows("full")
    written = yaml.safe_load((tmp_path / "full" / "config.yaml").read_text())
    assert written["model"]["encoders"]["a"]["name"] == "vit_tiny_patch16_224"
    assert written["model"]["encoders"]["a"]["in_chans"] is None
    assert written["model"]["encoders"]["a"]["normalize"] == "data"
