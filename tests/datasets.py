"""Tiny real-data folders in their standard on-disk formats, written by the tests (no downloads)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image

from fdsl_app.data.real import imagenet100_wnids


def write_pickle(path: Path, labels_key: bytes, data: np.ndarray, labels: np.ndarray) -> None:
    with path.open("wb") as f:
        pickle.dump({b"batch_label": b"test", labels_key: labels.tolist(), b"data": data}, f)


def write_cifar10(root: Path, per_batch: int = 4, test: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """A tiny cifar-10-batches-py folder (5 x `per_batch` training images); returns the training data."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (5 * per_batch, 3072), dtype=np.uint8)
    labels = rng.integers(0, 10, 5 * per_batch)
    for i in range(5):
        part = slice(i * per_batch, (i + 1) * per_batch)
        write_pickle(folder / f"data_batch_{i + 1}", b"labels", data[part], labels[part])
    test_data = rng.integers(0, 256, (test, 3072), dtype=np.uint8)
    write_pickle(folder / "test_batch", b"labels", test_data, np.arange(test) % 10)
    return data, labels


def write_cifar100(root: Path, train: int = 20, test: int = 10) -> np.ndarray:
    """A tiny cifar-100-python folder; returns the training labels."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 100, train)
    write_pickle(folder / "train", b"fine_labels", rng.integers(0, 256, (train, 3072), dtype=np.uint8), labels)
    write_pickle(folder / "test", b"fine_labels", rng.integers(0, 256, (test, 3072), dtype=np.uint8), np.arange(test))
    return labels


def write_jpeg(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, dtype=np.uint8)).save(path)


def write_imagenet100(root: Path) -> list[str]:
    """An ImageNet folder with one tiny image per ImageNet-100 class in train/ and val/; returns the wnids."""
    wnids = imagenet100_wnids()
    for label, wnid in enumerate(wnids):
        for split in ("train", "val"):
            write_jpeg(root / split / wnid / f"{wnid}_{split}.JPEG", label)
    return wnids
