from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_config
from cremad_fixture import make_cremad

from mmbalance.config import DataConfig
from mmbalance.data import build_data
from mmbalance.data.media.audio import FbankRecipe, StftRecipe, kaldi_fbank, mel_banks
from mmbalance.errors import DataError
from mmbalance.experiment import run_experiment


@pytest.fixture(scope="module")
def cremad(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_cremad(tmp_path_factory.mktemp("cremad") / "CREMA-D")


def _cfg(root: Path, **options) -> DataConfig:
    return DataConfig(
        name="cremad", options={"root": str(root), "image_size": 32, **options}, val_fraction=0.25
    )


def test_loads_the_layout_with_the_fields_shapes(cremad: Path) -> None:
    data = build_data(_cfg(cremad, frames=2))
    assert data.shapes == {"audio": (1, 257, 188), "visual": (3, 2, 32, 32)}
    assert data.num_classes == 6 and data.class_names[0] == "NEU"
    assert data.info["sizes"] == {"train": 18, "val": 6, "test": 12}
    assert data.info["class_counts_train"] == [3] * 6
    names = {c.name for c in data.train.clips} | {c.name for c in data.val.clips}
    assert not names & {c.name for c in data.test.clips}
    # Labels come from the csv names: clip "..._HAP_XX" is class 1.
    for c in data.test.clips:
        assert c.label == ["NEU", "HAP", "SAD", "FEA", "DIS", "ANG"].index(c.name.split("_")[2])
    # Frames are listed sorted, never in os.listdir order.
    frames = data.test.clips[0].files["visual"]
    assert list(frames) == sorted(frames)


def test_evaluation_is_deterministic_and_training_is_augmented(cremad: Path) -> None:
    data = build_data(_cfg(cremad, frames=3))
    a, b = data.test[0], data.test[0]
    assert torch.equal(a["inputs"]["visual"], b["inputs"]["visual"])
    assert torch.equal(a["inputs"]["audio"], b["inputs"]["audio"])
    torch.manual_seed(0)
    t1 = data.train[0]["inputs"]["visual"]
    torch.manual_seed(0)
    t2 = data.train[0]["inputs"]["visual"]
    t3 = data.train[0]["inputs"]["visual"]
    assert torch.equal(t1, t2) and not torch.equal(t1, t3)  # seeded random crops / flips
    # ImageNet normalisation: a mid-grey pixel maps near (0.5 - mean) / std.
    assert data.test[0]["inputs"]["visual"].abs().max() < 3.0


def test_stft_recipe_against_a_hand_computed_frame() -> None:
    rate = 22050
    t = np.arange(rate) / rate
    wave = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    spec = StftRecipe()(wave, rate)
    assert spec.shape == (1, 257, 188)
    tiled = np.clip(np.tile(wave, 3)[: 3 * rate], -1, 1)
    padded = np.pad(tiled, 256)  # center=True, zero padding
    frame = padded[353 * 10 : 353 * 10 + 512] * np.hanning(513)[:-1]  # periodic Hann
    magnitude = np.abs(np.fft.rfft(frame))
    got = np.exp(spec[0, :, 10].numpy().astype(np.float64)) - 1e-7
    # float32 STFT vs float64 by hand: equal up to 1e-5 of the peak magnitude
    assert np.allclose(got, magnitude, atol=1e-5 * magnitude.max())
    assert int(spec[0, :, 10].argmax()) == round(1000 * 512 / rate)  # the tone's bin


def test_fbank_recipe_shape_normalisation_and_mel_filters() -> None:
    banks = mel_banks(4, 512, 16000)
    assert banks.shape == (4, 256) and float(banks.min()) == 0.0 and float(banks.max()) <= 1.0
    # each triangle peaks once and the filters tile the mel axis in order
    peaks = banks.argmax(dim=1)
    assert torch.all(peaks[1:] > peaks[:-1])
    rate = 16000
    t = np.arange(2 * rate) / rate
    tone = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    fb = kaldi_fbank(torch.from_numpy(tone), rate)
    assert fb.shape == (1 + (2 * rate - 400) // 160, 128)  # 25 ms frames, 10 ms shift
    centre = mel_banks(128, 512, rate)[:, round(1000 * 512 / rate)].argmax()
    assert abs(int(fb.mean(0).argmax()) - int(centre)) <= 1
    out = FbankRecipe()(tone, rate)
    assert out.shape == (1, 1024, 128)
    pad_value = torch.tensor((0 + 4.503877) / (2 * 5.141276))  # zero padding, normalised
    assert torch.allclose(out[0, fb.shape[0] :], pad_value.expand(1024 - fb.shape[0], 128))


def test_missing_and_bad_entries_are_reported_with_their_files(
    cremad: Path, tmp_path: Path
) -> None:
    root = make_cremad(tmp_path / "c")
    victim = (root / "test.csv").read_text().splitlines()[0].split(",")[0]
    (root / "AudioWAV" / f"{victim}.wav").unlink()
    with pytest.raises(DataError, match=rf"{victim}.*AudioWAV/{victim}\.wav' is missing"):
        build_data(_cfg(root))
    data = build_data(_cfg(root, skip_missing=True))
    assert data.info["sizes"]["test"] == 11 and victim in data.info["skipped"][0]
    with (root / "train.csv").open("a") as fh:
        fh.write("1999_XXX_HAPPY_XX,HAPPY\n")
    with pytest.raises(DataError, match=r"train\.csv' line 25: unknown label 'HAPPY'"):
        build_data(_cfg(root, skip_missing=True))
    (tmp_path / "broken.wav").write_bytes(b"RIFF....not audio")
    from mmbalance.data.media.audio import read_wav

    with pytest.raises(DataError, match=r"broken\.wav"):
        read_wav(tmp_path / "broken.wav")


def test_precomputed_pt_audio(cremad: Path, tmp_path: Path) -> None:
    root = make_cremad(tmp_path / "pt")
    (root / "audio_pt").mkdir()
    for line in (root / "train.csv").read_text().splitlines() + (
        root / "test.csv"
    ).read_text().splitlines():
        name = line.split(",")[0]
        torch.save(torch.full((1024, 128), 0.5), root / "audio_pt" / f"{name}.pt")
    data = build_data(_cfg(root, audio="pt"))
    assert data.shapes["audio"] == (1, 1024, 128)


def test_aim_trains_on_the_cremad_layout(cremad: Path, tmp_path: Path) -> None:
    cfg = tiny_config(
        tmp_path,
        data={
            "name": "cremad",
            "options": {"root": str(cremad), "image_size": 32},
            "batch_size": 6,
            "val_fraction": 0.25,
        },
        model={"encoder": {"type": "resnet18", "width": 0.0625}},
        method={"name": "aim", "options": {"latent_dim": 8, "dap_steps": 2, "start_epoch": 1}},
        train={"epochs": 2},
    )
    result = run_experiment(cfg, tmp_path / "run")
    last = result.history[-1]
    assert last["method_phase"] == 2.0 and last["train_mod"] > 0
    assert {"test_acc_audio", "test_acc_visual"} <= set(result.test)


def test_full_size_paper_config_is_valid_and_runs_scaled_down(cremad: Path, tmp_path: Path) -> None:
    from mmbalance.config import load_config
    from mmbalance.config import shipped_config as builtin_config

    full = load_config(
        builtin_config("cremad_aim_resnet18.yaml"), [f"--data.options.root={cremad}"]
    )
    assert full.model.encoder == {"type": "resnet18", "width": 1.0}
    assert (full.optim.name, full.optim.lr, full.optim.step_size, full.train.epochs) == (
        "sgd",
        0.001,
        70,
        100,
    )
    small = load_config(
        builtin_config("cremad_aim_resnet18.yaml"),
        [
            f"--data.options.root={cremad}",
            "--data.options.image_size=32",
            "--data.batch_size=8",
            "--data.num_workers=0",
            "--data.val_fraction=0.25",
            "--model.encoder.width=0.0625",
            "--method.options.latent_dim=8",
            "--method.options.start_epoch=0",
            "--method.options.dap_steps=1",
            "--train.epochs=1",
            "--train.device=cpu",
            f"--output_dir={tmp_path}",
            "--train.progress=never",
        ],
    )
    result = run_experiment(small, tmp_path / "run")
    assert result.epochs == 1 and "test_acc_visual" in result.test


def test_validate_lists_every_problem_of_a_dataset_folder(tmp_path: Path, capsys) -> None:
    import yaml

    from mmbalance.cli import main

    root = make_cremad(tmp_path / "v")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"data": {"name": "cremad", "options": {"root": str(root)}}}))
    assert main(["validate", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "train: 24 samples (NEU 4, HAP 4" in out and "no problems found" in out
    lines = (root / "test.csv").read_text().splitlines()
    first, second = lines[0].split(",")[0], lines[1].split(",")[0]
    (root / "AudioWAV" / f"{first}.wav").write_bytes(b"")  # empty
    frame = sorted((root / "Image-01-FPS" / second).iterdir())[0]
    frame.write_bytes(b"not a jpeg")  # corrupt
    with (root / "train.csv").open("a") as fh:
        fh.write(f"{first},NEU\n")  # in both splits
    assert main(["validate", str(cfg)]) == 1
    out = capsys.readouterr().out
    assert f"test clip '{first}': empty file '{root}/AudioWAV/{first}.wav'" in out
    assert f"unreadable frame '{frame}'" in out
    assert f"clip '{first}' is in both train and test" in out
    assert main(["validate", str(cfg), "--data.options.root=/nonexistent"]) == 1
    assert "does not exist" in capsys.readouterr().out


def test_validate_other_datasets_reports_class_counts(tmp_path: Path, capsys) -> None:
    import yaml

    from mmbalance.cli import main

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"data": {"name": "mfeat", "modalities": ["fac", "mor"]}}))
    assert main(["validate", str(cfg)]) == 0
    assert "test: 400 samples (0 40, 1 40" in capsys.readouterr().out
    bad = tmp_path / "arrays"
    bad.mkdir()
    np.save(bad / "a.npy", np.zeros((5, 2)))
    np.save(bad / "labels.npy", np.zeros(4, int))
    cfg.write_text(yaml.safe_dump({"data": {"name": "arrays", "options": {"root": str(bad)}}}))
    assert main(["validate", str(cfg)]) == 1
    assert "a.npy' has 5 samples; labels.npy has 4" in capsys.readouterr().out


