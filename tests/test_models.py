from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mmbalance.config import ModelConfig
from mmbalance.errors import ConfigError
from mmbalance.models import (
    MLPConfig,
    MLPEncoder,
    ResNet18Encoder,
    TransformerConfig,
    TransformerEncoder,
    build_model,
)

# torchvision's resnet18 has 11,689,512 parameters, 513,000 of them in the 1000-way fc.
RESNET18_TRUNK_PARAMS = 11_689_512 - 513_000


def test_resnet18_full_size_matches_the_reference_parameter_count() -> None:
    enc = ResNet18Encoder(3, width=1.0)
    assert sum(p.numel() for p in enc.parameters()) == RESNET18_TRUNK_PARAMS
    assert enc.depth == 4 and enc.out_dim == 512
    # 1-channel (audio) stem: the first conv loses 2 * 64 * 7 * 7 weights.
    audio = ResNet18Encoder(1, width=1.0)
    assert sum(p.numel() for p in audio.parameters()) == RESNET18_TRUNK_PARAMS - 2 * 64 * 49


def test_resnet18_full_size_shapes_at_224() -> None:
    enc = ResNet18Encoder(3).eval()
    info = enc.feature_info((3, 224, 224))
    assert [i.shape for i in info] == [(64, 56, 56), (128, 28, 28), (256, 14, 14), (512, 7, 7)]


def test_resnet_video_is_per_frame_then_averaged_over_frames_and_space() -> None:
    torch.manual_seed(0)
    enc = ResNet18Encoder(3, width=0.125, small_input=True).eval()
    video = torch.randn(2, 3, 4, 16, 16)  # [B, C, T, H, W]
    out = enc(video)
    frames = [enc(video[:, :, t]) for t in range(4)]  # each frame alone
    assert torch.allclose(out, torch.stack(frames).mean(0), atol=1e-5)
    inter = enc.forward_intermediates(video)
    assert inter.frames == 4 and inter.outputs[0].shape[0] == 8


@pytest.mark.parametrize(
    ("encoder", "x"),
    [
        (lambda: ResNet18Encoder(2, width=0.125, small_input=True), torch.randn(3, 2, 12, 12)),
        (
            lambda: TransformerEncoder(6, TransformerConfig(d_model=16, layers=3, heads=2)),
            torch.randn(3, 5, 6),
        ),
        (lambda: MLPEncoder(7, MLPConfig(hidden=[8, 9, 10])), torch.randn(3, 7)),
    ],
)
def test_forward_intermediates_chain_blocks_and_match_forward(encoder, x) -> None:
    torch.manual_seed(0)
    enc = encoder().eval()
    inter = enc.forward_intermediates(x)
    assert len(inter.inputs) == len(inter.outputs) == enc.depth
    for d in range(enc.depth - 1):
        assert inter.inputs[d + 1] is inter.outputs[d]
    for d, block in enumerate(enc.blocks):
        assert torch.allclose(block(inter.inputs[d]), inter.outputs[d])
    assert torch.allclose(inter.pooled, enc(x), atol=1e-6)
    info = enc.feature_info(tuple(x.shape[1:]))
    assert [i.shape for i in info] == [tuple(o.shape[1:]) for o in inter.outputs]


def test_feature_info_leaves_batchnorm_statistics_untouched() -> None:
    enc = ResNet18Encoder(3, width=0.125, small_input=True)
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    enc.feature_info((3, 8, 8))
    assert enc.training
    for k, v in enc.state_dict().items():
        assert torch.equal(v, before[k]), k


def _torchvision_layout(enc: ResNet18Encoder) -> dict[str, torch.Tensor]:
    """Rename our keys to torchvision's resnet18 names (what a user's file holds)."""
    out = {}
    for k, v in enc.state_dict().items():
        k = k.replace("stem.0.", "conv1.").replace("stem.1.", "bn1.")
        if k.startswith("blocks."):
            _, stage, rest = k.split(".", 2)
            k = f"layer{int(stage) + 1}.{rest}"
        out[k] = v
    out["fc.weight"] = torch.zeros(1000, 512)
    out["fc.bias"] = torch.zeros(1000)
    return out


def test_pretrained_weights_load_from_a_torchvision_layout_file(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = ResNet18Encoder(3, width=1.0)
    path = tmp_path / "resnet18.pth"
    torch.save(_torchvision_layout(source), path)
    target = ResNet18Encoder(3, width=1.0)
    target.load_pretrained(path)
    for k, v in source.state_dict().items():
        assert torch.equal(target.state_dict()[k], v), k
    # Optical flow (2 channels): the RGB kernel is averaged over channels and repeated.
    flow = ResNet18Encoder(2, width=1.0)
    flow.load_pretrained(path)
    expected = source.stem[0].weight.mean(1, keepdim=True).repeat(1, 2, 1, 1)
    assert torch.allclose(flow.stem[0].weight, expected)


def test_pretrained_weights_of_the_wrong_width_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "resnet18.pth"
    torch.save(_torchvision_layout(ResNet18Encoder(3, width=1.0)), path)
    with pytest.raises(ConfigError, match="does not fit this encoder: shape mismatches"):
        ResNet18Encoder(3, width=0.5).load_pretrained(path)
    with pytest.raises(ConfigError, match="does not exist"):
        ResNet18Encoder(3).load_pretrained(tmp_path / "nope.pth")


def test_auto_encoder_follows_sample_shape() -> None:
    model = build_model(
        ModelConfig(), {"vec": (5,), "seq": (4, 6), "img": (3, 16, 16), "vid": (3, 2, 16, 16)}, 3
    )
    kinds = {m: type(e).__name__ for m, e in model.encoders.items()}
    assert kinds == {
        "vec": "MLPEncoder",
        "seq": "TransformerEncoder",
        "img": "ResNet18Encoder",
        "vid": "ResNet18Encoder",
    }
    out = model(
        {
            "vec": torch.randn(2, 5),
            "seq": torch.randn(2, 4, 6),
            "img": torch.randn(2, 3, 16, 16),
            "vid": torch.randn(2, 3, 2, 16, 16),
        },
        return_intermediates=True,
    )
    assert out.logits.shape == (2, 3)
    assert set(out.unimodal_logits) == set(out.features) == {"vec", "seq", "img", "vid"}
    assert out.intermediates is not None and len(out.intermediates["img"].outputs) == 4


def test_encoder_shape_mismatch_is_refused_with_the_field() -> None:
    cfg = ModelConfig(encoders={"a": {"type": "transformer"}})
    with pytest.raises(ConfigError, match=r"model.encoders.a.*\[T, F\]"):
        build_model(cfg, {"a": (5,)}, 2)
    with pytest.raises(ConfigError, match="no modality named zz"):
        build_model(ModelConfig(encoders={"zz": {}}), {"a": (5,)}, 2)
    with pytest.raises(ConfigError, match=r"model.encoder.type.*'cnn'"):
        build_model(ModelConfig(encoder={"type": "cnn"}), {"a": (5,)}, 2)
