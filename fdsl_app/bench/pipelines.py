"""The loaders ``fdsl_app bench loaders`` compares and the small dataset it exports for them (timing: steps.py).

Every loader yields the same samples of one family: ``export_dataset`` writes sample ``i`` rendered from the key of
(seed, epoch 0, i), which is exactly what ``FormulaDataset(family, params, seed)[i]`` renders, so the file-based
loaders (a) and (b) read the very images the rendering loaders (c) and (d) draw. The family is set up so that one
pass over it is exactly the benchmark's sample count (``classes = samples / instances_per_class``).

Loaders, all shuffled, ``batch_size`` B, nothing dropped, torch's default prefetching, workers started per epoch:

- (a) ``torchvision.datasets.ImageFolder`` over PNG class folders, timm/DeiT transform per sample;
- (b) ``webdataset.WebDataset`` over tar shards of the same PNGs (shards split over workers, shard shuffle and a
  sample shuffle buffer), timm/DeiT transform per sample, batched inside the worker;
- (c) :class:`RenderedDataset`: each batch rendered in the worker with one ``family.render`` call, then the
  timm/DeiT transform per sample (PIL), as (a);
- (d) the training path: ``FamilyDataModule.train_dataloader()`` (batched uint8 renders in shared memory), then
  the copy to the training device and its ``DeviceAugment`` per batch, both timed as part of every step;
- (e), (ej), (f): FFCV and DALI, in :mod:`fdsl_app.bench.peers`.

On a CUDA device every loader's batches are copied there from pinned memory, inside the timed step.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, default_collate
from torchvision import transforms as T
from torchvision.datasets import ImageFolder

from fdsl_app import render
from fdsl_app.bench import peers
from fdsl_app.bench.steps import Batch, to_device
from fdsl_app.config import AugmentCfg
from fdsl_app.data.augment import real_transforms
from fdsl_app.data.datamodule import FamilyDataModule
from fdsl_app.data.export import export_dataset
from fdsl_app.data.synthetic import EpochSampler, FormulaDataset
from fdsl_app.families import ClassParams, Family, create_family, load_params
from fdsl_app.families.base import RENDER_SETTINGS
from fdsl_app.families.params_io import save_params

WDS_SHUFFLE = 1000  # WebDataset sample shuffle buffer (its default)


@dataclass(frozen=True)
class BenchData:
    """The exported dataset every loader reads or renders.

    Attributes:
        family, params: the family (one pass = the benchmark's samples) and its class parameters.
        root: folder holding ``params.npz``, ``png/`` (class folders) and ``wds/`` (tar shards).
        seed: sample-key seed of the export and of the rendering loaders.
        export_seconds: time spent generating parameters and writing files in this run.
        written: images written in this run, PNG files and shard members (0 when everything was reused).
    """

    family: Family
    params: ClassParams
    root: Path
    seed: int
    export_seconds: float
    written: int
    cache_seconds: float = 0.0  # building (or mapping) the attractor cache of mode cached, in this run

    @property
    def params_path(self) -> Path:
        return self.root / "params.npz"

    @property
    def png_dir(self) -> Path:
        return self.root / "png"

    @property
    def wds_dir(self) -> Path:
        return self.root / "wds"

    def shards(self) -> list[str]:
        return sorted(str(p) for p in self.wds_dir.glob("shard-*.tar"))


def make_family(name: str, settings: dict[str, Any], samples: int) -> Family:
    """The family `name` with `settings`, its class count set so that one pass is exactly `samples` samples.

    Raises:
        ValueError: the family has no ``classes`` setting, or `samples` is not a multiple of its instances per class.
    """
    probe = create_family(name, **settings)
    if "classes" not in probe.describe():
        raise ValueError(f"family {name!r} has no 'classes' setting to size the benchmark dataset with")
    per_class = probe.instances_per_class
    if samples % per_class:
        raise ValueError(
            f"--samples {samples} must be a multiple of {name}'s {per_class} instances per class (one pass over the "
            f"family is the benchmark's epoch); change --samples or the family's instances with --set"
        )
    return create_family(name, **{**settings, "classes": samples // per_class})


def auto_shard_size(samples: int) -> int:
    """Samples per WebDataset shard: about 32 shards for small runs (enough for 16 workers), 1000 for large ones."""
    return min(1000, max(8, math.ceil(samples / 32)))


def prepare_data(
    family: Family, root: Path, *, seed: int, formats: Sequence[str] = (), shard_size: int = 8
) -> BenchData:
    """Generate (or reuse) the class parameters and export the PNG folders under `root`, plus the copies the loaders
    in `formats` read: "b" WebDataset shards, "e" / "ej" FFCV ``.beton`` files (raw / JPEG).

    Everything is resumable and checked: a folder made with other settings is refused with the setting named.
    """
    start = time.perf_counter()
    root.mkdir(parents=True, exist_ok=True)
    params = _params(family, root / "params.npz", seed)
    cache_start = time.perf_counter()
    family.prepare(params, cache_dir=root / "cache")  # the export's images and loader (g) draw from it
    cache_seconds = time.perf_counter() - cache_start
    written = export_dataset(family, params, root / "png", fmt="png", seed=seed, progress=False).written
    if "b" in formats:
        result = export_dataset(
            family, params, root / "wds", fmt="webdataset", seed=seed, shard_size=shard_size, progress=False
        )
        written += result.written
    betons = [key for key in formats if key in peers.FFCV_MODES]
    if betons:
        written += peers.write_betons(root / "png", root, betons, workers=render.cpu_count())
    return BenchData(family, params, root, seed, time.perf_counter() - start - cache_seconds, written, cache_seconds)


def _params(family: Family, path: Path, seed: int) -> ClassParams:
    if not path.exists():
        params = family.generate(seed)
        save_params(params, path)
        return params
    params = load_params(path, family=family.name)
    try:
        family.check_params(params)
    except ValueError as err:
        raise ValueError(f"--data {path.parent} holds a dataset made with other settings ({err}); "
                         "choose another folder or delete it") from None  # fmt: skip
    if params.seed != seed:
        raise ValueError(f"--data {path.parent} holds parameters of seed {params.seed}, not --seed {seed}")
    return params


# --- the loaders --------------------------------------------------------------------------------------------------


def imagefolder_dataset(data: BenchData, transform: Callable | None = None) -> ImageFolder:
    """(a): the PNG class folders; without `transform` it yields the RGB PIL images as read."""
    return ImageFolder(str(data.png_dir), transform=transform)


class RenderedDataset(Dataset):
    """(c): samples rendered on the fly, then a per-sample PIL transform, as a file-based loader would apply it.

    A batch of indices (the DataLoader's ``__getitems__``) is rendered with one ``family.render`` call (one thread
    inside a worker); each image becomes an RGB PIL image (gray is replicated, as ``ImageFolder`` reads a gray PNG)
    and goes through `transform`. Without `transform` it yields those PIL images.
    """

    def __init__(self, data: BenchData, transform: Callable | None = None) -> None:
        self.renders = FormulaDataset(data.family, data.params, seed=data.seed, channels_first=False)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.renders)

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[Any, int]]:
        images, labels = self.renders.render_batch(indices)
        out = []
        for image, label in zip(images.numpy(), labels.tolist(), strict=True):
            pil = Image.fromarray(image).convert("RGB")
            out.append((self.transform(pil) if self.transform is not None else pil, label))
        return out

    def __getitem__(self, index: int) -> tuple[Any, int]:
        return self.__getitems__([index])[0]


@dataclass(frozen=True)
class PipelineSpec:
    """What every loader shares: output size, batch size, augmentation, seed, and the device batches go to."""

    size: int
    batch_size: int
    seed: int = 0
    augment: AugmentCfg = dataclasses.field(default_factory=AugmentCfg)
    device: str = "cpu"
    photometric: bool = True  # DeiT's RandAugment, normalisation and erasing; False: the crop and flips only

    @property
    def pin_memory(self) -> bool:
        return self.device.startswith("cuda")


def deit_transform(spec: PipelineSpec) -> Callable:
    """The per-sample PIL transform of the file-based loaders: timm's DeiT training transform, as real data gets it
    (:func:`~fdsl_app.data.augment.real_transforms`, which also gives its Posterize ops the 0-bit case that current
    Pillow refuses); without photometric augmentation, torchvision's random resized crop (bilinear) and flips to
    a uint8 tensor."""
    if spec.photometric:
        return real_transforms(spec.augment, spec.size, train=True)
    a = spec.augment
    return T.Compose([
        T.RandomResizedCrop(spec.size, scale=tuple(a.scale), interpolation=T.InterpolationMode.BILINEAR),
        T.RandomHorizontalFlip(a.hflip), T.RandomVerticalFlip(a.vflip), T.PILToTensor(),
    ])  # fmt: skip


def build_loader(
    kind: str, data: BenchData, spec: PipelineSpec, workers: int
) -> tuple[Iterable[Batch], Callable | None]:
    """Loader `kind` (a key of ``records.LOADERS``) with `workers` processes (threads for FFCV and DALI), and
    the per-batch step after it: the copy to ``spec.device`` (None on the CPU), then the batched augmentation of (d)
    and the peers (:mod:`fdsl_app.bench.peers`)."""
    if kind in ("d", "g"):
        return _datamodule_loader(data, spec, workers, mode="fast" if kind == "d" else "cached")
    if kind in peers.FFCV_MODES:
        return peers.ffcv_loader(peers.beton_path(data.root, kind), spec, workers)
    if kind == "f":
        return peers.dali_loader(data.png_dir, spec, workers)
    transform = deit_transform(spec)
    step = None if spec.device == "cpu" else functools.partial(to_device, device=spec.device)
    if kind == "b":
        return _webdataset_loader(data, spec, transform, workers), step
    if kind == "a":
        dataset: Dataset = imagefolder_dataset(data, transform)
        sampler = None
    elif kind == "c":
        dataset = RenderedDataset(data, transform)
        sampler = EpochSampler(dataset, seed=spec.seed)
    else:
        raise ValueError(f"no loader {kind!r} in this benchmark")
    loader = DataLoader(
        dataset, batch_size=spec.batch_size, shuffle=sampler is None, sampler=sampler, num_workers=workers,
        pin_memory=spec.pin_memory, generator=torch.Generator().manual_seed(spec.seed),
    )  # fmt: skip
    return loader, step


def _webdataset_loader(
    data: BenchData, spec: PipelineSpec, transform: Callable, workers: int, shards: list[str] | None = None
) -> DataLoader:
    """(b): ``wds.WebDataset``'s own stages (shard list shuffled per seed, split by worker, tar expansion, grouping
    by key, sample shuffle buffer, PIL decode), except that each shard is opened in a ``with`` block: webdataset
    leaves local shard files to the garbage collector, which warns."""
    import webdataset as wds
    from webdataset.tariterators import group_by_keys, tar_file_expander

    pipeline = wds.DataPipeline(
        wds.SimpleShardList(data.shards() if shards is None else shards, seed=spec.seed),
        wds.split_by_worker,
        _open_shards,
        tar_file_expander,
        group_by_keys,
        wds.shuffle(WDS_SHUFFLE, seed=spec.seed),
        wds.decode("pil"),
        wds.to_tuple("png", "cls"),
        wds.map_tuple(transform, int),
        wds.batched(spec.batch_size, collation_fn=default_collate, partial=True),
    )
    return DataLoader(pipeline, batch_size=None, num_workers=workers, pin_memory=spec.pin_memory)


def _open_shards(sources: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for source in sources:
        with open(source["url"], "rb") as stream:
            yield {"url": source["url"], "stream": stream}


def _datamodule_loader(data: BenchData, spec: PipelineSpec, workers: int, mode: str) -> tuple[DataLoader, Callable]:
    """(d) and (g): the training path, the FamilyDataModule's loader in `mode` (fast: crops and flips applied to the
    points of per-sample chains; cached: drawn from the attractor cache, in C++ in the loader), then the transfer and
    the batched photometric augmentation that Lightning's hook applies."""
    render_settings = {k: v for k, v in data.family.describe().items() if k in RENDER_SETTINGS} | {"mode": mode}
    module = FamilyDataModule(
        data.family.name, render_settings, augment=spec.augment, image_size=spec.size,
        params_path=str(data.params_path), seed=data.seed, batch_size=spec.batch_size, num_workers=workers,
        drop_last=False, val_classes=1, pin_memory=spec.pin_memory, draw="cpu", cache_dir=str(data.root / "cache"),
    )  # fmt: skip
    module.setup("fit")

    def augment(batch: Batch) -> Batch:  # what Lightning does: transfer, then on_after_batch_transfer
        batch = to_device(batch, spec.device)
        return module.augment_batch(batch, train=True) if spec.photometric else batch

    return module.train_dataloader(), augment


# --- timing -------------------------------------------------------------------------------------------------------


def warm_up(kind: str, data: BenchData, spec: PipelineSpec) -> None:
    """One untimed batch of loader `kind` in the main process: lazy imports, first calls and the page cache are paid
    before timing. WebDataset reads its first shard to the end instead (a stream left half-read stays open)."""
    if kind == "b":
        transform = deit_transform(spec)
        for _ in _webdataset_loader(data, spec, transform, 0, shards=data.shards()[:1]):
            pass
        return
    loader, step = build_loader(kind, data, spec, 0)
    for batch in loader:
        if step is not None:
            step(batch)
        break
