"""The Python API's edges."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

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


def _splits() -> mb.DataSplits:
    g = torch.Generator().manual_seed(1)
    labels = torch.arange(120) % 3
    inputs = {
        "a": torch.randn(120, 6, generator=g) + labels[:, None],
        "b": torch.randn(120, 4, generator=g) + 0.3 * labels[:, None],
    }
    return mb.from_tensors(inputs, labels)


def _rows(run: Path) -> list[dict]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "time_epoch"} for r in rows]


def test_a_method_instance_trains_like_its_name_and_options(tmp_path: Path) -> None:
    splits = _splits()
    mb.train(splits, "ogm_ge", {"alpha": 0.7}, epochs=2, run_dir=tmp_path / "by_name")
    method = mb.create_method("ogm_ge", alpha=0.7)
    mb.train(splits, method, epochs=2, run_dir=tmp_path / "by_instance")
    assert _rows(tmp_path / "by_instance") == _rows(tmp_path / "by_name")
    written = yaml.safe_load((tmp_path / "by_instance" / "config.yaml").read_text())
    assert written["method"]["name"] == "ogm_ge" and written["method"]["options"]["alpha"] == 0.7
    with pytest.raises(mb.ConfigError, match="give the options to the Method"):
        mb.train(splits, method, {"alpha": 0.1}, epochs=1, run_dir=tmp_path / "x")


def test_a_built_model_is_the_one_trained(tmp_path: Path) -> None:
    splits = _splits()
    cfg = mb.ExperimentConfig.from_dict({"model": {"encoder": {"type": "mlp", "hidden": [5]}}})
    model = mb.build_model(cfg.model, splits.shapes, splits.num_classes)
    before = [p.detach().clone() for p in model.parameters()]
    mb.train(splits, "joint", model=model, epochs=1, run_dir=tmp_path / "run")
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert meta["parameters"] == sum(p.numel() for p in model.parameters())
    with pytest.raises(mb.ConfigError, match="expected a MultimodalModel"):
        mb.train(splits, "joint", model=torch.nn.Linear(2, 2), epochs=1)


def test_a_method_registered_from_outside_the_package(tmp_path: Path) -> None:
    """A toy method defined here (joint training plus a penalty on the logits' size) is
    registered, then trained by name and run through every hook of the trainer."""
    from dataclasses import dataclass

    import torch.nn.functional as F

    from mmbalance.methods import METHODS

    calls = {"loss": 0, "epoch_end": 0}

    @dataclass
    class ShrinkOptions:
        weight: float = 0.1

    class Shrink(mb.Method):
        name = "shrink_logits_test"
        Options = ShrinkOptions

        def loss(self, output, batch, state):
            calls["loss"] += 1
            return {
                "ce": F.cross_entropy(output.logits, batch["label"]),
                "shrink": self.options.weight * output.logits.pow(2).mean(),
            }

        def on_epoch_end(self, state):
            calls["epoch_end"] += 1
            return {}

    try:
        assert mb.register_method(Shrink) is Shrink
        result = mb.train(
            _splits(), "shrink_logits_test", {"weight": 0.5}, epochs=2, run_dir=tmp_path / "r"
        )
        assert calls["epoch_end"] == 2 and calls["loss"] > 0
        assert "train_shrink" in _rows(tmp_path / "r")[0]
        assert 0.0 <= result.test["test_acc"] <= 1.0
        with pytest.raises(mb.ConfigError, match="taken by Shrink"):
            mb.register_method(type("Other", (mb.Method,), {"name": "shrink_logits_test"}))
        with pytest.raises(mb.ConfigError, match="unknown field"):
            mb.train(_splits(), "shrink_logits_test", {"nope": 1}, epochs=1)
    finally:
        METHODS.pop("shrink_logits_test", None)
    with pytest.raises(mb.ConfigError, match="needs a class attribute 'name'"):
        mb.register_method(type("Nameless", (mb.Method,), {}))


def test_the_python_api_trains_under_torchrun(tmp_path: Path) -> None:
    """Two gloo processes started by torchrun on a script that calls mb.train: both join the
    group (meta.json says world size 2) and the result matches one process."""
    script = tmp_path / "job.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys, torch, mmbalance as mb
            g = torch.Generator().manual_seed(1)
            def part(n):  # whole batches: both ranks get equal shards of every batch
                y = torch.arange(n) % 3
                return {"a": torch.randn(n, 6, generator=g) + y[:, None],
                        "b": torch.randn(n, 4, generator=g)}, y
            x, y = part(128)
            data = mb.from_tensors(x, y, val=part(32), test=part(32))
            mb.train(data, "joint", epochs=2, run_dir=sys.argv[1],
                     model={"encoder": {"type": "mlp", "hidden": [8], "norm": "layer"}},
                     data={"batch_size": 32}, train={"progress": "never"})
            """
        )
    )
    port = str(29500 + os.getpid() % 1000)
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
         f"--master_port={port}", str(script), str(tmp_path / "two")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert two.returncode == 0, two.stderr[-3000:]
    one = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "one")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    assert json.loads((tmp_path / "two" / "meta.json").read_text())["world_size"] == 2
    for r1, r2 in zip(_rows(tmp_path / "one"), _rows(tmp_path / "two"), strict=True):
        for k, v in r1.items():
            if isinstance(v, float):
                assert r2[k] == pytest.approx(v, rel=1e-5, abs=1e-6), k


def test_a_run_on_in_memory_data_is_refused_by_what_rebuilds_data(tmp_path: Path) -> None:
    """eval, resume and diagnose rebuild the data from config.yaml; a run trained on tensors
    must say so, not rebuild the default dataset and fail on its modality names."""
    from mmbalance.errors import ConfigError
    from mmbalance.experiment import load_run_config, resume_experiment
    from mmbalance.reporting.evaluation import evaluate_run

    y = torch.arange(60) % 3
    data = mb.from_tensors({"a": torch.randn(60, 4) + y[:, None], "b": torch.randn(60, 3)}, y)
    run = mb.train(data, "joint", epochs=1, run_dir=tmp_path / "run").run_dir
    for call in (load_run_config, evaluate_run, resume_experiment):
        with pytest.raises(ConfigError, match=r"trained on data given in memory \(dataset 'tens"):
            call(run)
    assert json.loads((Path(run) / "meta.json").read_text())["data_from_config"] is False
