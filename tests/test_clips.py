"""Shared clip machinery: frame order, frame choice, skipping corrupt files, safe pickles."""

from __future__ import annotations

import os
import pickle
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_config
from layout_fixtures import make_kinetics_sounds

from mmbalance.data.datasets.clips import list_frames, natural_key, segment_indices
from mmbalance.data.loading import read_skip_log
from mmbalance.data.media.safe_pickle import load_pickle
from mmbalance.errors import DataError
from mmbalance.experiment import run_experiment


def test_natural_frame_order_not_listdir_order(tmp_path: Path) -> None:
    for t in (10, 2, 1, 9):
        (tmp_path / f"frame_0000{t}.jpg").write_bytes(b"")
    (tmp_path / "notes.txt").write_bytes(b"")
    assert [p.name for p in list_frames(tmp_path)] == [
        "frame_00001.jpg",
        "frame_00002.jpg",
        "frame_00009.jpg",
        "frame_000010.jpg",  # string order would put it second
    ]
    assert sorted(["b10", "b9", "a"], key=natural_key) == ["a", "b9", "b10"]
    assert list_frames(tmp_path / "missing") == ()


def test_segment_choice_matches_the_fields_rule() -> None:
    # 10 frames, 3 picks: segments [0,3) [3,6) [6,9); evaluation takes each middle frame.
    assert segment_indices(10, 3, train=False) == [1, 4, 7]
    assert segment_indices(6, 3, train=False) == [1, 3, 5]
    assert segment_indices(5, 1, train=False) == [2]
    assert segment_indices(2, 3, train=False) == [0, 0, 1]  # short clips repeat, in order
    torch.manual_seed(0)
    draws = [segment_indices(10, 3, train=True) for _ in range(300)]
    for i in range(3):
        seen = {d[i] for d in draws}
        assert seen == {3 * i, 3 * i + 1, 3 * i + 2}  # every frame of its segment, no other
    with pytest.raises(ValueError):
        segment_indices(0, 1, train=False)


class _Evil:
    def __reduce__(self):  # what a hostile pickle does: call a function on load
        return (os.system, ("echo pwned > /dev/null",))


def test_pickles_cannot_run_code(tmp_path: Path) -> None:
    good = tmp_path / "good.pkl"
    value = {"train": {"audio": np.arange(6, dtype=np.float32).reshape(2, 3), "id": [b"a"]}}
    good.write_bytes(pickle.dumps(value))
    loaded = load_pickle(good)
    assert np.array_equal(loaded["train"]["audio"], value["train"]["audio"])
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(DataError, match=r"evil\.pkl' asks to load posix\.system"):
        load_pickle(evil)
    (tmp_path / "cut.pkl").write_bytes(good.read_bytes()[:20])
    with pytest.raises(DataError, match=r"cannot read pickle .*cut\.pkl"):
        load_pickle(tmp_path / "cut.pkl")


def _ks_config(root: Path, tmp_path: Path, **options):
    return tiny_config(
        tmp_path,
        data={
            "name": "kinetics_sounds",
            "options": {"root": str(root), "image_size": 16, "num_classes": 3, **options},
            "batch_size": 4,
            "val_fraction": 0.25,
        },
        model={"encoder": {"type": "resnet18", "width": 0.0625}},
        train={"epochs": 2},
    )


def test_a_corrupt_file_is_an_error_naming_it_or_skipped_and_listed(tmp_path: Path) -> None:
    root = make_kinetics_sounds(tmp_path / "ks")
    victim = sorted((root / "visual").iterdir())[5]
    for frame in victim.iterdir():  # every frame, so whichever one is picked fails
        frame.write_bytes(b"\xff\xd8 truncated")
    spec = sorted((root / "audio").iterdir())[2]
    np.save(spec, np.zeros((40, 31), np.float32))  # a spectrogram of another shape
    with pytest.raises(DataError, match=rf"cannot read image '{victim}|{spec.stem}.*shape"):
        run_experiment(_ks_config(root, tmp_path), tmp_path / "strict")
    result = run_experiment(_ks_config(root, tmp_path, on_corrupt="skip"), tmp_path / "skip")
    rows = read_skip_log(result.run_dir)
    names = {name for _, name, _ in rows}
    assert names == {victim.name, spec.stem}
    assert any(f"cannot read image '{victim}/frame_" in reason for _, _, reason in rows)
    assert any("shape (1, 40, 31), expected (1, 40, 30)" in r for _, _, r in rows)
    assert result.epochs == 2


def test_spectrogram_cache_reuses_recomputes_and_never_goes_stale(tmp_path: Path) -> None:
    import soundfile as sf

    from mmbalance.data.media.audio import FbankRecipe, read_wav
    from mmbalance.data.media.audiovisual import SpectrogramCache

    wav = tmp_path / "clip.wav"
    t = np.arange(16000) / 16000
    sf.write(wav, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000)
    cache = SpectrogramCache("fbank", tmp_path / "cache")
    first = cache(wav)
    assert torch.equal(first, FbankRecipe()(*read_wav(wav)))
    (entry,) = list(cache.dir.glob("*.npy"))  # type: ignore[union-attr]
    np.save(entry, np.full(first.shape, 7.0, np.float32))  # a planted value: read, not recomputed
    assert float(cache(wav).mean()) == 7.0
    entry.write_bytes(b"damaged")  # a damaged entry is recomputed
    assert torch.equal(cache(wav), first)
    time.sleep(0.01)
    sf.write(wav, (0.3 * np.sin(2 * np.pi * 880 * t)).astype(np.float32), 16000)  # re-encoded
    assert not torch.equal(cache(wav), first)
    assert len(list(cache.dir.glob("*.npy"))) == 2  # type: ignore[union-attr]
    other = SpectrogramCache("fbank", tmp_path / "cache")  # same recipe: same folder
    assert other.dir == cache.dir
    assert SpectrogramCache("stft", tmp_path / "cache").dir != cache.dir