def test_another_audio_visual_dataset_through_the_cremad_loader(tmp_path: Path) -> None:
    """A dataset the loader was not written for: 3 classes named in the config, 44.1 kHz stereo
    FLAC audio, PNG frames numbered without zero padding, labels as names in the csv."""
    import soundfile as sf
    from PIL import Image

    root = tmp_path / "av"
    rng = np.random.default_rng(5)
    classes = ["dog", "engine", "guitar"]
    rows: dict[str, list[str]] = {"train": [], "test": []}
    for split, count in (("train", 6), ("test", 2)):
        for k, cls in enumerate(classes):
            for i in range(count):
                name = f"{cls}-{split}-{i}"
                t = np.arange(int(44100 * 1.5)) / 44100
                tone = 0.3 * np.sin(2 * np.pi * (250 + 250 * k) * t)
                stereo = np.stack([tone, tone + 0.01 * rng.standard_normal(t.size)], axis=1)
                (root / "sound").mkdir(parents=True, exist_ok=True)
                sf.write(root / "sound" / f"{name}.flac", stereo.astype(np.float32), 44100)
                frames = root / "frames" / name
                frames.mkdir(parents=True)
                for f in (1, 2, 10):
                    img = np.full((20, 20, 3), 70 * k, np.uint8)
                    Image.fromarray(img).save(frames / f"img{f}.png")
                rows[split].append(f"{name},{cls}")
    # train: a csv with a header; test: "clip.flac label" separated by a tab
    (root / "train.csv").write_text("file,label\n" + "\n".join(rows["train"]) + "\n")
    test_lines = [f"{n}.flac\t{c}" for n, c in (r.split(",") for r in rows["test"])]
    (root / "test.csv").write_text("\n".join(test_lines) + "\n")
    cfg = tiny_config(
        tmp_path,
        data={
            "name": "cremad",
            "options": {
                "root": str(root),
                "classes": classes,
                "audio_dir": "sound",
                "audio_suffix": ".flac",
                "visual_dir": "frames",
                "audio": "fbank",
                "frames": 2,
                "image_size": 16,
            },
            "batch_size": 6,
            "val_fraction": 0.25,
        },
        model={"encoder": {"type": "resnet18", "width": 0.0625}},
        optim={"name": "adam", "lr": 0.003, "scheduler": "none"},
        train={"epochs": 4},
    )
    result = run_experiment(cfg, tmp_path / "run")
    assert result.history[-1]["train_acc"] > 0.5  # the tones and colours are learnable
    data = build_data(cfg.data)
    assert data.class_names == classes and data.shapes["visual"] == (3, 2, 16, 16)
    assert [p.name for p in data.test.clips[0].files["visual"]] == [
        "img1.png",
        "img2.png",
        "img10.png",
    ]
