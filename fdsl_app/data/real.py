"""Fine-tuning data: CIFAR-10/100 (python-pickle folders), ImageNet-100 (a class list) and any class-per-folder set.

Every DataModule yields ``(float images (B, 3, S, S), int64 labels (B,))`` already augmented and normalised by the
timm/DeiT transform of :func:`~fdsl_app.data.augment.real_transforms` in the loader workers; the validation split
is the dataset's test/val split. Nothing is downloaded at run time: a missing dataset raises
:class:`DatasetNotFoundError`, which says where to put which archive. Each DataModule also says which data it
read (:meth:`RealDataModule.source_record`, ``data.json`` of a run): the MD5 of each CIFAR batch file against the
official ones; the ImageNet-100 class list, and the image counts found against the list's.
"""

from __future__ import annotations

import hashlib
import pickle
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.datasets import ImageFolder

from fdsl_app.config import AugmentCfg
from fdsl_app.data.augment import real_transforms
from fdsl_app.data.class_lists import ClassList, load_class_list
from fdsl_app.data.loader import make_loader
from fdsl_app.data.synthetic import EpochSampler, trainer_replicas
from fdsl_app.render.keys import sample_keys

CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"

Transform = Callable[[Image.Image], torch.Tensor]


class DatasetNotFoundError(FileNotFoundError, ValueError):
    """A dataset folder or file is missing (a ValueError too, as every config-driven failure of the app)."""


def imagenet100_wnids(class_list: str | Path = "cmc") -> list[str]:
    """The WordNet ids of an ImageNet-100 class list (default: Tian et al.'s CMC list), in label order."""
    return list(load_class_list(class_list).wnids)


class RealDataModule(L.LightningDataModule):
    """Shared loaders of the real datasets: shuffled, ``drop_last`` training batches; ordered validation batches.

    Args:
        root: the dataset folder (each subclass says what it expects inside).
        image_size: training and evaluation side S.
        augment: augmentation config (default: :class:`~fdsl_app.config.AugmentCfg`).
        batch_size: samples per batch and device.
        num_workers: loader worker processes (where the PIL transforms run).
        pin_memory: pin batches for faster host-to-GPU copies.
        persistent_workers: keep workers between epochs (ignored without workers).

    Raises:
        DatasetNotFoundError: the data is not where `root` says (checked at construction, before any training).
        ValueError: a loader setting is out of range.
    """

    name: ClassVar[str] = "dataset"

    def __init__(
        self,
        root: str | Path,
        *,
        image_size: int = 32,
        augment: AugmentCfg | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if batch_size < 1 or num_workers < 0 or image_size < 1:
            raise ValueError(
                f"batch_size and image_size must be >= 1 and num_workers >= 0, got {batch_size}, {image_size}, "
                f"{num_workers}"
            )
        self.root = Path(root).expanduser()
        self.seed = int(seed)  # training order per (seed, epoch)
        self.image_size = int(image_size)
        self.augment = augment if augment is not None else AugmentCfg()
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers and num_workers > 0
        self.train_set: Dataset[Any] | None = None
        self.val_set: Dataset[Any] | None = None

    @property
    def num_classes(self) -> int:
        raise NotImplementedError

    def make_dataset(self, train: bool, transform: Transform) -> Dataset[Any]:
        """The training or validation split with `transform` applied to each PIL image."""
        raise NotImplementedError

    def source_record(self) -> dict[str, Any]:
        """What data the splits read so far came from (a run's ``data.json``): dataset, root, image counts."""
        sizes = {split: len(data) if data is not None else None  # type: ignore[arg-type]
                 for split, data in (("train", self.train_set), ("val", self.val_set))}  # fmt: skip
        return {"dataset": self.name, "root": str(self.root), "images": sizes}

    def source_summary(self) -> tuple[str, bool]:
        """One line on the data read, and whether it is what the source expects (False: the line is a warning)."""
        images = self.source_record()["images"]
        found = ", ".join(f"{n:,} {split}" for split, n in images.items() if n is not None)
        return f"{self.name}: {found or 'no'} images from {self.root}", True

    def setup(self, stage: str | None = None) -> None:
        """Read the splits a stage needs (once; validation for every stage, training for fit)."""
        if self.val_set is None:
            self.val_set = self.make_dataset(False, real_transforms(self.augment, self.image_size, train=False))
        if self.train_set is None and stage in (None, "fit"):
            self.train_set = self.make_dataset(True, real_transforms(self.augment, self.image_size, train=True))

    def train_dataloader(self) -> DataLoader:
        self.setup("fit")
        assert self.train_set is not None
        if len(self.train_set) < self.batch_size:  # type: ignore[arg-type]
            raise ValueError(
                f"{self.name}: batch size {self.batch_size} exceeds the {len(self.train_set)} training images "  # type: ignore[arg-type]
                "(drop_last would leave no batch); lower data.batch_size"
            )
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        self.setup("validate")
        assert self.val_set is not None
        return self._loader(self.val_set, train=False)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()

    def _loader(self, dataset: Dataset[Any], *, train: bool) -> DataLoader:
        # Training order from an EpochSampler: a pure function of (seed, epoch), sharded over ranks, and able to
        # start mid-epoch, so a resumed run sees the batches an uninterrupted run would.
        sampler = None
        if train:
            dataset = SampleSeeded(dataset, self.seed)
            sampler = EpochSampler(dataset, seed=self.seed, drop_last=True, **trainer_replicas(self.trainer))
        return make_loader(
            dataset, batch_size=self.batch_size, seed=self.seed, sampler=sampler, drop_last=train,
            num_workers=self.num_workers, pin_memory=self.pin_memory, persistent_workers=self.persistent_workers,
        )  # fmt: skip


class SampleSeeded(Dataset[Any]):
    """Training samples whose random augmentation is a pure function of (seed, epoch, index).

    Takes the EpochSampler's ``epoch * len + i`` and runs item ``i``'s transform with Python's, numpy's and torch's
    CPU generators seeded from the sample's key, restoring the caller's generators afterwards. So any number of
    workers or ranks, and a run resumed mid-epoch, draw the same crop, flip and RandAugment for the same sample, and
    no two ranks share an augmentation stream.
    """

    def __init__(self, dataset: Dataset[Any], seed: int) -> None:
        self.dataset = dataset
        self.seed = int(seed)
        self.length = len(dataset)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Any:
        epoch, i = divmod(int(index), self.length)
        key = int(sample_keys(self.seed, epoch, np.array([i], dtype=np.uint64))[0])
        python_state, numpy_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):  # CPU only: CUDA generators are left alone
            random.seed(key)
            np.random.seed(key & 0xFFFFFFFF)
            torch.default_generator.manual_seed(key >> 1)
            item = self.dataset[i]
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        return item


