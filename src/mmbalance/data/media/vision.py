"""Frames as the field loads them: JPEG -> RGB tensor; train RandomResizedCrop + horizontal
flip, evaluation Resize; ImageNet normalisation (``datasets.md``). Written with PIL and torch
(no torchvision dependency)."""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from mmbalance.errors import DataError

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).reshape(3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).reshape(3, 1, 1)


def load_rgb(path: str | Path, mode: str = "RGB") -> Tensor:
    """``[3, H, W]`` float in [0, 1] (``mode="L"``: ``[1, H, W]`` grey); errors name the file."""
    try:
        from PIL import Image
    except ImportError as err:
        raise DataError("reading frames needs Pillow: pip install 'mmbalance[media]'") from err
    try:
        with Image.open(path) as img:
            rgb = img.convert(mode)
            data = torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8)
            size = rgb.size
    except Exception as err:
        raise DataError(f"cannot read image {str(path)!r}: {err}") from err
    channels = len(mode)
    return data.reshape(size[1], size[0], channels).permute(2, 0, 1).float() / 255.0


def _resize(img: Tensor, size: tuple[int, int]) -> Tensor:
    return F.interpolate(
        img[None], size=size, mode="bilinear", align_corners=False, antialias=True
    )[0]


def random_resized_crop(
    img: Tensor,
    size: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> Tensor:
    """Crop a random area (``scale`` of the image, aspect ``ratio``) and resize to ``size``^2.

    Same sampling as torchvision's RandomResizedCrop: 10 tries, then a centre crop fallback.
    Uses the global torch RNG (seeded per epoch / worker by the trainer).
    """
    _, h, w = img.shape
    area = h * w
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * float(torch.empty(1).uniform_(*scale))
        aspect = math.exp(float(torch.empty(1).uniform_(*log_ratio)))
        cw = round(math.sqrt(target * aspect))
        ch = round(math.sqrt(target / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(torch.randint(0, h - ch + 1, (1,)))
            left = int(torch.randint(0, w - cw + 1, (1,)))
            return _resize(img[:, top : top + ch, left : left + cw], (size, size))
    in_ratio = w / h
    if in_ratio < ratio[0]:
        cw, ch = w, round(w / ratio[0])
    elif in_ratio > ratio[1]:
        ch, cw = h, round(h * ratio[1])
    else:
        cw, ch = w, h
    top, left = (h - ch) // 2, (w - cw) // 2
    return _resize(img[:, top : top + ch, left : left + cw], (size, size))


def _normalise(img: Tensor, normalise: bool) -> Tensor:
    # ImageNet statistics apply to RGB only; grey flow frames stay in [0, 1] as the field has them.
    return (img - IMAGENET_MEAN) / IMAGENET_STD if normalise and img.shape[0] == 3 else img


def train_transform(
    img: Tensor, size: int, augment: str = "crop_flip", normalise: bool = True
) -> Tensor:
    """Training view: ``crop_flip`` = RandomResizedCrop(size) + RandomHorizontalFlip (CREMA-D,
    Kinetics-Sounds); ``resize_flip`` = Resize((size, size)) + RandomHorizontalFlip (the field's
    UCF-101); then ImageNet normalisation for RGB."""
    out = random_resized_crop(img, size) if augment == "crop_flip" else _resize(img, (size, size))
    if float(torch.rand(1)) < 0.5:
        out = out.flip(-1)
    return _normalise(out, normalise)


def eval_transform(img: Tensor, size: int, normalise: bool = True) -> Tensor:
    """Resize((size, size)) + ImageNet normalisation for RGB: deterministic."""
    return _normalise(_resize(img, (size, size)), normalise)
