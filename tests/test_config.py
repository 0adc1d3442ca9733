from __future__ import annotations

from pathlib import Path

import pytest

from mmbalance.config import ExperimentConfig, apply_overrides, load_config, parse_override
from mmbalance.errors import ConfigError


def test_override_values_are_parsed_as_yaml() -> None:
    assert parse_override("--optim.lr=0.01") == (["optim", "lr"], 0.01)
    assert parse_override("--data.modalities=[fac,mor]") == (["data", "modalities"], ["fac", "mor"])
    assert parse_override("--optim.grad_clip=null") == (["optim", "grad_clip"], None)
    out = apply_overrides({"optim": {"lr": 1.0}}, ["--optim.lr=0.5", "--method.options.alpha=2"])
    assert out == {"optim": {"lr": 0.5}, "method": {"options": {"alpha": 2}}}


def test_defaults_are_valid_and_round_trip() -> None:
    cfg = ExperimentConfig.from_dict({})  # validated: method and data options resolved
    assert cfg.data.options == {"root": None, "standardize": True}  # mfeat's, written out
    again = ExperimentConfig.from_dict(cfg.to_dict())
    assert again == cfg


@pytest.mark.parametrize(
    ("data", "needles"),
    [
        ({"optim": {"name": "rmsprop"}}, ["optim.name", "'rmsprop'", "'sgd'", "'adamw'"]),
        ({"optim": {"lr": -1}}, ["optim.lr", "-1", "> 0"]),
        ({"optim": {"lr": "fast"}}, ["optim.lr", "'fast'", "number"]),
        ({"train": {"epochs": 2.5}}, ["train.epochs", "2.5", "integer"]),
        ({"train": {"epoch": 3}}, ["config.train", "unknown field(s) epoch", "epochs"]),
        ({"data": {"val_fraction": 1.5}}, ["data.val_fraction", "1.5", "0 <= value < 1"]),
        ({"optim": {"scheduler": "linear"}}, ["optim.scheduler", "'cosine'"]),
        ({"train": {"device": "tpu"}}, ["train.device", "'tpu'", "cuda"]),
        ({"bogus": 1}, ["unknown field(s) bogus"]),
    ],
)
def test_invalid_config_names_field_value_and_allowed(data: dict, needles: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        ExperimentConfig.from_dict(data)
    for needle in needles:
        assert needle in str(err.value)


def test_config_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: [unclosed")
    with pytest.raises(ConfigError, match=r"bad\.yaml"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping at top level"):
        load_config(listy)


def test_switching_method_on_the_command_line_drops_the_files_options(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data: {name: mfeat}\nmethod: {name: aim, options: {start_epoch: 3}}\n")
    from mmbalance.methods.aim.method import AIMOptions
    from mmbalance.methods.unimodal import UnimodalOptions
    from mmbalance.structured import to_dict

    # options are resolved at load: the given ones over the method's defaults
    aim = to_dict(AIMOptions())
    assert load_config(cfg).method.options == {**aim, "start_epoch": 3}
    assert load_config(cfg, ["--method.name=joint"]).method.options == {}
    switched = load_config(cfg, ["--method.name=unimodal", "--method.options.modality=a"])
    assert switched.method.options == {**to_dict(UnimodalOptions()), "modality": "a"}
    same = load_config(cfg, ["--method.name=aim", "--method.options.dam=false"])
    assert same.method.options == {**aim, "start_epoch": 3, "dam": False}


@pytest.mark.parametrize(
    ("text", "value"),
    [("1e-3", 1e-3), ("1E5", 1e5), (".5", 0.5), ("5.", 5.0), ("2e+4", 2e4), ("0.01", 0.01)],
)
def test_every_number_form_is_a_number(tmp_path: Path, text: str, value: float) -> None:
    # YAML 1.1 (PyYAML) reads 1e-3 as a string; a person means a number
    assert parse_override(f"--optim.lr={text}") == (["optim", "lr"], value)
    path = tmp_path / "c.yaml"
    path.write_text(f"data: {{name: mfeat}}\noptim: {{name: sgd, lr: {text}}}\n")
    assert load_config(path).optim.lr == pytest.approx(value)


def test_strings_and_integers_stay_what_they_were() -> None:
    from mmbalance.config import parse_yaml

    assert parse_yaml("e5") == "e5" and parse_yaml("1e3x") == "1e3x" and parse_yaml("10") == 10
    assert parse_yaml("[fac, mor]") == ["fac", "mor"] and parse_yaml("null") is None
    assert parse_yaml("-2e+4") == -2e4 and parse_yaml("[1e-3, 2]") == [1e-3, 2]


def test_an_empty_config_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing yet\n")
    with pytest.raises(ConfigError, match="is empty"):
        load_config(path)
