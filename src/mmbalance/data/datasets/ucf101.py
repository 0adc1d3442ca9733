"""UCF-101 as RGB + optical flow, in the layout of the field (BalanceBenchmark, MLA, PMR)::

    ROOT/classInd.txt                     "1 ApplyEyeMakeup" ... "101 YoYo" (1-based)
    ROOT/trainlist01.txt                  "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1"
    ROOT/testlist01.txt                   "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi"
    ROOT/<rgb_dir>/<name>/frame_00001.jpg ...     RGB frames (the field keeps 6 per clip)
    ROOT/<flow_u_dir>/<name>/frame000001.jpg ...  TV-L1 flow, horizontal component (grey)
    ROOT/<flow_v_dir>/<name>/frame000001.jpg ...  vertical component

``<name>`` is the video's file name without extension. The label is the class folder of the
list line, numbered by ``classInd.txt`` (a trailing index on train lines, when present, must
agree). The ``flow`` modality stacks u and v as 2 channels: ``[2, T, H, W]``; ``rgb`` is
``[3, T, H, W]`` with ImageNet normalisation, flow stays in [0, 1] as the field has it.

Training view: Resize((224, 224)) + horizontal flip, as the field does for UCF-101
(``augment: resize_flip``; ``crop_flip`` adds RandomResizedCrop). One deliberate difference: u
and v of a frame are flipped together (the field flips them independently).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from mmbalance.data.base import DataSplits
from mmbalance.data.datasets.clips import (
    Clip,
    OnCorrupt,
    clip_splits,
    list_frames,
    report,
    require_root,
    scan_layout,
    segment_indices,
    split_lists,
)
from mmbalance.data.media.audiovisual import load_frame_stack
from mmbalance.data.media.vision import eval_transform, load_rgb, train_transform
from mmbalance.errors import ConfigError, DataError
from mmbalance.structured import check_positive


@dataclass
class UCF101Options:
    """``data.options`` of ``ucf101``."""

    root: str = ""
    class_ind: str = "classInd.txt"
    train_list: str = "trainlist01.txt"
    test_list: str = "testlist01.txt"
    val_list: str = ""  # "": a stratified share of train becomes the validation split
    rgb_dir: str = "rgb"
    flow_u_dir: str = "flow_u"
    flow_v_dir: str = "flow_v"
    frames: int = 3  # frames per clip for both modalities (the field uses 3)
    image_size: int = 224
    augment: Literal["resize_flip", "crop_flip"] = "resize_flip"
    skip_missing: bool = False  # drop listed clips whose files are missing (listed in the run)
    on_corrupt: OnCorrupt = "error"  # "skip": drop samples whose files fail to decode (listed)

    def validate(self, where: str) -> None:
        if not self.root:
            raise ConfigError(f"{where}.root: required; the UCF-101 folder")
        check_positive(self.frames, f"{where}.frames")
        check_positive(self.image_size, f"{where}.image_size")


def class_names(opts: UCF101Options) -> list[str]:
    """Class names in ``classInd.txt`` order (label = index - 1)."""
    path = Path(opts.root) / opts.class_ind
    if not path.is_file():
        raise DataError(f"UCF-101 class index {str(path)!r} not found; expected '1 ApplyEyeMakeup'")
    numbered = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not parts[0].isdigit():
            raise DataError(
                f"{str(path)!r} line {line_no}: expected 'index ClassName'; got {line!r}"
            )
        numbered.append((int(parts[0]), parts[1]))
    indices = sorted(i for i, _ in numbered)
    if indices != list(range(1, len(numbered) + 1)):
        raise DataError(f"{str(path)!r}: class indices must be 1..{len(numbered)}, each once")
    return [name for _, name in sorted(numbered)]


def read_list(
    path: Path, names: list[str], problems: list[str] | None = None
) -> list[tuple[str, int]]:
    """``(video name, label)`` rows of a split list."""
    if not path.is_file():
        report(problems, f"UCF-101 list {str(path)!r} not found; expected 'Class/v_x.avi [index]'")
        return []
    rows = []
    # Case-insensitive: the official release spells one class HandstandPushups in classInd.txt
    # and HandStandPushups in its video names.
    lookup = {n.lower(): k for k, n in enumerate(names)}
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        where = f"{str(path)!r} line {line_no}"
        if "/" not in parts[0]:
            report(problems, f"{where}: expected 'Class/v_x.avi'; got {parts[0]!r}")
            continue
        folder, video = parts[0].split("/", 1)
        if folder.lower() not in lookup:
            report(problems, f"{where}: class {folder!r} is not in the class index")
            continue
        label = lookup[folder.lower()]
        if len(parts) > 1 and parts[1] != str(label + 1):
            report(
                problems,
                f"{where}: index {parts[1]} disagrees with class {folder!r} (#{label + 1})",
            )
            continue
        rows.append((Path(video).stem, label))
    if not rows:
        report(problems, f"UCF-101 list {str(path)!r} has no rows")
    return rows


def scan(opts: UCF101Options, problems: list[str] | None) -> dict[str, list[Clip]]:
    """Clips of every list with RGB and both flow folders present."""
    names = class_names(opts)
    root = Path(opts.root)
    out: dict[str, list[Clip]] = {}
    for split, listing in split_lists(opts):
        clips = []
        for name, label in read_list(root / listing, names, problems):
            files = {
                key: list_frames(root / folder / name)
                for key, folder in (
                    ("rgb", opts.rgb_dir),
                    ("flow_u", opts.flow_u_dir),
                    ("flow_v", opts.flow_v_dir),
                )
            }
            empty = [k for k, v in files.items() if not v]
            if empty:
                folder = getattr(opts, f"{empty[0]}_dir")
                report(
                    problems, f"UCF-101 clip {name!r}: no frames in {str(root / folder / name)!r}"
                )
                continue
            if len(files["flow_u"]) != len(files["flow_v"]):
                report(
                    problems,
                    f"UCF-101 clip {name!r}: {len(files['flow_u'])} u-flow frames but "
                    f"{len(files['flow_v'])} v-flow frames",
                )
                continue
            clips.append(Clip(name, label, files))
        out[split] = clips
    return out


def load_flow(
    u: tuple[Path, ...], v: tuple[Path, ...], count: int, train: bool, size: int, augment: str
) -> torch.Tensor:
    """``count`` flow frames, u and v stacked as channels and transformed together."""
    out = []
    for i in segment_indices(len(u), count, train):
        uv = torch.cat([load_rgb(u[i], "L"), load_rgb(v[i], "L")], dim=0)
        out.append(train_transform(uv, size, augment) if train else eval_transform(uv, size))
    return torch.stack(out, dim=1)  # [2, T, H, W]


def _loaders(opts: UCF101Options) -> dict[str, Any]:
    def rgb(clip: Clip, train: bool) -> Any:
        frames = clip.files["rgb"]
        return load_frame_stack(frames, opts.frames, train, opts.image_size, opts.augment)

    def flow(clip: Clip, train: bool) -> Any:
        u, v = clip.files["flow_u"], clip.files["flow_v"]
        return load_flow(u, v, opts.frames, train, opts.image_size, opts.augment)

    return {"rgb": rgb, "flow": flow}


def build_ucf101(opts: UCF101Options, cfg: Any) -> DataSplits:
    """Train / validation / test splits of UCF-101 (RGB + flow)."""
    root = require_root(opts)
    names = class_names(opts)
    for _, listing in split_lists(opts):
        read_list(root / listing, names)  # bad list rows always stop the build
    expected = (
        f"{opts.rgb_dir}/<name>/*.jpg, {opts.flow_u_dir}/<name>/*.jpg and "
        f"{opts.flow_v_dir}/<name>/*.jpg"
    )
    clips, skipped = scan_layout(scan, opts, expected)
    info = {"root": opts.root, "frames": opts.frames, "augment": opts.augment, "skipped": skipped}
    return clip_splits("ucf101", clips, _loaders(opts), cfg, names, opts.on_corrupt, info)
