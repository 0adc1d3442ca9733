"""Kinetics-Sounds in the field's layout: lists, stored spectrograms, frames, classes."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from layout_fixtures import make_kinetics_sounds

from mmbalance.config import DataConfig
from mmbalance.data import build_data
from mmbalance.data.datasets.kinetics_sounds import shipped_classes
from mmbalance.data.media.vision import IMAGENET_MEAN, IMAGENET_STD
from mmbalance.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def ks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_kinetics_sounds(tmp_path_factory.mktemp("ks") / "KS")


def _cfg(root: Path, **options) -> DataConfig:
    opts = {"root": str(root), "image_size": 16, "num_classes": 3, **options}
    return DataConfig(name="kinetics_sounds", options=opts, val_fraction=0.25)


def _find(data, name: str) -> tuple[str, int]:
    for split in ("train", "val", "test"):
        for i, clip in enumerate(getattr(data, split).clips):
            if clip.name == name:
                return split, i
    raise KeyError(name)


def test_loads_lists_spectrograms_and_frames(ks: Path) -> None:
    data = build_data(_cfg(ks))
    assert data.shapes == {"audio": (1, 40, 30), "visual": (3, 3, 16, 16)}
    assert data.info["sizes"] == {"train": 9, "val": 3, "test": 6}
    # labels are the last field of each line, with or without a class string before it
    for c in data.test.clips:
        assert c.label == int(c.name.split("_")[1])
    spec = np.load(ks / "audio" / f"{data.test.clips[0].name}.npy")
    assert torch.equal(data.test[0]["inputs"]["audio"][0], torch.from_numpy(spec))
    # Evaluation picks the middle frame of each of 3 segments of the 10 frames, in natural
    # order (frame_000010 is the last frame, not the second): frames 2, 5, 8. The fixture
    # writes 20 * t into the red channel of frame t.
    red = data.test[0]["inputs"]["visual"][0].mean(dim=(1, 2)) * IMAGENET_STD[0, 0, 0]
    red = red + IMAGENET_MEAN[0, 0, 0]
    assert torch.allclose(red * 255, torch.tensor([40.0, 100.0, 160.0]), atol=6)


def test_pickled_spectrograms_and_wav_recipes(tmp_path: Path) -> None:
    root = make_kinetics_sounds(tmp_path / "pkl", audio="pkl")
    data = build_data(_cfg(root))
    assert data.shapes["audio"] == (1, 40, 30)
    victim = sorted((root / "audio").iterdir())[0]
    victim.write_bytes(pickle.dumps(print))  # a pickle naming a callable is refused
    split, index = _find(data, victim.stem)
    with pytest.raises(DataError, match=r"asks to load builtins\.print"):
        getattr(data, split).load(index)
    wav = make_kinetics_sounds(tmp_path / "wav", audio="wav")
    data = build_data(_cfg(wav, audio="fbank", cache_dir=str(tmp_path / "cache")))
    assert data.shapes["audio"] == (1, 1024, 128)


def test_class_count_confusion_is_an_error_not_a_silent_mixup(ks: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"label '2' .* not one of the 2 classes .* 31, 32 or 34"):
        build_data(_cfg(ks, num_classes=2))
    assert len(shipped_classes()) == 32 and shipped_classes()[8] == "playing bagpipes"
    names = tmp_path / "names.txt"
    names.write_text("alpha\nbeta\ngamma\n")
    data = build_data(_cfg(ks, class_names_file=str(names)))
    assert data.class_names == ["alpha", "beta", "gamma"]
    assert build_data(_cfg(ks)).class_names == ["0", "1", "2"]
    names.write_text("alpha\nbeta\n")
    with pytest.raises(ConfigError, match=r"has 2 names; num_classes is 3"):
        build_data(_cfg(ks, class_names_file=str(names)))


def test_per_split_folders_and_missing_files(tmp_path: Path) -> None:
    root = make_kinetics_sounds(tmp_path / "split")
    for split in ("train", "test"):
        names = [line.split()[0] for line in (root / f"{split}.txt").read_text().splitlines()]
        for kind in ("audio", "visual"):
            dst = root / f"{split}_{kind}"
            dst.mkdir()
            for n in names:
                src = root / kind / (f"{n}.npy" if kind == "audio" else n)
                src.rename(dst / src.name)
    data = build_data(_cfg(root, audio_dir="{split}_audio", visual_dir="{split}_visual"))
    assert data.info["sizes"]["test"] == 6
    victim = next((root / "test_audio").iterdir())
    victim.unlink()
    with pytest.raises(DataError, match=rf"{victim.stem}.*{victim.name}' is missing.*skip_missing"):
        build_data(_cfg(root, audio_dir="{split}_audio", visual_dir="{split}_visual"))
    data = build_data(
        _cfg(root, audio_dir="{split}_audio", visual_dir="{split}_visual", skip_missing=True)
    )
    assert data.info["sizes"]["test"] == 5 and victim.stem in data.info["skipped"][0]


def test_validate_reports_every_planted_problem(tmp_path: Path, capsys) -> None:
    import yaml

    from mmbalance.cli import main

    root = make_kinetics_sounds(tmp_path / "v")
    cfg = tmp_path / "cfg.yaml"
    opts = {"root": str(root), "num_classes": 3}
    cfg.write_text(yaml.safe_dump({"data": {"name": "kinetics_sounds", "options": opts}}))
    assert main(["validate", str(cfg)]) == 0
    assert "test: 6 samples (0 2, 1 2, 2 2)" in capsys.readouterr().out
    specs = sorted((root / "audio").iterdir())
    specs[0].unlink()
    specs[1].write_bytes(b"\x93NUMPY garbage")
    with (root / "train.txt").open("a") as fh:
        fh.write("ks999_extra 7\n")
    assert main(["validate", str(cfg)]) == 1
    out = capsys.readouterr().out
    assert f"audio '{specs[0]}' is missing" in out
    assert f"unreadable file '{specs[1]}'" in out
    assert "train.txt' line 13: label '7' for 'ks999_extra' is not one of the 3 classes" in out


def test_ogm_ge_style_csv_lists_with_a_stat_file_and_pickles(tmp_path: Path) -> None:
    """OGM-GE's KS: ``my_train.txt`` rows ``name,class name``, ``stat.txt`` of class names,
    pickled spectrograms, frames under ``Image-01-FPS/<name>/``."""
    root = make_kinetics_sounds(tmp_path / "ogm", audio="pkl")
    names = ["playing drums", "playing piano", "singing"]
    (root / "stat.txt").write_text("".join(f"{n},{100 + i}\n" for i, n in enumerate(names)))
    for split in ("train", "test"):
        rows = [line.split() for line in (root / f"{split}.txt").read_text().splitlines()]
        lines = [f"{r[0]},{names[int(r[-1])]}" for r in rows]
        (root / f"my_{split}.txt").write_text("\n".join(lines) + "\n")
    (root / "visual").rename(root / "Image-01-FPS")
    data = build_data(
        _cfg(
            root,
            train_list="my_train.txt",
            test_list="my_test.txt",
            class_names_file="stat.txt",
            visual_dir="Image-01-FPS",
        )
    )
    assert data.class_names == names
    for c in data.test.clips:
        assert c.label == int(c.name.split("_")[1])


def test_ogm_ge_my_train_txt_rows(tmp_path: Path) -> None:
    """The rows OGM-GE ships in data/KineticSound/my_train.txt: ``name,10,label``."""
    root = make_kinetics_sounds(tmp_path / "ks")
    for split in ("train", "test"):
        rows = [line.split() for line in (root / f"{split}.txt").read_text().splitlines()]
        (root / f"my_{split}.txt").write_text("".join(f"{r[0]},10,{r[-1]}\n" for r in rows))
    data = build_data(_cfg(root, train_list="my_train.txt", test_list="my_test.txt"))
    assert data.info["sizes"]["test"] == 6
    for c in data.test.clips:
        assert c.label == int(c.name.split("_")[1])
