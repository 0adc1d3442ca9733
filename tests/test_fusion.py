from __future__ import annotations

import pytest
import torch
from torch import nn

from mmbalance.errors import ConfigError
from mmbalance.models.fusion import FUSIONS, FusionConfig, create_fusion


def _features(dims: dict[str, int], batch: int = 4) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {m: torch.randn(batch, d, generator=g) for m, d in dims.items()}


@pytest.mark.parametrize("name", list(FUSIONS))
@pytest.mark.parametrize("m", [2, 3, 4])
def test_every_fusion_handles_two_to_m_modalities(name: str, m: int) -> None:
    dims = {f"m{i}": 3 + i for i in range(m)}
    fusion = create_fusion(name, dims, FusionConfig(hidden=7))
    feats = {m: f.requires_grad_() for m, f in _features(dims).items()}
    fused = fusion(feats)
    assert fused.shape == (4, fusion.out_dim)
    fused.square().sum().backward()  # every modality and parameter reaches the output
    for f in feats.values():
        assert f.grad is not None and f.grad.abs().sum() > 0
    for p in fusion.parameters():
        assert p.grad is not None


@pytest.mark.parametrize("name", ["film", "gated"])
def test_film_and_gated_refuse_one_modality(name: str) -> None:
    with pytest.raises(ConfigError, match="at least 2 modalities"):
        create_fusion(name, {"a": 3})


@pytest.mark.parametrize("name", ["concat", "sum"])
def test_split_logits_sum_to_the_fused_logits(name: str) -> None:
    dims = {"a": 3, "b": 5, "c": 2}
    fusion = create_fusion(name, dims, FusionConfig(hidden=6))
    head = nn.Linear(fusion.out_dim, 4)
    feats = _features(dims)
    split = fusion.split(feats, head)
    assert split is not None
    assert torch.allclose(sum(split.values()), head(fusion(feats)), atol=1e-6)


def test_concat_split_is_the_fields_weight_slice_plus_bias_over_m() -> None:
    dims = {"a": 2, "b": 1}
    fusion = create_fusion("concat", dims)
    head = nn.Linear(3, 2)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]))
        head.bias.copy_(torch.tensor([10.0, 20.0]))
    feats = {"a": torch.tensor([[1.0, 1.0]]), "b": torch.tensor([[2.0]])}
    split = fusion.split(feats, head)
    # a: [1+2, 4+5] + bias/2 = [8, 19]; b: [3*2, 6*2] + bias/2 = [11, 22]
    assert torch.equal(split["a"], torch.tensor([[8.0, 19.0]]))
    assert torch.equal(split["b"], torch.tensor([[11.0, 22.0]]))


def test_film_against_hand_computation() -> None:
    fusion = create_fusion("film", {"x": 2, "y": 1})  # x modulated by y
    with torch.no_grad():
        fusion.film.weight.copy_(torch.tensor([[1.0], [2.0], [3.0], [4.0]]))
        fusion.film.bias.copy_(torch.tensor([0.5, 0.0, -1.0, 1.0]))
    feats = {"x": torch.tensor([[2.0, 3.0]]), "y": torch.tensor([[1.0]])}
    # film(y) = [1.5, 2, 2, 5] -> gamma [1.5, 2], beta [2, 5]; out = [1.5*2+2, 2*3+5]
    assert torch.equal(fusion(feats), torch.tensor([[5.0, 11.0]]))


def test_film_primary_option_picks_the_modulated_modality() -> None:
    fusion = create_fusion("film", {"x": 2, "y": 3, "z": 1}, FusionConfig(primary="y"))
    assert fusion.primary == "y" and fusion.others == ["x", "z"] and fusion.out_dim == 3
    with pytest.raises(ConfigError, match="primary"):
        create_fusion("film", {"x": 2, "y": 3}, FusionConfig(primary="w"))


def test_gated_against_hand_computation() -> None:
    fusion = create_fusion("gated", {"g": 1, "u": 1, "v": 1}, FusionConfig(hidden=1))
    with torch.no_grad():
        for m, (w, b) in {"g": (0.0, 0.0), "u": (2.0, 1.0), "v": (3.0, 0.0)}.items():
            fusion.proj[m].weight.fill_(w)
            fusion.proj[m].bias.fill_(b)
    feats = {"g": torch.tensor([[5.0]]), "u": torch.tensor([[1.0]]), "v": torch.tensor([[2.0]])}
    # gate = sigmoid(0) = 0.5; rest = (2*1+1) + (3*2) = 9 -> 4.5
    assert torch.equal(fusion(feats), torch.tensor([[4.5]]))
