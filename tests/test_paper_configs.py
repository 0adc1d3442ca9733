"""Every full-size paper config is valid as shipped and trains here scaled down on a fixture."""

from __future__ import annotations

from pathlib import Path

import pytest
from cremad_fixture import make_cremad
from layout_fixtures import make_kinetics_sounds, make_mosi, make_ucf101

from mmbalance.cli import main
from mmbalance.config import load_config
from mmbalance.config import shipped_config as builtin_config
from mmbalance.experiment import run_experiment

SCALE_RESNET = [
    "--data.options.image_size=16",
    "--data.batch_size=6",
    "--data.num_workers=0",
    "--data.val_fraction=0.25",
    "--model.encoder.width=0.0625",
]
COMMON = [
    "--method.options.latent_dim=8",
    "--method.options.start_epoch=1",
    "--method.options.dap_steps=1",
    "--train.epochs=2",
    "--train.device=cpu",
    "--train.progress=never",
]

CASES = {
    "cremad_aim_resnet18.yaml": (
        lambda p: make_cremad(p / "CREMA-D"),
        "root",
        SCALE_RESNET,
        {"audio", "visual"},
    ),
    "ks_aim_resnet18.yaml": (
        lambda p: make_kinetics_sounds(p / "KS"),
        "root",
        [*SCALE_RESNET, "--data.options.num_classes=3"],
        {"audio", "visual"},
    ),
    "ucf101_aim_resnet18.yaml": (
        lambda p: make_ucf101(p / "UCF101"),
        "root",
        # the ImageNet weights a user gives are full-width; the scaled test trains from scratch
        [*SCALE_RESNET, "--model.pretrained.rgb=", "--model.pretrained.flow="],
        {"rgb", "flow"},
    ),
    "mosi_aim_transformer.yaml": (
        lambda p: make_mosi(p / "mosi_data.pkl"),
        "path",
        ["--data.batch_size=8", "--model.encoder.d_model=16", "--model.encoder.heads=2"],
        {"audio", "visual", "text"},
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_paper_config_full_size_and_scaled_down(name: str, tmp_path: Path) -> None:
    make, key, scale, modalities = CASES[name]
    location = make(tmp_path)
    full = load_config(builtin_config(name), [f"--data.options.{key}={location}"])
    assert (full.optim.name, full.optim.lr, full.optim.momentum) == ("sgd", 0.001, 0.9)
    assert full.train.device == "cuda" and full.method.options["latent_dim"] == 512
    if "resnet18" in name:
        assert full.model.encoder == {"type": "resnet18", "width": 1.0}
        assert full.data.options["image_size"] == 224
    else:
        assert full.model.encoder["type"] == "transformer" and full.model.encoder["layers"] == 3
    small = load_config(
        builtin_config(name),
        [f"--data.options.{key}={location}", *scale, *COMMON, f"--output_dir={tmp_path}"],
    )
    result = run_experiment(small, tmp_path / "run")
    assert result.epochs == 2 and result.history[-1]["method_phase"] == 2.0
    assert {f"test_acc_{m}" for m in modalities} <= set(result.test)


def test_ucf_config_names_the_missing_imagenet_weights(tmp_path: Path, capsys) -> None:
    root = make_ucf101(tmp_path / "UCF101")
    args = [
        "train",
        "--config",
        str(builtin_config("ucf101_aim_resnet18.yaml")),
        f"--data.options.root={root}",
        "--train.device=cpu",
        f"--output_dir={tmp_path}",
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "pretrained weights file 'resnet18-f37072fd.pth' does not exist" in err


# the method presets: the official code's recipe, read from the files their comments name
PRESETS = {
    "cremad_ogm_ge.yaml": ("ogm_ge", "sgd", 0.001, 70, 64, 100, 1, {"alpha": 0.8}),
    "cremad_pmr.yaml": ("pmr", "sgd", 0.001, 70, 64, 130, 3, {"alpha": 2.0, "momentum": 0.0}),
    "cremad_agm.yaml": ("agm", "sgd", 0.0001, 70, 64, 100, 1, {"modulation_end": 20}),
    "cremad_mla.yaml": ("mla", "sgd", 0.001, 70, 64, 100, 3, {"test_fusion": "fixed"}),
    "cremad_diag_relearn.yaml": ("diag_relearn", "sgd", 0.002, 70, 64, 90, 2, {"lam": 3.0}),
    "cremad_mmpareto.yaml": ("mmpareto", "sgd", 0.002, 30, 64, 50, 2, {"gamma": 1.5}),
    "cremad_inforeg.yaml": ("inforeg", "sgd", 0.002, 30, 64, 50, 3, {"scales": [0.95, 0.1]}),
    "cremad_gblending.yaml": ("gblending", "sgd", 0.001, 20, 32, 30, 1, {"super_epoch": 10}),
    "cremad_greedy.yaml": ("greedy", "sgd", 0.001, 70, 64, 100, 1, {"window": 5}),
    "ks_opm.yaml": ("opm", "adamw", 5e-5, 40, 32, 100, 3, {"q_base": 0.5}),
    "ks_ogm.yaml": ("ogm", "adamw", 5e-5, 40, 32, 100, 3, {"alpha": 0.8, "scores": "split"}),
    "ks_opm_ogm.yaml": ("opm_ogm", "adamw", 5e-5, 40, 32, 100, 3, {"warmup_epochs": 5}),
}


@pytest.mark.parametrize("name", list(PRESETS))
def test_method_presets_carry_the_official_recipe(name: str) -> None:
    from mmbalance.methods import create_method

    method, optim, lr, step, batch, epochs, frames, options = PRESETS[name]
    cfg = load_config(builtin_config(name), ["--data.options.root=/data"])
    assert cfg.method.name == method
    assert (cfg.optim.name, cfg.optim.lr, cfg.data.batch_size, cfg.train.epochs) == (
        optim,
        lr,
        batch,
        epochs,
    )
    assert cfg.optim.scheduler == "none" or cfg.optim.step_size == step
    assert cfg.data.options["frames"] == frames
    assert options.items() <= cfg.method.options.items()
    create_method(cfg.method.name, cfg.method.options)  # the options validate
    text = builtin_config(name).read_text()
    assert "@" in text and "line" in text  # the source commit and line are named


def test_a_config_inherits_its_base_and_another_methods_options_do_not_leak(
    tmp_path: Path,
) -> None:
    from mmbalance.errors import ConfigError

    (tmp_path / "base.yaml").write_text(
        "seed: 3\ndata: {name: mfeat}\noptim: {name: sgd, lr: 0.5, momentum: 0.7}\n"
        "method: {name: aim, options: {start_epoch: 4}}\n"
    )
    (tmp_path / "same.yaml").write_text(
        "base: base.yaml\noptim: {lr: 0.1}\nmethod: {options: {lambda_mod: 2}}\n"
    )
    cfg = load_config(tmp_path / "same.yaml")
    assert (cfg.seed, cfg.optim.lr, cfg.optim.momentum) == (3, 0.1, 0.7)  # merged per key
    from mmbalance.methods.aim.method import AIMOptions
    from mmbalance.methods.ogm import OGMOptions
    from mmbalance.structured import to_dict

    assert cfg.method.options == {**to_dict(AIMOptions()), "start_epoch": 4, "lambda_mod": 2}
    (tmp_path / "other.yaml").write_text("base: base.yaml\nmethod: {name: ogm}\n")
    # OGM's own defaults only: nothing of AIM's start_epoch leaks in
    assert load_config(tmp_path / "other.yaml").method.options == to_dict(OGMOptions())
    (tmp_path / "loop.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(ConfigError, match="includes itself"):
        load_config(tmp_path / "loop.yaml")
    (tmp_path / "missing.yaml").write_text("base: nowhere.yaml\n")
    with pytest.raises(ConfigError, match=r"'nowhere\.yaml' not found"):
        load_config(tmp_path / "missing.yaml")
