"""Fine-tuning data: CIFAR-10/100 (python-pickle folders), ImageNet-100 (a class list) and any class-per-folder set.

Every DataModule yields ``(float images (B, 3, S, S), int64 labels (B,))`` already augmented and normalised by the
timm/DeiT transform of :func:`~fdsl_app.data.augment.real_transforms` in the loader workers. Three disjoint splits
(:func:`split_sources`): ``test`` is the dataset's held-out split (CIFAR's test batch, ImageNet's val folder, a
folder set's ``test/`` or else ``val/``), ``val`` (checkpoint selection) is a folder set's ``val/`` next to a
``test/``, else a share of the training images carved out with a fixed seed. Nothing is downloaded at run time: a
missing dataset raises :class:`DatasetNotFoundError`, which says where to put which archive. Each DataModule also
says which data it read (:meth:`RealDataModule.source_record`, ``data.json`` of a run): the MD5 of each CIFAR batch
file against the official ones; the ImageNet-100 class list, and the image counts found against the list's.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision.datasets import ImageFolder

from fdsl_app.config import AugmentCfg
from fdsl_app.data.augment import real_transforms
from fdsl_app.data.class_lists import ClassList, load_class_list
from fdsl_app.data.loader import make_loader
from fdsl_app.data.synthetic import EpochSampler, trainer_replicas
from fdsl_app.render.keys import sample_keys

log = logging.getLogger("fdsl_app")

FEW_BATCHES = 4  # fewer training steps an epoch than this: warned (the schedule and the loss curve mean little)
DROPPED_SHARE = 0.1  # drop_last losing more than this share of an epoch's images: warned
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
        val_fraction: float = 0.1,
        split_seed: int = 0,
    ) -> None:
        super().__init__()
        if batch_size < 1 or num_workers < 0 or image_size < 1:
            raise ValueError(
                f"batch_size and image_size must be >= 1 and num_workers >= 0, got {batch_size}, {image_size}, "
                f"{num_workers}"
            )
        if not 0 < val_fraction < 1:
            raise ValueError(f"data.val_fraction must be in (0, 1) (the share of training images held out), "
                             f"got {val_fraction}")  # fmt: skip
        self.val_fraction = float(val_fraction)
        self.split_seed = int(split_seed)  # the carved splits depend on it alone, not on the training seed
        self._carved: dict[str, np.ndarray] | None = None
        self._warned_small = False
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
        self.test_set: Dataset[Any] | None = None

    @property
    def num_classes(self) -> int:
        raise NotImplementedError

    def disk_splits(self) -> tuple[str, ...]:
        """The splits the dataset has on disk, among ``train`` (always), ``val`` and ``test``."""
        raise NotImplementedError

    def read_split(self, split: str, transform: Transform) -> Dataset[Any]:
        """On-disk split `split` (one of :meth:`disk_splits`) with `transform` applied to each PIL image; it has
        ``labels`` or ``targets`` (the label of each item, in order)."""
        raise NotImplementedError

    def split_sources(self) -> dict[str, str]:
        """Where ``val`` and ``test`` come from: an on-disk split's name, or ``carved`` (from the training images)."""
        return split_sources(self.disk_splits())

    def carved_indices(self) -> dict[str, np.ndarray]:
        """Indices into the on-disk training split of each split that uses it (``train``, and ``val``/``test``
        where carved), disjoint; a function of (labels, val_fraction, split_seed) only."""
        if self._carved is None:
            sources = self.split_sources()
            labels = _labels(self.read_split("train", _no_transform))
            parts = {"train": np.arange(len(labels))}
            rng = np.random.default_rng(self.split_seed)
            for split in ("test", "val"):  # the test images first, so that val_fraction does not change them
                if sources[split] == "carved":
                    rest, held = carve(labels[parts["train"]], self.val_fraction, rng)
                    parts[split] = parts["train"][held]
                    parts["train"] = parts["train"][rest]
            if len(parts["train"]) == 0:
                raise ValueError(f"{self.name}: carving val/test from its {len(labels)} training images leaves none "
                                 "to train on; add images or lower data.val_fraction")  # fmt: skip
            self._carved = parts
        return self._carved

    def make_dataset(self, split: str, transform: Transform) -> Dataset[Any]:
        """Split ``train``, ``val`` or ``test`` with `transform` applied to each PIL image."""
        source = "train" if split == "train" else self.split_sources()[split]
        if source == "carved" or (split == "train" and source == "train"):
            return Subset(self.read_split("train", transform), self.carved_indices()[split].tolist())
        return self.read_split(source, transform)

    def source_record(self) -> dict[str, Any]:
        """What data the splits read so far came from (a run's ``data.json``): dataset, root, image counts."""
        sizes = {split: len(data) if data is not None else None  # type: ignore[arg-type]
                 for split, data in (("train", self.train_set), ("val", self.val_set), ("test", self.test_set))}
        return {"dataset": self.name, "root": str(self.root), "images": sizes, "split_sources": self.split_sources()}

    def source_summary(self, record: dict[str, Any] | None = None) -> tuple[str, bool]:
        """One line on the data read (`record`: its :meth:`source_record`, made now if not given), and whether it is
        what the source expects (False: the line is a warning)."""
        images = (record or self.source_record())["images"]
        found = ", ".join(f"{n:,} {split}" for split, n in images.items() if n is not None)
        return f"{self.name}: {found or 'no'} images from {self.root}", True

    def setup(self, stage: str | None = None) -> None:
        """Read the splits a stage needs (once): validation for fit and validate, test for test, training for fit."""
        evaluation = real_transforms(self.augment, self.image_size, train=False)
        if self.val_set is None and stage in (None, "fit", "validate"):
            self.val_set = self.make_dataset("val", evaluation)
        if self.test_set is None and stage in (None, "test"):
            self.test_set = self.make_dataset("test", evaluation)
        if self.train_set is None and stage in (None, "fit"):
            self.train_set = self.make_dataset("train", real_transforms(self.augment, self.image_size, train=True))

    def train_dataloader(self) -> DataLoader:
        self.setup("fit")
        assert self.train_set is not None
        if len(self.train_set) < self.batch_size:  # type: ignore[arg-type]
            raise ValueError(
                f"{self.name}: batch size {self.batch_size} exceeds the {len(self.train_set)} training images "  # type: ignore[arg-type]
                "(drop_last would leave no batch); lower data.batch_size"
            )
        loader = self._loader(self.train_set, train=True)
        if not self._warned_small:
            self._warned_small = True
            replicas = getattr(loader.sampler, "num_replicas", 1)
            for line in small_data_warnings(self.name, len(self.train_set), loader.batch_size, replicas):  # type: ignore[arg-type]
                log.warning(line)
        return loader

    def val_dataloader(self) -> DataLoader:
        self.setup("validate")
        assert self.val_set is not None
        return self._loader(self.val_set, train=False)

    def test_dataloader(self) -> DataLoader:
        self.setup("test")
        assert self.test_set is not None
        return self._loader(self.test_set, train=False)

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


