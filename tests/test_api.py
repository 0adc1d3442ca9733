"""The Python API's edges."""

from __future__ import annotations

from pathlib import Path

import torch

import mmbalance as mb


def test_train_takes_the_data_section_as_a_keyword(tmp_path: Path) -> None:
    # the splits are positional, so data={...} reaches the config's data section
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(90) % 3
    inputs = {
        "a": torch.randn(90, 6, generator=g) + labels[:, None],
        "b": torch.randn(90, 4, generator=g),
    }
    splits = mb.from_tensors(inputs, labels)
    result = mb.train(splits, "joint", epochs=1, data={"batch_size": 7}, run_dir=tmp_path / "run")
    config = (tmp_path / "run" / "config.yaml").read_text()
    assert "batch_size: 7" in config
    assert 0.0 <= result.test["test_acc"] <= 1.0
