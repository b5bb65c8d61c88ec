"""The CPU suite's dataset: scikit-learn's handwritten digits (1,797 8x8 images shipped inside the package, no
download) written as class folders, ``root/train/<digit>/`` and ``root/test/<digit>/`` (a fifth of each class,
chosen with seed 0); validation is then carved from train by the data module."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

TEST_FRACTION = 0.2


def write_digits(root: Path) -> bool:
    """Write the digits under `root` unless ``root/train`` exists; returns whether they were written. Written into
    a temporary folder renamed into place, so a killed write leaves nothing that looks complete."""
    root = Path(root)
    if (root / "train").is_dir():
        return False
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ValueError("the digits suite needs scikit-learn: pip install scikit-learn") from None
    from fdsl_app.data.real import carve

    digits = load_digits()
    images = np.round(digits.images * (255 / 16)).astype(np.uint8)  # 0..16 -> 0..255
    train, test = carve(digits.target, TEST_FRACTION, np.random.default_rng(0))
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    for split, indices in (("train", train), ("test", test)):
        for i in indices:
            folder = partial / split / str(digits.target[i])
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[i]).save(folder / f"{i:04d}.png")  # gray
    if root.is_dir() and not any(root.iterdir()):
        root.rmdir()
    if root.exists():
        raise ValueError(f"{root} exists without train/: move it away, or point data.root at an empty place")
    partial.rename(root)
    return True
