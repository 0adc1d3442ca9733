"""Per-channel input standardisation (``normalize`` of a timm encoder, models/input_norm.py):
the arithmetic against a hand computation, fitting on the training split without disturbing
the random generators, and the option's errors. The timm wiring is in test_timm.py."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from mmbalance.errors import ConfigError
from mmbalance.models.input_norm import InputNorm, check_norm_spec, fit_input_norms


def test_standardises_each_channel_of_images_and_video() -> None:
    norm = InputNorm(2, mean=[1.0, -2.0], std=[2.0, 0.5])
    x = torch.tensor([[[[3.0, 1.0]], [[-2.0, -1.0]]]])  # [1, 2, 1, 2]
    # channel 0: (3-1)/2 = 1, (1-1)/2 = 0; channel 1: (-2+2)/0.5 = 0, (-1+2)/0.5 = 2
    assert torch.equal(norm(x), torch.tensor([[[[1.0, 0.0]], [[0.0, 2.0]]]]))
    video = torch.randn(2, 2, 3, 4, 4)  # [N, C, T, H, W]
    out = norm(video)
    assert torch.allclose(out[:, 1], (video[:, 1] + 2.0) / 0.5)
    one = InputNorm(3, mean=[0.5], std=[0.25])  # one value for every channel
    assert torch.allclose(one(torch.ones(1, 3, 2, 2)), torch.full((1, 3, 2, 2), 2.0))
    assert not dict(norm.state_dict())  # recomputed at build: no checkpoint keys


def test_fit_gives_each_channels_mean_and_std_and_leaves_constant_channels_unscaled() -> None:
    samples = torch.stack([torch.full((2, 3, 3), 7.0)] * 4)  # [4, 2, 3, 3]
    samples[:, 0] = torch.arange(4.0).view(4, 1, 1)  # channel 0: 0, 1, 2, 3 (9 pixels each)
    norm = InputNorm(2, from_data=True)
    norm.fit(samples)
    values = torch.arange(4.0).repeat_interleave(9)
    assert norm.mean.tolist() == pytest.approx([1.5, 7.0])
    assert norm.std.tolist() == pytest.approx([values.std().item(), 1.0])
    out = norm(samples)
    assert out[:, 0].mean().item() == pytest.approx(0.0, abs=1e-6)
    assert out[:, 0].std().item() == pytest.approx(1.0, abs=1e-6)
    assert torch.equal(out[:, 1], torch.zeros(4, 3, 3))


def test_an_unfitted_data_norm_refuses_to_train_and_passes_through_in_eval() -> None:
    norm = InputNorm(1, from_data=True, where="model.encoders.visual")
    x = torch.randn(2, 1, 4, 4)
    norm.eval()
    assert torch.equal(norm(x), x)  # the builder's shape checks run before fitting
    norm.train()
    with pytest.raises(ConfigError, match=r"model.encoders.visual.normalize: data needs"):
        norm(x)


class _RandomFrames(Dataset):
    """Sample i is all ``i``; reading it draws from every generator, as a random training
    frame does."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.read: list[int] = []

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Any]:
        self.read.append(i)
        torch.rand(1), random.random(), np.random.rand()  # a random frame: one draw from each
        return {"inputs": {"v": torch.full((1, 2, 2), float(i))}, "label": 0}


class _Model(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict(
            {"v": nn.Sequential(InputNorm(1, from_data=True)), "w": nn.Sequential(nn.Identity())}
        )


def test_fit_input_norms_reads_evenly_spaced_training_samples_and_restores_the_generators() -> None:
    data = _RandomFrames(10)
    model = _Model()
    torch.manual_seed(3)
    random.seed(3)
    np.random.seed(3)
    fit_input_norms(model, data, samples=4)
    after = (torch.rand(1).item(), random.random(), float(np.random.rand()))
    torch.manual_seed(3)
    random.seed(3)
    np.random.seed(3)
    assert after == (torch.rand(1).item(), random.random(), float(np.random.rand()))
    assert data.read == [0, 3, 6, 9]  # linspace(0, 9, 4)
    norm = model.encoders["v"][0]
    assert norm.mean.item() == pytest.approx(4.5)
    assert norm.std.item() == pytest.approx(torch.tensor([0.0, 3, 6, 9]).repeat_interleave(4).std())


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("imagenet", r"normalize: got 'imagenet'; expected null, 'data'"),
        ({"mean": [0.5]}, r"normalize: got keys \['mean'\]"),
        ({"mean": [0.5, 0.5], "std": [0.2]}, r"normalize.mean: got 2 values; the data has 3"),
        ({"mean": 0.5, "std": 0.0}, r"normalize.std: got \[0.0\]; every std must be > 0"),
        ({"mean": "a", "std": 1}, r"normalize.mean: got 'a'; expected numbers"),
    ],
)
def test_bad_normalize_specs_are_named(spec: Any, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        check_norm_spec(spec, 3, "model.encoder")
    for good in (None, "data", "pretrained", {"mean": [0.1, 0.2, 0.3], "std": 0.5}):
        check_norm_spec(good, 3, "model.encoder")