class ArrayImageDataset(Dataset[tuple[torch.Tensor, int]]):
    """Images held as a uint8 ``(N, H, W, 3)`` array, transformed as PIL images on access."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Transform) -> None:
        self.images = images
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.images[index])), int(self.labels[index])


class CIFAR10DataModule(RealDataModule):
    """CIFAR-10 from the python version: ``root/cifar-10-batches-py/{data_batch_1..5, test_batch}``.

    `root` may also be the ``cifar-10-batches-py`` folder itself. Validation is the 10,000-image test batch.
    """

    name = "CIFAR-10"
    folder = "cifar-10-batches-py"
    archive = "cifar-10-python.tar.gz"
    train_files: tuple[str, ...] = tuple(f"data_batch_{i}" for i in range(1, 6))
    test_files: tuple[str, ...] = ("test_batch",)
    label_key = "labels"
    classes = 10
    # MD5 of each batch file of the official python-version archive, as torchvision's CIFAR10 checks them
    # (torchvision/datasets/cifar.py).
    official_md5: ClassVar[dict[str, str]] = {
        "data_batch_1": "c99cafc152244af753f735de768cd75f",
        "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
        "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
        "data_batch_4": "634d18415352ddfa80567beed471001a",
        "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
        "test_batch": "40351d587109b95175f43aff81a1287e",
    }

    def __init__(self, root: str | Path, **kwargs: Any) -> None:
        super().__init__(root, **kwargs)
        self.folder_path = self._find_folder()
        self.file_md5: dict[str, str] = {}  # file name -> MD5 of the bytes read, filled as files are read

    @property
    def num_classes(self) -> int:
        return self.classes

    def make_dataset(self, train: bool, transform: Transform) -> Dataset[Any]:
        images, labels = self.read_split(train)
        return ArrayImageDataset(images, labels, transform)

    def read_split(self, train: bool) -> tuple[np.ndarray, np.ndarray]:
        """uint8 images ``(N, 32, 32, 3)`` and int64 labels ``(N,)`` of the training or test files."""
        parts = [self._read_file(self.folder_path / name) for name in (self.train_files if train else self.test_files)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def source_record(self) -> dict[str, Any]:
        """As the base record, plus the folder and each file read: its MD5 and whether it is the official file's."""
        files = {name: {"md5": md5, "official": md5 == self.official_md5.get(name)}
                 for name, md5 in sorted(self.file_md5.items())}  # fmt: skip
        return {
            **super().source_record(), "folder": str(self.folder_path), "archive": self.archive, "files": files,
            "official": bool(files) and all(f["official"] for f in files.values()),
            "official_md5_from": "torchvision/datasets/cifar.py",
        }  # fmt: skip

    def source_summary(self) -> tuple[str, bool]:
        files = self.source_record()["files"]
        differ = [name for name, f in files.items() if not f["official"]]
        if not differ:
            count = f"{len(files)} file{'s' if len(files) != 1 else ''}"
            return f"{self.name}: {count} read from {self.folder_path}, MD5s as the official {self.archive}", True
        return (f"{self.name}: {len(differ)} of the {len(files)} files read from {self.folder_path} are not the "
                f"official {self.archive} batches ({', '.join(differ)}: MD5s in data.json)"), False  # fmt: skip

    def _find_folder(self) -> Path:
        for candidate in (self.root / self.folder, self.root):
            if all((candidate / name).is_file() for name in (*self.train_files, *self.test_files)):
                return candidate
        folder = self.root if self.root.name == self.folder else self.root / self.folder
        missing = [name for name in (*self.train_files, *self.test_files) if not (folder / name).is_file()]
        parent = folder.parent
        raise DatasetNotFoundError(
            f"{self.name} not found: expected the folder {folder} with {', '.join(missing)} (python version). "
            f"Download {self.archive} from {CIFAR_URL} and extract it into {parent} (it creates {self.folder}/); "
            f"nothing is downloaded at run time"
        )

    def _read_file(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        """One pickled batch: ``data`` uint8 (N, 3072) in R, G, B planes, and its labels."""
        hint = f"re-extract {self.archive} from {CIFAR_URL}"
        try:
            raw = path.read_bytes()
            # latin1: the official files are Python 2 pickles holding numpy arrays (torchvision does the same).
            entry = pickle.loads(raw, encoding="latin1")
        except Exception as err:  # unpickling garbage raises anything from EOFError to KeyError
            raise ValueError(
                f"{self.name} file {path} is corrupt or not a CIFAR python pickle ({err}); {hint}"
            ) from err
        if not isinstance(entry, dict):
            raise ValueError(f"{self.name} file {path} holds a {type(entry).__name__}, not a CIFAR batch dict; {hint}")
        entry = {key.decode("latin1") if isinstance(key, bytes) else key: value for key, value in entry.items()}
        if "data" not in entry or self.label_key not in entry:
            raise ValueError(
                f"{self.name} file {path} lacks the 'data' or {self.label_key!r} entry (has {sorted(entry)}); {hint}"
            )
        data = np.asarray(entry["data"])
        labels = np.asarray(entry[self.label_key], dtype=np.int64)
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
            raise ValueError(
                f"{self.name} file {path}: expected uint8 data (N, 3072) and N labels, got {data.dtype} "
                f"{data.shape} and {labels.shape[0]} labels; {hint}"
            )
        if labels.size and not (0 <= labels.min() and labels.max() < self.classes):
            raise ValueError(f"{self.name} file {path}: labels outside 0..{self.classes - 1}; {hint}")
        self.file_md5[path.name] = hashlib.md5(raw, usedforsecurity=False).hexdigest()
        return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), labels