def split_sources(disk: tuple[str, ...]) -> dict[str, str]:
    """The rule of the held-out splits: test is ``test/`` if there is one, else ``val/`` (the split papers report
    on), else carved from train; val is ``val/`` where it is not the test split, else carved from train."""
    test = "test" if "test" in disk else "val" if "val" in disk else "carved"
    return {"test": test, "val": "val" if "val" in disk and test != "val" else "carved"}


def carve(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(kept, held)`` of `labels`: `fraction` of each class held out (rounded; at least one image in
    all), chosen by `rng`; both sorted."""
    held: list[np.ndarray] = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        held.append(members[: int(round(fraction * len(members)))])
    chosen = np.concatenate(held) if held else np.zeros(0, dtype=np.int64)
    if len(chosen) == 0 and len(labels) > 1:
        chosen = rng.permutation(len(labels))[:1]
    mask = np.zeros(len(labels), dtype=bool)
    mask[chosen] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def small_data_warnings(name: str, images: int, batch_size: int, replicas: int = 1) -> list[str]:
    """Warnings for a training split too small for its batch: fewer than FEW_BATCHES steps an epoch, or drop_last
    losing more than DROPPED_SHARE of the images every epoch."""
    steps = images // replicas // batch_size
    dropped = images - steps * batch_size * replicas
    lines = []
    if steps < FEW_BATCHES:
        lines.append(f"{name}: {images} training images make {steps} step(s) an epoch at batch {batch_size} x "
                     f"{replicas} device(s); lower data.batch_size for a meaningful schedule")  # fmt: skip
    if dropped > DROPPED_SHARE * images:
        lines.append(f"{name}: drop_last leaves out {dropped} of {images} training images ({100 * dropped / images:.0f}"
                     f"%) every epoch; pick a data.batch_size that divides {images // replicas}")  # fmt: skip
    return lines


def _labels(dataset: Dataset[Any]) -> np.ndarray:
    return np.asarray(dataset.labels if isinstance(dataset, ArrayImageDataset) else dataset.targets)  # type: ignore[attr-defined]


def _no_transform(image: Image.Image) -> Image.Image:
    return image


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

    `root` may also be the ``cifar-10-batches-py`` folder itself. Test is the 10,000-image test batch; validation
    is carved from the training batches.
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
        self._arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.file_md5: dict[str, str] = {}  # file name -> MD5 of the bytes read, filled as files are read

    @property
    def num_classes(self) -> int:
        return self.classes

    def disk_splits(self) -> tuple[str, ...]:
        return ("train", "test")

    def read_split(self, split: str, transform: Transform) -> Dataset[Any]:
        if split not in self._arrays:  # read once: train serves the training and the carved validation split
            self._arrays[split] = self.read_arrays(split == "train")
        return ArrayImageDataset(*self._arrays[split], transform)

    def read_arrays(self, train: bool) -> tuple[np.ndarray, np.ndarray]:
        """uint8 images ``(N, 32, 32, 3)`` and int64 labels ``(N,)`` of the training or test files."""
        parts = [self._read_file(self.folder_path / name) for name in (self.train_files if train else self.test_files)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def source_record(self) -> dict[str, Any]:
        """As the base record, plus the folder and each file of the dataset (those no split has read yet are read
        now, so the record is whole at start-up): its MD5 and whether it is the official file's."""
        for name in (*self.train_files, *self.test_files):
            if name not in self.file_md5:
                raw = (self.folder_path / name).read_bytes()
                self.file_md5[name] = hashlib.md5(raw, usedforsecurity=False).hexdigest()
        files = {name: {"md5": md5, "official": md5 == self.official_md5.get(name)}
                 for name, md5 in sorted(self.file_md5.items())}  # fmt: skip
        return {
            **super().source_record(), "folder": str(self.folder_path), "archive": self.archive, "files": files,
            "official": bool(files) and all(f["official"] for f in files.values()),
            "official_md5_from": "torchvision/datasets/cifar.py",
        }  # fmt: skip

    def source_summary(self, record: dict[str, Any] | None = None) -> tuple[str, bool]:
        files = (record or self.source_record())["files"]
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
    """Any class-per-folder set: ``root/train/<class>/<image>``, and ``root/val/`` and/or ``root/test/`` alike.

    Classes are the sorted folder names of ``train``; ``val`` and ``test`` may lack some but may not add any. Test is
    ``test/``, else ``val/``, else carved from train; validation is ``val/`` next to a ``test/``, else carved from
    train (:func:`split_sources`).
    """

    name = "folder dataset"

    def __init__(self, root: str | Path, **kwargs: Any) -> None:
        super().__init__(root, **kwargs)
        self.classes = self._find_classes()

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def disk_splits(self) -> tuple[str, ...]:
        return tuple(split for split in ("train", "val", "test") if (self.root / split).is_dir())

    def read_split(self, split: str, transform: Transform) -> Dataset[Any]:
        return FixedClassFolder(self.root / split, self.classes, transform)

    def _find_classes(self) -> list[str]:
        train = self.root / "train"
        if not train.is_dir():
            raise DatasetNotFoundError(f"{self.name} not found: {train} missing; expected root/train/<class>/<image> "
                                       "(and root/val/, root/test/ alike)")  # fmt: skip
        classes = sorted(p.name for p in train.iterdir() if p.is_dir())
        if not classes:
            raise DatasetNotFoundError(f"{self.name}: {train} has no class folders (<class>/<image>)")
        for split in self.disk_splits()[1:]:
            extra = sorted(p.name for p in (self.root / split).iterdir() if p.is_dir() and p.name not in set(classes))
            if extra:
                raise ValueError(f"{self.name}: {self.root / split} has class folders that {train} lacks: "
                                 f"{', '.join(extra)}")  # fmt: skip
        return classes


class ImageNet100DataModule(RealDataModule):
    """ImageNet-100 from an ImageNet folder: the classes of a class list (:mod:`~fdsl_app.data.class_lists`).

    Expects ``root/train/<wnid>/*.JPEG`` and ``root/val/<wnid>/*.JPEG`` (validation re-foldered by class, as for
    ImageFolder); other class folders (the rest of ImageNet-1k) are ignored. Label = index of the wnid in the list.
    Test is ImageNet's val folder (what the papers report); validation is carved from train.
    `class_list`: a shipped list's name (``cmc``, Tian et al.'s CMC list, the default) or a list file's path. A
    missing class folder is an error; image counts on disk that differ from the list's (a partial copy, or another
    list's data) make :meth:`source_summary` a warning (the run logs it once, at start-up) and :meth:`source_record`
    keeps both.
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

    def disk_splits(self) -> tuple[str, ...]:
        return ("train", "val")

    def read_split(self, split: str, transform: Transform) -> Dataset[Any]:
        return FixedClassFolder(self.root / split, self.wnids, transform)

    def disk_counts(self) -> dict[str, int]:
        """Images of the list's classes in each on-disk folder (train, val), whatever the carving."""
        return {split: len(self.read_split(split, _no_transform)) for split in self.disk_splits()}  # type: ignore[arg-type]

    def _count_problem(self, split: str, found: int) -> str | None:
        expected = self.class_list.expected(split)
        if expected is None or found == expected:
            return None
        return (f"{found:,} {split} images under {self.root / split}, but class list {self.class_list.name} has "
                f"{expected:,} (a partial copy, or another list's data? see data.class_list)")  # fmt: skip

    def source_record(self) -> dict[str, Any]:
        """As the base record, plus the class list (name, source, wnids, expected counts), the images found in each
        folder, and whether they match the list's counts."""
        found = self.disk_counts()
        matches = all(self.class_list.expected(split) in (None, n) for split, n in found.items())
        return {**super().source_record(), "class_list": self.class_list.record(), "images_on_disk": found,
                "counts_match": matches}  # fmt: skip

    def source_summary(self, record: dict[str, Any] | None = None) -> tuple[str, bool]:
        found = (record or self.source_record())["images_on_disk"]
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
