"""Evaluation a paper can report: disjoint train/val/test splits, the small-data warnings, init_from resolution."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from datasets import write_jpeg

from fdsl_app.config import AugmentCfg
from fdsl_app.data.real import FolderDataModule, carve, small_data_warnings, split_sources
from fdsl_app.training.pretrained import resolve_init_from

QUIET = AugmentCfg(rand_augment=None, re_prob=0.0)


def _folder(root: Path, splits: dict[str, int]) -> None:
    for split, per_class in splits.items():
        for name in ("a", "b", "c"):
            for i in range(per_class):
                write_jpeg(root / split / name / f"{split}{i}.png", i)


def _paths(dm: FolderDataModule, split: str) -> set[str]:
    dataset = dm.make_dataset(split, lambda image: image)
    if hasattr(dataset, "indices"):
        return {dataset.dataset.samples[i][0] for i in dataset.indices}  # type: ignore[attr-defined]
    return {path for path, _ in dataset.samples}  # type: ignore[attr-defined]


@pytest.mark.parametrize("splits, sources", [
    ({"train": 10, "val": 2, "test": 3}, {"test": "test", "val": "val"}),
    ({"train": 10, "test": 3}, {"test": "test", "val": "carved"}),
    ({"train": 10, "val": 2}, {"test": "val", "val": "carved"}),
    ({"train": 20}, {"test": "carved", "val": "carved"}),
])  # fmt: skip
def test_test_split_is_disjoint_from_train_and_val(tmp_path: Path, splits: dict[str, int], sources) -> None:
    _folder(tmp_path, splits)
    dm = FolderDataModule(tmp_path, image_size=16, augment=QUIET, batch_size=2, val_fraction=0.2)
    assert dm.split_sources() == sources == split_sources(tuple(splits))
    train, val, test = (_paths(dm, split) for split in ("train", "val", "test"))
    assert train and val and test and not (train & val) and not (train & test) and not (val & test)
    assert train | val | test == {str(p) for p in tmp_path.rglob("*.png")}
    # The carve is a function of split_seed alone: the training seed does not move images between splits.
    other_seed = FolderDataModule(tmp_path, image_size=16, augment=QUIET, batch_size=2, val_fraction=0.2, seed=7)
    assert _paths(other_seed, "val") == val and _paths(other_seed, "test") == test


def test_carve_holds_out_a_share_of_each_class() -> None:
    labels = np.repeat(np.arange(4), 10)
    kept, held = carve(labels, 0.2, np.random.default_rng(0))
    assert len(held) == 8 and np.bincount(labels[held]).tolist() == [2, 2, 2, 2]
    assert sorted(np.concatenate([kept, held]).tolist()) == list(range(40))
    assert len(carve(np.array([0, 1, 2]), 0.1, np.random.default_rng(0))[1]) == 1  # never an empty split


def test_small_dataset_and_drop_last_warnings(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # The case: 100 images at batch 64 train one step an epoch and drop 36 images.
    lines = small_data_warnings("digits", 100, 64)
    assert len(lines) == 2 and "1 step(s) an epoch" in lines[0] and "leaves out 36 of 100" in lines[1]
    assert small_data_warnings("digits", 1000, 64) == []  # 15 steps, 40 images (4%) dropped: fine
    assert "leaves out 300 of 1000" in small_data_warnings("x", 1000, 350)[-1]
    _folder(tmp_path, {"train": 12, "test": 1})
    dm = FolderDataModule(tmp_path, image_size=16, augment=QUIET, batch_size=12, val_fraction=0.1)  # 33 to train
    with caplog.at_level(logging.WARNING, logger="fdsl_app"):
        dm.train_dataloader()
    assert any("2 step(s) an epoch at batch 12" in r.message for r in caplog.records)
    assert any("drop_last leaves out 9 of 33" in r.message for r in caplog.records)


def test_init_from_resolves_against_root_and_run_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "runs"
    checkpoint = root / "pre" / "checkpoints" / "last.ckpt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"x")
    elsewhere = tmp_path / "work"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the working directory is not where the runs are
    assert resolve_init_from("pre", root) == checkpoint  # a run name: its last checkpoint
    assert resolve_init_from("pre/checkpoints/last.ckpt", root) == checkpoint  # a path under root
    assert resolve_init_from(root / "pre", "anywhere") == checkpoint  # a run directory
    (elsewhere / "own.ckpt").write_bytes(b"y")
    assert resolve_init_from("own.ckpt", root) == Path("own.ckpt")  # relative to the working directory as before
    with pytest.raises(ValueError, match=r"model.init_from='nothing' names no checkpoint \(tried .*runs/nothing"):
        resolve_init_from("nothing", root)
