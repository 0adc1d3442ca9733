"""UCF-101 as RGB + optical flow in the field's layout."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from layout_fixtures import UCF_CLASSES, make_ucf101

from mmbalance.config import DataConfig
from mmbalance.data import build_data
from mmbalance.data.datasets.ucf101 import load_flow
from mmbalance.errors import DataError


@pytest.fixture(scope="module")
def ucf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_ucf101(tmp_path_factory.mktemp("ucf") / "UCF101")


def _cfg(root: Path, **options) -> DataConfig:
    return DataConfig(
        name="ucf101", options={"root": str(root), "image_size": 16, **options}, val_fraction=0.25
    )


def test_rgb_and_two_channel_flow_with_class_index_labels(ucf: Path) -> None:
    data = build_data(_cfg(ucf))
    assert data.shapes == {"rgb": (3, 3, 16, 16), "flow": (2, 3, 16, 16)}
    assert data.class_names == UCF_CLASSES and data.num_classes == 3
    # HandStandPushups videos get classInd's HandstandPushups (#2 -> label 1)
    hs = [c for c in data.test.clips if "HandStand" in c.name]
    assert hs and all(c.label == 1 for c in hs)
    sample = data.test[0]["inputs"]
    # flow stays in [0, 1] (no ImageNet statistics); u is channel 0, v channel 1
    flow = sample["flow"]
    assert float(flow.min()) >= 0.0 and float(flow.max()) <= 1.0
    k = data.test.clips[0].label
    assert abs(float(flow[0].mean()) * 255 - 60 * k) < 8
    assert abs(float(flow[1].mean()) * 255 - (200 - 60 * k)) < 8


def test_u_and_v_are_flipped_together(ucf: Path) -> None:
    u = tuple(sorted((ucf / "flow_u" / "v_YoYo_g08_c01").iterdir()))
    torch.manual_seed(0)
    both = load_flow(u, u, 3, True, 16, "resize_flip")
    # the same frame as u and v: any flip or crop applied to one is applied to the other
    assert torch.equal(both[0], both[1])


def test_list_errors_name_the_line(ucf: Path, tmp_path: Path) -> None:
    root = make_ucf101(tmp_path / "bad")
    with (root / "trainlist01.txt").open("a") as fh:
        fh.write("YoYo/v_YoYo_g20_c01.avi 2\n")
    with pytest.raises(DataError, match=r"trainlist01\.txt' line 13: index 2 disagrees .*'YoYo'"):
        build_data(_cfg(root))
    lines = [*(root / "trainlist01.txt").read_text().splitlines()[:-1], "Juggling/v_J_g01.avi"]
    (root / "trainlist01.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"class 'Juggling' is not in the class index"):
        build_data(_cfg(root))


def test_validate_reports_every_planted_problem(tmp_path: Path, capsys) -> None:
    import yaml

    from mmbalance.cli import main

    root = make_ucf101(tmp_path / "v")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"data": {"name": "ucf101", "options": {"root": str(root)}}}))
    assert main(["validate", str(cfg)]) == 0
    assert "train: 12 samples (ApplyEyeMakeup 4, HandstandPushups 4, YoYo 4)" in (
        capsys.readouterr().out
    )
    u = next((root / "flow_u").iterdir())
    for f in u.iterdir():
        f.unlink()  # an empty flow folder
    bad = sorted((root / "rgb" / "v_YoYo_g01_c01").iterdir())[2]
    bad.write_bytes(b"")  # an empty frame file
    with (root / "testlist01.txt").open("a") as fh:
        fh.write("Juggling/v_Juggling_g01_c01.avi\n")  # an unknown class
    assert main(["validate", str(cfg)]) == 1
    out = capsys.readouterr().out
    assert f"no frames in '{u}'" in out
    assert f"unreadable frame '{bad}'" in out
    assert "testlist01.txt' line 7: class 'Juggling' is not in the class index" in out
