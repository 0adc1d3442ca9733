"""The imbalance suite's generators: eSpeak NG speech, the sample plan, the three writers, the
read-through by the real loaders, and the once-only, atomic, locked store."""

from __future__ import annotations

import csv
import json
import threading
from pathlib import Path

import numpy as np
import pytest

from mmbalance.config import load_config
from mmbalance.data import build_data
from mmbalance.data.prepare.generate import ensure_generated, generate
from mmbalance.data.prepare.generate.digits import (
    FrameStyle,
    handwritten_frame,
    plan_utterances,
    sample_rng,
    speech_clip,
    transcript,
)
from mmbalance.data.prepare.generate.espeak import speaker
from mmbalance.data.prepare.generate.store import MANIFEST
from mmbalance.errors import ConfigError, DataError

pytest.importorskip("espeakng_loader")

CONFIGS = Path(__file__).resolve().parents[1] / "src" / "mmbalance" / "configs"


def test_espeak_speaks_each_language() -> None:
    talk = speaker()
    a = talk.say("7", "de+f3", rate=150, pitch=40)
    assert a.dtype == np.float32 and 0.1 < a.shape[0] / talk.sample_rate < 2.0
    assert np.abs(a).max() > 0.05
    fast = talk.say("7", "de+f3", rate=300, pitch=40)
    assert fast.shape[0] < 0.8 * a.shape[0]  # the rate is applied
    assert talk.phonemes("7", "de") == "z'i:b@n"  # "sieben"
    assert talk.phonemes("7", "en") == "s'Ev@n"
    with pytest.raises(DataError, match="no voice 'xx-nope'"):
        talk.say("1", "xx-nope")


def test_speech_clip_places_the_word_at_the_planned_snr() -> None:
    labels = np.array([3, 3, 8])
    plan = plan_utterances(labels, seed=0)
    assert plan == plan_utterances(labels, seed=0) and plan != plan_utterances(labels, seed=1)
    u = plan[0]
    clip = speech_clip(speaker(), u, sample_rng(0, 0, 1))
    assert clip.shape == (16000,) and np.abs(clip).max() == pytest.approx(0.9, abs=1e-6)
    # noise only before the word: its power is the word's divided by 10^(snr/10)
    word = np.flatnonzero(np.abs(clip) > 8 * np.abs(clip[:200]).std())
    start = word[0]
    assert start == pytest.approx(int(u.offset * (16000 - (word[-1] - start))), abs=1600)
    noise, speech = clip[: max(start - 200, 50)], clip[start : word[-1]]
    snr = 10 * np.log10(np.mean(speech**2) / np.mean(noise**2))
    assert snr == pytest.approx(u.snr_db, abs=3.0)


def test_handwritten_frame_and_transcript() -> None:
    digit = np.zeros((16, 15), np.float32)
    digit[4:12, 6:9] = 1.0  # a "1"
    quiet = FrameStyle(distractors=0, occluders=0, noise=0.0, rotation=0.0, scale=(2.0, 2.0))
    frame = handwritten_frame(digit, digit[None], sample_rng(0, 5, 2), quiet)
    assert frame.shape == (48, 48) and frame.dtype == np.uint8
    ink = (frame.astype(np.float32) / 255.0) * 6.0 - 2.5  # the stored [-2.5, 3.5] mapping
    assert (ink > 0.5).sum() == pytest.approx(2 * 8 * 2 * 3, rel=0.3)  # the digit, scaled x2
    assert ink.min() == pytest.approx(0.0, abs=0.02)
    same = handwritten_frame(digit, digit[None], sample_rng(0, 5, 2), quiet)
    assert np.array_equal(frame, same)
    assert transcript("z'i:b@n", sample_rng(0, 1, 4), "abc", error_rate=0.0) == "z'i:b@n"
    noisy = [transcript("z'i:b@n", sample_rng(0, i, 4), "#", 0.9) for i in range(50)]
    assert any("#" in t for t in noisy) and any(len(t) < 7 for t in noisy)


@pytest.fixture(scope="module")
def small_suite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("suite")
    for name in ("digits_av", "digits_seq", "digits_vec"):
        generate(name, root / name, seed=0, progress=False, per_class=4)
    return root


