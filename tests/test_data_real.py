"""Real fine-tuning data (CIFAR pickles, ImageNet-100, class folders), build_datamodule and the batch-size rule."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import torchvision
from datasets import write_cifar10, write_cifar100, write_imagenet100, write_jpeg, write_pickle

from fdsl_app.config import AugmentCfg, DataCfg, RunCfg, TrainerCfg, per_device_batch_size
from fdsl_app.data.build import build_datamodule
from fdsl_app.data.class_lists import load_class_list
from fdsl_app.data.datamodule import FamilyDataModule
from fdsl_app.data.real import (
    CIFAR10DataModule,
    CIFAR100DataModule,
    DatasetNotFoundError,
    FolderDataModule,
    ImageNet100DataModule,
    imagenet100_wnids,
)
from fdsl_app.training.fit import record_data_source

QUIET = AugmentCfg(rand_augment=None, re_prob=0.0)
FAMILY_SETTINGS = {"classes": 8, "image_size": 48, "n_points": 3000}


def test_cifar10_reads_the_pickles(tmp_path: Path) -> None:
    data, labels = write_cifar10(tmp_path)
    dm = CIFAR10DataModule(tmp_path, image_size=32, augment=QUIET, batch_size=8)
    assert dm.num_classes == 10 and dm.image_size == 32
    images, read_labels = dm.read_arrays(train=True)
    assert np.array_equal(read_labels, labels) and images.shape == (20, 32, 32, 3)
    assert np.array_equal(images[3], data[3].reshape(3, 32, 32).transpose(1, 2, 0))  # R, G, B planes to HWC
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert len(dm.train_dataloader()) == 2  # 19 images (one carved out for validation), batches of 8, drop_last
    assert dm.split_sources() == {"test": "test", "val": "carved"} and len(dm.val_set) == 1  # type: ignore[arg-type]
    test = list(dm.test_dataloader())  # the test batch, in order
    assert [len(b[1]) for b in test] == [8, 2] and torch.equal(torch.cat([b[1] for b in test]), torch.arange(10) % 10)
    # Eval images at 32 px are the stored pixels, only normalised.
    first = dm.test_set[0][0]  # type: ignore[index]
    stored = dm.read_arrays(train=False)[0][0]
    torch.testing.assert_close(first, torch.from_numpy(stored).permute(2, 0, 1).float() / 127.5 - 1)
    # root may also be the folder itself
    assert CIFAR10DataModule(tmp_path / "cifar-10-batches-py").folder_path == tmp_path / "cifar-10-batches-py"


def test_cifar100_reads_fine_labels(tmp_path: Path) -> None:
    train_labels = write_cifar100(tmp_path)
    dm = CIFAR100DataModule(tmp_path, augment=QUIET, batch_size=4)
    assert dm.num_classes == 100
    assert np.array_equal(dm.read_arrays(train=True)[1], train_labels)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 32, 32) and set(y.tolist()) <= set(train_labels.tolist())


def test_missing_cifar_says_where_to_put_it(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        CIFAR10DataModule(tmp_path)
    message = str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, FileNotFoundError)
    assert str(tmp_path / "cifar-10-batches-py") in message and "cifar-10-python.tar.gz" in message
    assert "https://www.cs.toronto.edu/~kriz/cifar.html" in message and f"extract it into {tmp_path}" in message
    with pytest.raises(ValueError, match=r"cifar-100-python.*cifar-100-python\.tar\.gz"):
        CIFAR100DataModule(tmp_path)


def test_corrupt_cifar_file_is_named(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    bad = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    bad.write_bytes(b"\x80\x04not a pickle at all")
    dm = CIFAR10DataModule(tmp_path)
    with pytest.raises(ValueError, match=r"data_batch_3 is corrupt"):
        dm.setup("fit")
    write_pickle(bad, b"labels", np.zeros((4, 100), dtype=np.uint8), np.zeros(4, dtype=np.int64))
    with pytest.raises(ValueError, match=r"data_batch_3: expected uint8 data \(N, 3072\)"):
        dm.read_arrays(train=True)


def test_cifar_md5_table_is_torchvisions() -> None:
    pairs = ((CIFAR10DataModule, torchvision.datasets.CIFAR10), (CIFAR100DataModule, torchvision.datasets.CIFAR100))
    for ours, theirs in pairs:
        assert ours.official_md5 == dict(theirs.train_list + theirs.test_list)
        assert set(ours.official_md5) == {*ours.train_files, *ours.test_files}


def test_cifar_run_record_holds_the_md5s_and_flags_unofficial_files(tmp_path: Path, caplog) -> None:
    write_cifar10(tmp_path / "data")
    folder = tmp_path / "data" / "cifar-10-batches-py"
    dm = CIFAR10DataModule(tmp_path / "data", augment=QUIET, batch_size=4)
    dm.setup("fit")  # reads the training batches; the record reads the test batch too
    run = tmp_path / "run"
    run.mkdir()
    with caplog.at_level(logging.INFO, logger="fdsl_app"):
        record_data_source(dm, run)
    record = json.loads((run / "data.json").read_text())
    names = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]
    assert sorted(record["files"]) == names and record["official"] is False
    for name in names:
        assert record["files"][name] == {"md5": hashlib.md5((folder / name).read_bytes()).hexdigest(),
                                         "official": False}  # fmt: skip
    assert record["images"] == {"train": len(dm.train_set), "val": len(dm.val_set), "test": None}
    assert len(dm.train_set) + len(dm.val_set) == 20 and record["folder"] == str(folder)  # val carved from train
    [line] = [r for r in caplog.records if "data.json" in r.getMessage()]
    assert line.levelno == logging.WARNING
    assert "CIFAR-10: 6 of the 6 files read" in line.getMessage() and "not the official" in line.getMessage()

    class Pinned(CIFAR10DataModule):  # the same reader with these files as the reference
        official_md5 = {name: f["md5"] for name, f in record["files"].items()}

    pinned = Pinned(tmp_path / "data")
    assert pinned.source_record()["official"] is True and pinned.source_record()["files"]["test_batch"]["official"]
    summary, as_expected = pinned.source_summary()
    assert as_expected and summary == f"CIFAR-10: 6 files read from {folder}, MD5s as the official {dm.archive}"
    (folder / "test_batch").write_bytes((folder / "test_batch").read_bytes() + b"\0")  # one file changed
    summary, as_expected = Pinned(tmp_path / "data").source_summary()
    assert not as_expected and "1 of the 6 files" in summary and "(test_batch:" in summary


def test_cifar100_record_names_its_files(tmp_path: Path) -> None:
    write_cifar100(tmp_path)
    dm = CIFAR100DataModule(tmp_path, augment=QUIET, batch_size=4)
    dm.setup("fit")
    files = dm.source_record()["files"]
    assert sorted(files) == ["test", "train"] and not any(f["official"] for f in files.values())


def test_class_lists_load_with_their_counts(tmp_path: Path) -> None:
    cmc = load_class_list("cmc")
    assert len(cmc.wnids) == 100 == len(set(cmc.wnids)) and (cmc.train_images, cmc.val_images) == (126_689, 5_000)
    assert cmc.source == "https://github.com/HobbitLong/CMC/blob/master/imagenet100.txt"
    assert list(cmc.wnids) == imagenet100_wnids()
    with pytest.raises(ValueError, match=r"AIST's ImageNet-100 class list .* is not public.*data.class_list=PATH"):
        load_class_list("aist")
    own = tmp_path / "mine.txt"
    own.write_text("# source: my lab\n# train_images: 1,300\nn01440764 tench\n\nn01443537\n")
    mine = load_class_list(own)
    assert mine.wnids == ("n01440764", "n01443537") and (mine.train_images, mine.val_images) == (1300, None)
    assert mine.record()["source"] == "my lab" and mine.record()["name"] == str(own)
    with pytest.raises(ValueError, match="no such list; use one of cmc"):
        load_class_list(tmp_path / "absent.txt")
    for text, message in (("n0144076\n", "line 1: 'n0144076' is not a WordNet id"),
                          ("n01440764\nn01440764\n", "repeats n01440764"), ("# only\n", "holds no wnids"),
                          ("# val_images: many\nn01440764\n", "val_images: 'many' is not a whole number")):  # fmt: skip
        own.write_text(text)
        with pytest.raises(ValueError, match=message):
            load_class_list(own)


def test_imagenet100_counts_differing_from_the_list_are_a_warning_and_recorded(tmp_path: Path, caplog) -> None:
    write_imagenet100(tmp_path / "data")  # one image per class and split: a partial copy of the CMC list
    dm = ImageNet100DataModule(tmp_path / "data", augment=QUIET, batch_size=4)
    dm.setup("fit")
    run = tmp_path / "run"
    run.mkdir()
    with caplog.at_level(logging.INFO, logger="fdsl_app"):
        record_data_source(dm, run)
    [warning] = caplog.records
    message = warning.getMessage()
    assert warning.levelno == logging.WARNING and message.endswith(f"(details: {run / 'data.json'})")
    assert "100 train images" in message and "class list cmc has 126,689" in message
    assert "100 val images" in message and "class list cmc has 5,000" in message
    record = json.loads((run / "data.json").read_text())
    assert record["images_on_disk"] == {"train": 100, "val": 100} and record["counts_match"] is False
    assert record["class_list"]["name"] == "cmc" and record["class_list"]["wnids"] == imagenet100_wnids()
    assert record["class_list"]["expected_images"] == {"train": 126_689, "val": 5_000}
    summary, as_expected = dm.source_summary()
    assert not as_expected and summary.startswith("ImageNet-100 (class list cmc, 100 classes): 100 train images")
    # The same folders under a list whose counts they match: no warning.
    own = tmp_path / "list.txt"
    own.write_text("# train_images: 100\n# val_images: 100\n" + "\n".join(imagenet100_wnids()))
    caplog.clear()
    cfg = RunCfg(data=DataCfg(source="imagenet100", root=str(tmp_path / "data"), class_list=str(own), batch_size=4))
    matched, _ = build_datamodule(cfg)
    matched.setup("fit")
    with caplog.at_level(logging.INFO, logger="fdsl_app"):
        record_data_source(matched, None)
    assert [r.levelno for r in caplog.records] == [logging.INFO]
    assert matched.source_record()["counts_match"] is True  # type: ignore[attr-defined]
    assert matched.source_summary() == (  # type: ignore[attr-defined]
        f"ImageNet-100 (class list {own}, 100 classes): 100 train and 100 val images under {tmp_path / 'data'}, "
        "as the list has", True)  # fmt: skip


def test_imagenet100_names_the_missing_classes(tmp_path: Path) -> None:
    wnids = imagenet100_wnids()
    assert len(wnids) == 100 == len(set(wnids)) and wnids[:3] == ["n02869837", "n01749939", "n02488291"]
    for wnid in wnids[:3]:
        for split in ("train", "val"):
            write_jpeg(tmp_path / split / wnid / f"{wnid}_0.JPEG", 10)
    with pytest.raises(DatasetNotFoundError, match=r"97 of the 100 class folders of class list cmc are missing"
                       ) as info:
        ImageNet100DataModule(tmp_path)
    assert wnids[3] in str(info.value) and wnids[99] in str(info.value) and wnids[0] not in str(info.value)
    with pytest.raises(DatasetNotFoundError, match="val"):
        ImageNet100DataModule(tmp_path / "nowhere")


def test_imagenet100_loads_all_classes_by_list_order(tmp_path: Path) -> None:
    wnids = write_imagenet100(tmp_path)
    write_jpeg(tmp_path / "train" / "n99999999" / "extra.JPEG", 0)  # another ImageNet class: ignored
    dm = ImageNet100DataModule(tmp_path, image_size=32, augment=QUIET, batch_size=25)
    assert dm.num_classes == 100
    dm.setup("fit")
    assert dm.train_set is not None and len(dm.train_set) == 99  # type: ignore[arg-type]  # 1 carved for val
    samples = dm.train_set.dataset.samples  # type: ignore[attr-defined]
    assert sorted(label for _, label in samples) == list(range(100))
    assert all(wnids[label] == Path(path).parent.name for path, label in samples)  # label = place in the list
    x, y = next(iter(dm.test_dataloader()))  # test: ImageNet's val folder
    assert x.shape == (25, 3, 32, 32) and y.tolist() == [wnids.index(w) for w in sorted(wnids)[:25]]
    assert len(dm.train_dataloader()) == 3


def test_folder_dataset(tmp_path: Path) -> None:
    for name, count in (("cat", 3), ("dog", 2), ("emu", 3)):
        for i in range(count):
            write_jpeg(tmp_path / "train" / name / f"{i}.png", 50 * i)
    write_jpeg(tmp_path / "val" / "dog" / "0.png", 1)  # val may lack classes; labels follow train's
    dm = FolderDataModule(tmp_path, image_size=16, augment=QUIET, batch_size=4)
    assert dm.num_classes == 3 and dm.classes == ["cat", "dog", "emu"]
    x, y = next(iter(dm.test_dataloader()))  # no test/: val/ is the test split, validation is carved from train
    assert x.shape == (1, 3, 16, 16) and y.tolist() == [1]
    assert next(iter(dm.train_dataloader()))[0].shape == (4, 3, 16, 16)
    write_jpeg(tmp_path / "val" / "yak" / "0.png", 1)
    with pytest.raises(ValueError, match="yak"):
        FolderDataModule(tmp_path)


def test_batch_size_rule() -> None:
    assert per_device_batch_size(64, 2, 2) == 16
    assert per_device_batch_size(64) == 64
    with pytest.raises(ValueError, match=r"batch_size=64.*world size 3.*accumulate_grad_batches 1.*63 or 66"):
        per_device_batch_size(64, 3, 1)
    with pytest.raises(
        ValueError, match=r"32 or 64; or keep 48 with trainer.accumulate_grad_batches in \{1, 2, 3, 4, 6, 12\}"
    ):
        per_device_batch_size(48, 4, 8)


def test_build_datamodule_real_source_applies_the_rule(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    cfg = RunCfg(
        data=DataCfg(source="cifar10", root=str(tmp_path), batch_size=64),
        trainer=TrainerCfg(accumulate_grad_batches=2),
    )
    dm, classes = build_datamodule(cfg, world_size=2)
    assert isinstance(dm, CIFAR10DataModule) and classes == 10 and dm.batch_size == 16
    with pytest.raises(ValueError, match="world size 3"):
        build_datamodule(RunCfg(data=DataCfg(source="cifar10", root=str(tmp_path), batch_size=64)), world_size=3)


def _family_cfg(**data: object) -> RunCfg:
    fields = {
        "family": "onepfrac",
        "settings": dict(FAMILY_SETTINGS),
        "batch_size": 4,
        "samples_per_epoch": 16,
        "image_size": 16,
        **data,
    }
    return RunCfg(seed=3, data=DataCfg(**fields))  # type: ignore[arg-type]


def test_build_datamodule_family_source() -> None:
    dm, classes = build_datamodule(_family_cfg())
    assert isinstance(dm, FamilyDataModule) and classes == 8 and dm.batch_size == 4 and dm.image_size == 16
    images, labels = next(iter(dm.train_dataloader()))
    assert images.dtype == torch.uint8 and images.shape == (4, 1, 16, 16)  # drawn from the cache at 16 px
    x, y = dm.on_after_batch_transfer((images, labels), 0)  # no trainer: the eval transform
    assert x.shape == (4, 3, 16, 16) and x.dtype == torch.float32 and torch.equal(y, labels)
    x_train, _ = dm.augment_batch((images, labels), train=True, seed=0)
    assert x_train.shape == (4, 3, 16, 16) and not torch.equal(x_train, x)


def test_family_validation_set_is_fixed_and_held_out() -> None:
    dm, _ = build_datamodule(_family_cfg())
    first = list(dm.val_dataloader())
    labels = torch.cat([b[1] for b in first])
    assert labels.tolist() == list(range(8))
    again = torch.cat([b[0] for b in dm.val_dataloader()])
    assert torch.equal(torch.cat([b[0] for b in first]), again)
    train_sample = dm.dataset[0][0]  # type: ignore[index]
    val_same_class = again[labels.tolist().index(dm.dataset.labels([0])[0])]  # type: ignore[union-attr]
    assert not torch.equal(train_sample, val_same_class)  # a fresh render of the class, not a training one
    few = FamilyDataModule("onepfrac", FAMILY_SETTINGS, val_classes=3, batch_size=4, samples_per_epoch=16)
    assert torch.cat([b[1] for b in few.val_dataloader()]).tolist() == [0, 4, 7]


class _Probe(L.LightningModule):
    """Records the batches Lightning hands to the steps."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(3 * 16 * 16, 8)
        self.seen: list[tuple[str, torch.Size, torch.dtype]] = []

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        self.seen.append(("train", batch[0].shape, batch[0].dtype))
        return torch.nn.functional.cross_entropy(self.layer(batch[0].flatten(1)), batch[1])

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self.seen.append(("val", batch[0].shape, batch[0].dtype))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.filterwarnings("ignore:The '(train|val)_dataloader' does not have many workers")
@pytest.mark.filterwarnings(r"ignore:`isinstance\(treespec, LeafSpec\)` is deprecated:FutureWarning")
@pytest.mark.parametrize(("precision", "dtype"), [("32-true", torch.float32), ("bf16-true", torch.bfloat16)])
def test_family_datamodule_augments_on_the_device_in_fit(precision: str, dtype: torch.dtype) -> None:
    dm, _ = build_datamodule(_family_cfg())
    seeds: list[int | None] = []
    original = dm._batch_seed

    def spy() -> int | None:
        seeds.append(original())
        return seeds[-1]

    dm._batch_seed = spy  # type: ignore[method-assign]
    model = _Probe()
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_epochs=2, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=1, precision=precision,
    )  # fmt: skip
    trainer.fit(model, datamodule=dm)
    assert {(stage, shape, dtype) for stage, shape, dtype in model.seen} == {
        ("train", torch.Size([4, 3, 16, 16]), dtype),
        ("val", torch.Size([4, 3, 16, 16]), dtype),
    }
    assert len(seeds) == 8 and None not in seeds and len(set(seeds)) == 8  # 2 epochs x 4 batches, all distinct