class CIFAR100DataModule(CIFAR10DataModule):
    """CIFAR-100 from the python version: ``root/cifar-100-python/{train, test}``, fine labels (100 classes).

    `root` may also be the ``cifar-100-python`` folder itself.
    """

    name = "CIFAR-100"
    folder = "cifar-100-python"
    archive = "cifar-100-python.tar.gz"
    train_files = ("train",)
    test_files = ("test",)
    label_key = "fine_labels"
    classes = 100
    official_md5 = {"train": "16019d7e3df5f24257cddd939b257f8d", "test": "f0ef6b0ae62326f3e7ffdfab6717acfc"}


class FixedClassFolder(ImageFolder):
    """An ImageFolder over a given class list: label = index in `classes`; class folders absent on disk are skipped.

    Other folders under the root are ignored (an ImageNet-1k train folder serves ImageNet-100).
    """

    def __init__(self, root: str | Path, classes: list[str], transform: Transform | None = None) -> None:
        self._class_list = list(classes)
        super().__init__(str(root), transform=transform)

    def find_classes(self, directory: str | Path) -> tuple[list[str], dict[str, int]]:
        present = [name for name in self._class_list if (Path(directory) / name).is_dir()]
        return present, {name: self._class_list.index(name) for name in present}


class FolderDataModule(RealDataModule):
    """Any class-per-folder set: ``root/train/<class>/<image>`` and ``root/val/<class>/<image>``.

    Classes are the sorted folder names of ``train``; ``val`` may lack some but may not add any.
    """

    name = "folder dataset"

    def __init__(self, root: str | Path, **kwargs: Any) -> None:
        super().__init__(root, **kwargs)
        self.classes = self._find_classes()

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def make_dataset(self, train: bool, transform: Transform) -> Dataset[Any]:
        return FixedClassFolder(self.root / ("train" if train else "val"), self.classes, transform)

    def _find_classes(self) -> list[str]:
        train, val = _split_dirs(self.root, self.name, "root/train/<class>/<image> and root/val/<class>/<image>")
        classes = sorted(p.name for p in train.iterdir() if p.is_dir())
        if not classes:
            raise DatasetNotFoundError(f"{self.name}: {train} has no class folders (<class>/<image>)")
        extra = sorted(p.name for p in val.iterdir() if p.is_dir() and p.name not in set(classes))
        if extra:
            raise ValueError(f"{self.name}: {val} has class folders that {train} lacks: {', '.join(extra)}")
        return classes