def test_digits_av_is_a_cremad_folder_read_by_the_cremad_loader(small_suite: Path) -> None:
    root = small_suite / "digits_av"
    manifest = json.loads((root / MANIFEST).read_text())
    assert manifest["sizes"] == {"train": 30, "test": 10} and manifest["per_class"] == 4
    rows = list(csv.reader((root / "train.csv").open()))
    assert all(len(r) == 2 and r[1] in "0123456789" for r in rows)
    name = rows[0][0]
    assert (root / "AudioWAV" / f"{name}.wav").is_file()
    assert len(list((root / "Image-01-FPS" / name).glob("*.jpg"))) == 3
    cfg = load_config(
        CONFIGS / "digits_av.yaml",
        [f"--data.options.root={root}", "--data.generate=null", "--data.val_fraction=0.25"],
    )
    data = build_data(cfg.data)
    assert data.num_classes == 10 and data.shapes == {
        "audio": (1, 64, 32),
        "visual": (1, 1, 48, 48),
    }
    assert len(data.test) == 10 and len(data.train) + len(data.val) == 30
    sample = data.test[0]
    assert sample["inputs"]["visual"].min() >= 0 and sample["inputs"]["visual"].max() <= 1


def test_digits_seq_and_vec_are_arrays_folders(small_suite: Path) -> None:
    for name, shapes in (
        ("digits_seq", {"audio": (32, 32), "visual": (24, 24)}),
        ("digits_vec", {"audio": (256,), "visual": (76,)}),
    ):
        root = small_suite / name
        cfg = load_config(
            CONFIGS / f"{name}.yaml",
            [f"--data.options.root={root}", "--data.generate=null", "--data.val_fraction=0.25"],
        )
        data = build_data(cfg.data)
        assert {m: data.shapes[m] for m in shapes} == shapes
        assert len(data.test) == 10
    text = np.load(small_suite / "digits_seq" / "train" / "text.npy")
    assert text.shape[1] == 12 and np.all(text.sum(-1) == 1)  # one symbol (or padding) per step
    # the same digit gets the same speech in every benchmark: the plan is shared
    labels = np.load(small_suite / "digits_vec" / "train" / "labels.npy")
    assert labels.tolist() == np.load(small_suite / "digits_seq" / "train" / "labels.npy").tolist()


def test_generation_is_deterministic(tmp_path: Path) -> None:
    # eSpeak NG keeps state between utterances; each generation speaks in a fresh process,
    # in a fixed order, so two generations give the same bytes.
    a = generate("digits_seq", tmp_path / "a", per_class=2)
    b = generate("digits_seq", tmp_path / "b", per_class=2)
    for split in ("train", "test"):
        for key in ("audio", "visual", "text", "labels"):
            assert np.array_equal(
                np.load(a / split / f"{key}.npy"), np.load(b / split / f"{key}.npy")
            )


def test_ensure_generated_writes_once_under_a_lock_and_refuses_foreign_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mmbalance.data.prepare.generate import store

    calls: list[str] = []
    real = store.generate

    def counted(name: str, out: Path, seed: int = 0, progress: bool | None = None, per_class=None):
        calls.append(name)
        return real(name, out, seed, False, 2)

    monkeypatch.setattr(store, "generate", counted)
    monkeypatch.setattr(store, "_check", lambda *a: None)  # the 2-per-class stand-in is fine
    root = tmp_path / "vec"
    threads = [
        threading.Thread(target=ensure_generated, args=("digits_vec", root)) for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == ["digits_vec"] and (root / MANIFEST).is_file()
    assert not list(tmp_path.glob(".vec.tmp-*"))  # no temporary folder left behind
    monkeypatch.undo()
    with pytest.raises(DataError, match="holds generated data"):
        ensure_generated("digits_vec", root)  # a 2-per-class folder is not the benchmark
    (tmp_path / "mine").mkdir()
    with pytest.raises(DataError, match="no complete generated dataset"):
        ensure_generated("digits_seq", tmp_path / "mine")
    with pytest.raises(ConfigError, match=r"data\.generate: got 'nope'"):
        load_config(CONFIGS / "digits_vec.yaml", ["--data.generate=nope"])


def test_a_folder_of_an_older_generator_version_is_refused(tmp_path: Path) -> None:
    """digits_av's frames changed in generator version 2: a version-1 folder (same benchmark,
    same seed) must not be read as the current benchmark, and the shipped config points at the
    new version's folder."""
    from mmbalance.data.prepare.generate import store

    assert store.generator_version("digits_av") == 2
    assert store.generator_version("digits_vec") == 1
    root = tmp_path / "digits_av-v1"
    root.mkdir()
    old = {"benchmark": "digits_av", "seed": 0, "per_class": None, "generator_version": 1}
    (root / MANIFEST).write_text(json.dumps(old))
    with pytest.raises(DataError, match="'generator_version': 2"):
        ensure_generated("digits_av", root)
    assert "digits_av-v2" in (CONFIGS / "digits_av.yaml").read_text()


def test_a_failing_writer_leaves_nothing(tmp_path: Path) -> None:
    # zero digits per class: the writer fails inside the generating process
    with pytest.raises(ValueError):
        generate("digits_vec", tmp_path / "vec", per_class=0)
    assert list(tmp_path.iterdir()) == []
