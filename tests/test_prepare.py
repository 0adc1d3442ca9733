"""``mmbalance prepare``: raw videos -> frames, WAV, spectrograms and lists the loaders read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image
from video_fixture import write_video

from mmbalance.cli import main
from mmbalance.config import DataConfig
from mmbalance.data import build_data
from mmbalance.data.prepare.videos import prepare

pytest.importorskip("av")


def test_kinetics_sounds_from_raw_videos(tmp_path: Path, capsys) -> None:
    src = tmp_path / "raw"
    for split, count in (("train", 3), ("test", 1)):
        for k, cls in enumerate(["playing drums", "playing piano"]):
            for i in range(count):
                write_video(src / split / cls / f"{cls[8:]}{split}{i}.mp4", tone=300 + 300 * k)
    (src / "test" / "playing piano" / "broken.mp4").write_bytes(b"not a video")
    out = tmp_path / "KS"
    assert main(["prepare", "kinetics_sounds", "--src", str(src), "--out", str(out)]) == 1
    printed = capsys.readouterr().out
    assert "train 6, test 2 clips" in printed and "1 video(s) failed" in printed
    assert "broken" in (out / "prepare_failures.tsv").read_text()
    assert (out / "classes.txt").read_text() == "playing drums\nplaying piano\n"
    # 3 s at 1 fps: 3 frames whose brightness steps by 40 each second
    frames = sorted((out / "visual" / "drumstrain0").iterdir())
    assert [f.name for f in frames] == ["frame_00001.jpg", "frame_00002.jpg", "frame_00003.jpg"]
    levels = [np.asarray(Image.open(f)).mean() for f in frames]
    assert np.allclose(levels, [80, 120, 160], atol=6)
    wave, rate = sf.read(out / "audio_wav" / "pianotrain0.wav")
    assert rate == 16000 and abs(len(wave) / rate - 3.0) < 0.1
    spectrum = np.abs(np.fft.rfft(wave[4000:12000]))
    assert abs(np.argmax(spectrum) * 16000 / 8000 - 600) < 5  # the piano clips' 600 Hz tone
    assert np.load(out / "audio" / "pianotrain0.npy").shape == (1024, 128)  # fbank [T, F]
    data = build_data(
        DataConfig(
            name="kinetics_sounds",
            options={"root": str(out), "num_classes": 2, "image_size": 16, "frames": 3},
            val_fraction=0.34,
        )
    )
    assert data.shapes == {"audio": (1, 1024, 128), "visual": (3, 3, 16, 16)}
    assert sorted(data.test.labels.tolist()) == [0, 1]
    # a second run keeps the finished clips and only retries the broken video
    stamp = frames[0].stat().st_mtime_ns
    prepare("kinetics_sounds", src, out, progress=False)
    assert frames[0].stat().st_mtime_ns == stamp


def test_cremad_from_the_release_layout(tmp_path: Path) -> None:
    src = tmp_path / "CREMA-D"
    names = [f"10{i:02d}_DFA_{e}_XX" for i, e in enumerate(["ANG", "HAP", "ANG", "HAP"] * 3)]
    for i, name in enumerate(names):
        write_video(src / "VideoFlash" / f"{name}.flv", seconds=2.0, shade=20 * i)
    (src / "AudioWAV").mkdir()
    release = np.full(16000, 0.25, np.float32)
    sf.write(src / "AudioWAV" / f"{names[0]}.wav", release, 16000)  # the release's own WAV
    (src / "train.csv").write_text("".join(f"{n},{n.split('_')[2]}\n" for n in names[:9]))
    (src / "test.csv").write_text("".join(f"{n},{n.split('_')[2]}\n" for n in names[9:]))
    out = tmp_path / "out"
    result = prepare("cremad", src, out, spectrogram="stft", progress=False)
    assert result.clips == {"train": 9, "test": 3} and not result.failed
    assert np.allclose(sf.read(out / "AudioWAV" / f"{names[0]}.wav")[0], 0.25, atol=1e-4)
    assert len(list((out / "Image-01-FPS" / names[3]).iterdir())) == 2
    cache = next((out / "spectrogram_cache").glob("stft-*"))
    assert len(list(cache.glob("*.npy"))) == 12
    data = build_data(
        DataConfig(
            name="cremad",
            options={
                "root": str(out),
                "image_size": 16,
                "cache_dir": str(out / "spectrogram_cache"),
            },
            val_fraction=0.25,
        )
    )
    assert data.shapes["audio"] == (1, 257, 188) and data.info["sizes"]["test"] == 3


@pytest.mark.parametrize("backend", ["pyav", "ffmpeg"])
def test_both_backends_extract_the_same_frames_and_audio(tmp_path: Path, backend: str) -> None:
    import shutil

    if backend == "ffmpeg" and shutil.which("ffmpeg") is None:
        pytest.skip("no ffmpeg program here (apt install ffmpeg); the PyAV backend is tested")
    from mmbalance.data.media.video import extract

    video = write_video(tmp_path / "v.mp4", seconds=3.0, tone=500)
    frames = tmp_path / "frames"
    wav = tmp_path / "v.wav"
    assert extract(video, frames, wav, backend) == 3
    levels = [np.asarray(Image.open(f)).mean() for f in sorted(frames.iterdir())]
    assert np.allclose(levels, [80, 120, 160], atol=6)
    wave, rate = sf.read(wav)
    assert rate == 16000 and abs(len(wave) / rate - 3.0) < 0.1
    spectrum = np.abs(np.fft.rfft(wave[4000:12000]))
    assert abs(np.argmax(spectrum) * 16000 / 8000 - 500) < 5