class ImageNet100DataModule(RealDataModule):
    """ImageNet-100 from an ImageNet folder: the classes of a class list (:mod:`~fdsl_app.data.class_lists`).

    Expects ``root/train/<wnid>/*.JPEG`` and ``root/val/<wnid>/*.JPEG`` (validation re-foldered by class, as for
    ImageFolder); other class folders (the rest of ImageNet-1k) are ignored. Label = index of the wnid in the list.
    `class_list`: a shipped list's name (``cmc``, Tian et al.'s CMC list, the default) or a list file's path. A
    missing class folder is an error; image counts that differ from the list's (a partial copy, or another list's
    data) make :meth:`source_summary` a warning (the run logs it once, at start-up) and :meth:`source_record` keeps
    both.
    """

    name = "ImageNet-100"

    def __init__(self, root: str | Path, *, class_list: str | Path = "cmc", **kwargs: Any) -> None:
        super().__init__(root, **kwargs)
        self.class_list: ClassList = load_class_list(class_list)
        self.wnids = list(self.class_list.wnids)
        for split in _split_dirs(self.root, self.name, "root/train/<wnid>/*.JPEG and root/val/<wnid>/*.JPEG"):
            missing = [wnid for wnid in self.wnids if not (split / wnid).is_dir()]
            if missing:
                raise DatasetNotFoundError(
                    f"{self.name}: {len(missing)} of the {len(self.wnids)} class folders of class list "
                    f"{self.class_list.name} are missing under {split}: {' '.join(missing)} (the list is "
                    f"{self.class_list.path}; copy or symlink those ImageNet-1k class folders, validation images "
                    "sorted into class folders, or choose the list of your copy with data.class_list)"
                )

    @property
    def num_classes(self) -> int:
        return len(self.wnids)

    def make_dataset(self, train: bool, transform: Transform) -> Dataset[Any]:
        return FixedClassFolder(self.root / ("train" if train else "val"), self.wnids, transform)

    def _count_problem(self, split: str, found: int) -> str | None:
        expected = self.class_list.expected(split)
        if expected is None or found == expected:
            return None
        return (f"{found:,} {split} images under {self.root / split}, but class list {self.class_list.name} has "
                f"{expected:,} (a partial copy, or another list's data? see data.class_list)")  # fmt: skip

    def source_record(self) -> dict[str, Any]:
        """As the base record, plus the class list (name, source, wnids, expected counts) and whether the counts
        found match it."""
        record = super().source_record()
        found = {split: n for split, n in record["images"].items() if n is not None}
        matches = all(self.class_list.expected(split) in (None, n) for split, n in found.items())
        return {**record, "class_list": self.class_list.record(), "counts_match": matches}

    def source_summary(self) -> tuple[str, bool]:
        found = {split: n for split, n in self.source_record()["images"].items() if n is not None}
        problems = [p for p in (self._count_problem(split, n) for split, n in found.items()) if p]
        head = f"{self.name} (class list {self.class_list.name}, {len(self.wnids)} classes)"
        if problems:
            return f"{head}: {'; '.join(problems)}", False
        counts = " and ".join(f"{n:,} {split}" for split, n in found.items())
        checked = "as the list has" if any(self.class_list.expected(s) is not None for s in found) else \
            "(the list states no counts)"  # fmt: skip
        return f"{head}: {counts} images under {self.root}, {checked}", True


def _split_dirs(root: Path, name: str, layout: str) -> tuple[Path, Path]:
    """``root/train`` and ``root/val``, or DatasetNotFoundError saying which is missing and the expected layout."""
    missing = [str(root / split) for split in ("train", "val") if not (root / split).is_dir()]
    if missing:
        raise DatasetNotFoundError(f"{name} not found: {' and '.join(missing)} missing; expected {layout}")
    return root / "train", root / "val"


REAL_DATAMODULES: dict[str, type[RealDataModule]] = {
    "cifar10": CIFAR10DataModule,
    "cifar100": CIFAR100DataModule,
    "imagenet100": ImageNet100DataModule,
    "folder": FolderDataModule,
}
