"""A new user's bad inputs, round 3 (issue #23; docs/input-edges.md lists every case tried):
each is refused with one line naming the file, field or value, exits non-zero, and leaves no
stub run folder."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from conftest import tiny_config
from cremad_fixture import make_cremad

from mmbalance.cli import main
from mmbalance.config import DataConfig, ExperimentConfig, load_config
from mmbalance.data.media.audio import read_wav, wav_truncation
from mmbalance.data.registry import build_data, from_tensors
from mmbalance.errors import CapabilityError, ConfigError, DataError, RunFolderError
from mmbalance.experiment import run_experiment
from mmbalance.training.checkpoint import remove_stale_temporaries


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    return err[-1] if err else ""


# 1. a config that names no data ------------------------------------------------------------
def test_a_config_without_a_data_section_is_refused(tmp_path: Path, capsys) -> None:
    cfg = _write(tmp_path / "seed.yaml", {"seed": 0})
    with pytest.raises(ConfigError, match=r"seed.yaml' has no 'data' section"):
        load_config(cfg)
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "run")]) == 2
    assert "has no 'data' section" in _error(capsys)
    assert not (tmp_path / "run").exists()
    # the data given on the command line is a data section
    assert load_config(cfg, ["--data.name=mfeat"]).data.name == "mfeat"


# 2. a WAV cut short --------------------------------------------------------------------------
def test_a_wav_cut_short_of_its_header_is_flagged_by_validate_and_the_loader(
    tmp_path: Path, capsys
) -> None:
    root = make_cremad(tmp_path / "c")
    # not the first clip: that one is decoded strictly when the data is built (its shapes)
    name = (root / "train.csv").read_text().splitlines()[2].split(",")[0]
    wav = root / "AudioWAV" / f"{name}.wav"
    wav.write_bytes(wav.read_bytes()[:100])  # header intact, 28 of 19,200 samples left
    assert wav_truncation(wav) == (
        f"audio file {str(wav)!r} is truncated: its header declares 19200 sample frames, the "
        "file holds 28"
    )
    with pytest.raises(DataError, match="is truncated"):
        read_wav(wav)
    cfg = _write(tmp_path / "c.yaml", {"data": {"name": "cremad", "options": {"root": str(root)}}})
    assert main(["validate", str(cfg)]) == 1
    out = capsys.readouterr().out
    assert f"{wav.stem}': audio file '{wav}' is truncated" in out
    # the loader's corrupt-file policy applies: an error naming the file, or a skipped clip
    data = build_data(DataConfig(name="cremad", options={"root": str(root), "image_size": 16}))
    split = next(
        s for s in ("train", "val") if wav.stem in [c.name for c in getattr(data, s).clips]
    )
    dataset = getattr(data, split)
    i = [c.name for c in dataset.clips].index(wav.stem)
    with pytest.raises(DataError, match="is truncated"):
        dataset[i]
    skipping = build_data(
        DataConfig(
            name="cremad", options={"root": str(root), "image_size": 16, "on_corrupt": "skip"}
        )
    )
    assert getattr(skipping, split)[i] is None


def test_validate_flags_audio_far_shorter_than_the_rest(tmp_path: Path, capsys) -> None:
    root = make_cremad(tmp_path / "c")
    wav = sorted((root / "AudioWAV").glob("*.wav"))[3]
    sf.write(wav, np.zeros(160, dtype=np.float32), 16000)  # a whole, valid file of 10 ms
    cfg = _write(tmp_path / "c.yaml", {"data": {"name": "cremad", "options": {"root": str(root)}}})
    assert main(["validate", str(cfg)]) == 1
    out = capsys.readouterr().out
    assert f"audio '{wav}' is far shorter than the rest of the dataset: 0.01 s against a " in out
    assert "median of 1.2 s" in out


# 3. compare: sweeps checked before any run, failures exit non-zero ------------------------
def _grid(tmp_path: Path, **extra) -> Path:
    exp = tiny_config(tmp_path, train={"epochs": 1}).to_dict()
    _write(tmp_path / "exp.yaml", exp)
    return _write(
        tmp_path / "grid.yaml",
        {
            "experiment": str(tmp_path / "exp.yaml"),
            "methods": {"joint": {}, "aim": {"latent_dim": 8}},
            "seeds": [0],
            "output_dir": str(tmp_path / "out"),
            **extra,
        },
    )


def test_a_sweep_naming_no_label_of_the_grid_is_refused(tmp_path: Path, capsys) -> None:
    sweep = {"key": "method.options.start_epoch", "values": [0, 1], "methods": ["aimm"]}
    assert main(["compare", "--config", str(_grid(tmp_path, sweep=sweep))]) == 2
    assert "sweep.methods: ['aimm'] are not labels of the grid; its labels: joint, aim" in _error(
        capsys
    )


def test_a_misspelt_sweep_key_is_refused_before_any_run(tmp_path: Path, capsys) -> None:
    sweep = {"key": "method.options.start_epochh", "values": [0, 1], "methods": ["aim"]}
    assert main(["compare", "--config", str(_grid(tmp_path, sweep=sweep))]) == 2
    err = _error(capsys)
    assert "compare: aim, method.options.start_epochh=0: " in err
    assert "unknown field(s) start_epochh" in err
    assert not (tmp_path / "out" / "runs").exists()  # nothing ran


def test_compare_exits_non_zero_when_a_run_fails_and_names_its_sweep_value(
    tmp_path: Path, capsys
) -> None:
    # lr 1e30 diverges in the first batch: a documented failure of those runs only
    sweep = {"key": "optim.lr", "values": [0.05, 1e30], "methods": ["joint"]}
    grid = _grid(tmp_path, sweep=sweep, methods={"joint": {}})
    assert main(["compare", "--config", str(grid)]) == 1
    out, err = capsys.readouterr()
    assert "joint [optim.lr=0.05] seed 0: " in out
    assert "joint [optim.lr=1e+30] seed 0: FAILED: non-finite loss" in out
    assert "1 run(s) failed" in err
    # the failed run left no stub: rerunning tries it again from scratch
    assert not (tmp_path / "out" / "runs" / "joint" / "lr=1e+30" / "s0").exists()


# 4. NaN and inf in float options ------------------------------------------------------------
@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("--optim.lr=.nan", "optim.lr"),
        ("--optim.lr=.inf", "optim.lr"),
        ("--optim.grad_clip=.nan", "optim.grad_clip"),  # float | None
        ("--method.options.lambda_mod=-.inf", "method.options.lambda_mod"),
    ],
)
def test_non_finite_floats_are_refused_at_config_check(override: str, field: str) -> None:
    from mmbalance.config import apply_overrides

    base = {"data": {"name": "mfeat"}, "method": {"name": "aim"}}
    with pytest.raises(ConfigError, match=rf"{field}: got -?(nan|inf); expected a finite number"):
        ExperimentConfig.from_dict(apply_overrides(base, [override]))


# 5. labels of one class ---------------------------------------------------------------------
def test_labels_of_one_class_are_refused_by_validate_training_and_from_tensors(
    tmp_path: Path, capsys
) -> None:
    root = tmp_path / "one"
    root.mkdir()
    rng = np.random.default_rng(0)
    np.save(root / "a.npy", rng.normal(size=(50, 4)).astype(np.float32))
    np.save(root / "b.npy", rng.normal(size=(50, 3)).astype(np.float32))
    np.save(root / "labels.npy", np.zeros(50, dtype=np.int64))
    cfg = _write(
        tmp_path / "one.yaml", {"data": {"name": "arrays", "options": {"root": str(root)}}}
    )
    assert main(["validate", str(cfg)]) == 1
    assert "1 class (0): a classifier needs at least 2 classes" in capsys.readouterr().out
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "run")]) == 2
    assert f"root {str(root)!r}): 1 class (0)" in _error(capsys)
    assert not (tmp_path / "run").exists()
    with pytest.raises(DataError, match="from_tensors: 1 class"):
        from_tensors({"a": torch.randn(40, 3)}, torch.zeros(40, dtype=torch.long))
    # ten classes declared, one present in training: also nothing to learn
    with pytest.raises(DataError, match="every training sample has label 4"):
        from_tensors(
            {"a": torch.randn(40, 3)},
            torch.full((40,), 4),
            num_classes=10,
            test=({"a": torch.randn(4, 3)}, torch.arange(4)),
        )


# 6. resuming into a read-only folder with a stale temporary ---------------------------------
def test_a_stale_temporary_that_cannot_be_removed_is_a_one_line_error(
    tmp_path: Path, monkeypatch
) -> None:
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / ".last.pt.abc.tmp").write_bytes(b"half")

    def refuse(self: Path, missing_ok: bool = False) -> None:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "unlink", refuse)  # what a read-only folder does to a non-root
    with pytest.raises(RunFolderError, match="could not remove the stale temporary file") as err:
        remove_stale_temporaries(folder)
    assert "Permission denied; make" in str(err.value) and "writable to resume" in str(err.value)


# 7. nothing is left behind by a run that fails before its first epoch -----------------------
def test_aim_on_one_modality_is_refused_before_the_run_folder_exists(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, method={"name": "aim"}, data={"modalities": ["a"]})
    with pytest.raises(CapabilityError, match="needs at least 2 modalities"):
        run_experiment(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_run_failing_in_its_first_batch_leaves_no_stub_and_the_folder_is_reusable(
    tmp_path: Path,
) -> None:
    root = make_cremad(tmp_path / "c")
    cfg = tiny_config(
        tmp_path,
        data={"name": "cremad", "options": {"root": str(root), "image_size": 16}, "batch_size": 6},
        model={"encoder": {"type": "resnet18", "width": 0.0625}},
        train={"epochs": 1},
    )
    # every training clip's frames unreadable (the validation split, whose first clip is
    # decoded when the data is built, stays whole): the first batch fails
    for clip in build_data(cfg.data).train.clips:
        for frame in (root / "Image-01-FPS" / clip.name).iterdir():
            frame.write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="cannot read image"):
        run_experiment(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()
    (tmp_path / "run").mkdir()  # an empty folder given on purpose is reused the same way
    with pytest.raises(DataError):
        run_experiment(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


# 8. --print-config: every default written, every check made ---------------------------------
def test_print_config_writes_nested_defaults_and_checks_what_training_checks(
    tmp_path: Path, capsys
) -> None:
    data = {"name": "synthetic", "options": {"modalities": {"a": {"shape": [8]}, "b": {}}}}
    cfg = _write(tmp_path / "s.yaml", {"data": data})
    assert main(["train", "--config", str(cfg), "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    a = printed["data"]["options"]["modalities"]["a"]
    assert a == {"shape": [8], "strength": 1.0, "noise": 0.5, "resolution": None}
    assert printed["data"]["options"]["modalities"]["b"]["shape"] == [32]
    data["options"]["modalities"]["a"]["zzz"] = 1
    _write(cfg, {"data": data})
    assert main(["train", "--config", str(cfg), "--print-config"]) == 2
    assert (
        "data.options.modalities.a: unknown field(s) zzz; allowed: noise, resolution, shape, "
        "strength"
    ) in _error(capsys)
    # a value training would refuse is refused before printing too
    data["options"]["modalities"]["a"] = {"shape": [0]}
    _write(cfg, {"data": data})
    assert main(["train", "--config", str(cfg), "--print-config"]) == 2
    assert "data.options.modalities.a.shape[0]: got 0" in _error(capsys)


def test_a_run_folders_config_holds_the_synthetic_modalities_defaults(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, train={"epochs": 1})
    run_experiment(cfg, tmp_path / "run")
    written = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert written["data"]["options"]["modalities"]["b"] == {
        "shape": [10],
        "strength": 1.0,
        "noise": 0.5,
        "resolution": None,
    }


# 9. the exact condition named ----------------------------------------------------------------
def test_a_file_where_a_folder_belongs_is_named_as_such(tmp_path: Path, capsys) -> None:
    a_file = tmp_path / "afile"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match=r"data.options.root: '.*afile' is a file, not a folder"):
        build_data(DataConfig(name="arrays", options={"root": str(a_file)}))
    cfg = _write(
        tmp_path / "c.yaml", {"data": {"name": "arrays", "options": {"root": str(a_file)}}}
    )
    assert main(["validate", str(cfg)]) == 1
    assert "is a file, not a folder" in capsys.readouterr().out
    with pytest.raises(ConfigError, match=r"run folder '.*afile' is a file, not a folder"):
        run_experiment(tiny_config(tmp_path), a_file)
    deeper = a_file / "run"
    with pytest.raises(ConfigError, match=r"cannot make run folder .* is a file"):
        run_experiment(tiny_config(tmp_path), deeper)


def test_validate_names_the_file_and_the_value_of_a_stray_label(tmp_path: Path, capsys) -> None:
    root = tmp_path / "d"
    root.mkdir()
    y = np.arange(60) % 3
    y[17] = 7
    np.save(root / "labels.npy", y)
    np.save(root / "a.npy", np.ones((60, 2), dtype=np.float32))
    cfg = _write(tmp_path / "c.yaml", {"data": {"name": "arrays", "options": {"root": str(root)}}})
    assert main(["validate", str(cfg)]) == 1
    out = capsys.readouterr().out
    assert f"'{root}/labels.npy': label 7 at sample 17 makes 8 classes" in out


def test_finite_check_leaves_finite_values_alone() -> None:
    cfg = ExperimentConfig.from_dict({"optim": {"lr": 1e-3, "grad_clip": 5}})
    assert cfg.optim.lr == 1e-3 and cfg.optim.grad_clip == 5.0
    assert math.isfinite(cfg.optim.lr)


def test_the_output_folder_must_be_writable_where_it_is_made(tmp_path: Path, monkeypatch) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    real = os.access
    # what a read-only folder answers a non-root user (root writes anywhere)
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == locked else real(p, mode))
    with pytest.raises(ConfigError, match=r"cannot make run folder .* is not writable"):
        run_experiment(tiny_config(tmp_path), locked / "run")
    assert not (locked / "run").exists()


# 10. ten more, found while trying (docs/input-edges.md) --------------------------------------
def test_an_empty_modality_list_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"data.modalities: got \[\]; expected the modality"):
        ExperimentConfig.from_dict({"data": {"name": "mfeat", "modalities": []}})


def test_a_batch_of_one_with_batchnorm_is_refused_before_the_folder(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, data={"batch_size": 1})  # tiny_config's MLPs use BatchNorm
    with pytest.raises(ConfigError, match=r"data.batch_size: 1 gives 1 sample per process"):
        run_experiment(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()
    # without BatchNorm a batch of one trains
    cfg = tiny_config(
        tmp_path,
        data={"batch_size": 1},
        model={"encoder": {"type": "mlp", "hidden": [8], "norm": "none"}},
        train={"epochs": 1},
    )
    assert run_experiment(cfg, tmp_path / "ok").epochs == 1


@pytest.mark.parametrize("name", ["a.b", ""])
def test_a_modality_name_that_cannot_key_a_module_is_refused(tmp_path: Path, name: str) -> None:
    x = {name: torch.randn(30, 4), "c": torch.randn(30, 3)}
    with pytest.raises(DataError, match="a modality name must be a non-empty string without"):
        from_tensors(x, torch.arange(30) % 3)
    if name:  # the arrays layout: a file a.b.npy is modality 'a.b'
        root = tmp_path / "d"
        root.mkdir()
        np.save(root / "labels.npy", np.arange(30) % 3)
        np.save(root / f"{name}.npy", np.ones((30, 2), dtype=np.float32))
        with pytest.raises(DataError, match=r"modality 'a.b' \(file .*a.b.npy'\): a modality"):
            build_data(DataConfig(name="arrays", options={"root": str(root)}))


def test_a_grid_with_a_seed_twice_is_refused(tmp_path: Path) -> None:
    from mmbalance.reporting.compare import load_grid

    grid = _grid(tmp_path)
    data = yaml.safe_load(grid.read_text())
    _write(grid, {**data, "seeds": [0, 1, 0]})
    with pytest.raises(ConfigError, match=r"seeds: got \[0, 1, 0\]; each seed at most once"):
        load_grid(grid)


def test_grid_labels_sharing_a_run_folder_are_refused(tmp_path: Path) -> None:
    from mmbalance.reporting.compare import load_grid

    grid = _grid(tmp_path)
    data = yaml.safe_load(grid.read_text())
    _write(grid, {**data, "methods": {"joint/x": {"name": "joint"}, "joint x": {"name": "joint"}}})
    with pytest.raises(ConfigError, match="'joint/x' and 'joint x' would share the run folder"):
        load_grid(grid)


def test_resume_names_a_missing_folder_as_missing(tmp_path: Path, capsys) -> None:
    assert main(["train", "--resume", str(tmp_path / "nope")]) == 2
    assert f"run folder '{tmp_path / 'nope'}' does not exist" in _error(capsys)
    (tmp_path / "f").write_text("x")
    assert main(["eval", str(tmp_path / "f")]) == 2
    assert "is a file, not a run folder" in _error(capsys)
