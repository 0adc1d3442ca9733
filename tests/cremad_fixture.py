"""A tiny CREMA-D in the field's layout, built the way its preprocessing builds it: 16 kHz mono
WAVs, 1-fps JPEG frames per clip, ``train.csv`` / ``test.csv`` with ``name,label`` rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image

CLASSES = ["NEU", "HAP", "SAD", "FEA", "DIS", "ANG"]


def make_cremad(
    root: Path, per_class: tuple[int, int] = (4, 2), frames: int = 3, seconds: float = 1.2
) -> Path:
    rng = np.random.default_rng(0)
    (root / "AudioWAV").mkdir(parents=True)
    rows = {"train": [], "test": []}
    clip = 0
    for split, count in zip(("train", "test"), per_class, strict=True):
        for k, label in enumerate(CLASSES):
            for _ in range(count):
                name = f"{1001 + clip}_IEO_{label}_XX"
                clip += 1
                t = np.arange(int(16000 * seconds)) / 16000
                wave = 0.3 * np.sin(2 * np.pi * (200 + 150 * k) * t) + 0.05 * rng.standard_normal(
                    t.size
                )
                sf.write(root / "AudioWAV" / f"{name}.wav", wave.astype(np.float32), 16000)
                folder = root / "Image-01-FPS" / name
                folder.mkdir(parents=True)
                for f in range(frames):
                    color = np.array([40 * k, 255 - 40 * k, 20 * f], dtype=np.float64)
                    img = np.clip(color + 20 * rng.standard_normal((30, 40, 3)), 0, 255).astype(
                        np.uint8
                    )
                    Image.fromarray(img).save(folder / f"{name}_{f + 1:03d}.jpg", quality=90)
                rows[split].append(f"{name},{label}")
    for split, lines in rows.items():
        (root / f"{split}.csv").write_text("\n".join(lines) + "\n")
    return root
