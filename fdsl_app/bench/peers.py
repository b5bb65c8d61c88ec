"""The peer loaders of ``fdsl_app bench loaders``: FFCV (e: raw pixels, ej: JPEG) and NVIDIA DALI (f).

Both read the very images (a) reads (the exported PNGs) and get augmentation equivalent to timm's DeiT transform,
each the way it is meant to be used:

- FFCV: ``.beton`` files of the PNG folders, written once next to the export (raw pixels for (e), JPEG quality 90
  for (ej)). Its decoder does the random resized crop (torchvision's box rule with the same scale and ratio range;
  OpenCV area resampling), then its horizontal flip; FFCV has no RandAugment or pixel-noise erasing, so the uint8
  batch gets RandAugment, normalisation and random erasing batched, as (d) does (``DeviceAugment`` with its geometry
  switched off).
- DALI: its file reader and image decoder, ``random_resized_crop`` (the same scale and ratio range), its flip, its
  own RandAugment (``nvidia.dali.auto_aug``: timm's ops and ranges at magnitude m of 10 levels; each layer applies
  with probability p, as timm's, by padding the op list with identities; no magnitude noise) and
  ``crop_mirror_normalize``; random erasing (DALI's ``erase`` fills a constant, timm's pixel mode draws noise) is
  (d)'s, batched on DALI's output.

Workers: FFCV and DALI run threads of their own, not DataLoader processes; the benchmark's worker count N gives
them ``max(N, 1)`` threads (neither has an in-process mode). DALI runs on the CPU unless the device is CUDA (then the
decoder is "mixed" and the augmentation runs on the GPU).
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch

from fdsl_app.bench.steps import Batch, to_device
from fdsl_app.data.augment import DeviceAugment, random_erase

JPEG_QUALITY = 90
FFCV_MODES = {"e": "raw", "ej": "jpg"}  # loader key -> FFCV RGBImageField write mode
# FFCV loaders live until the process exits: collecting one runs numba's finalizers on FFCV's generated functions,
# which raise KeyError under current numba (printed as an ignored exception); at exit numba skips them.
_KEEP: list[Any] = []


def beton_path(root: Path, key: str) -> Path:
    return root / f"ffcv_{FFCV_MODES[key]}.beton"


def write_betons(png_dir: Path, root: Path, keys: Iterable[str], workers: int) -> int:
    """Write the ``.beton`` file of each FFCV loader in `keys` from the PNG class folders (kept where present).

    Returns:
        the images written (0 when every file was there).
    """
    from ffcv.fields import IntField, RGBImageField
    from ffcv.writer import DatasetWriter
    from torchvision.datasets import ImageFolder

    written = 0
    for key in keys:
        path = beton_path(root, key)
        if path.exists():
            continue
        dataset = ImageFolder(str(png_dir))
        partial = path.with_suffix(".partial")
        fields = {"image": RGBImageField(write_mode=FFCV_MODES[key], jpeg_quality=JPEG_QUALITY), "label": IntField()}
        DatasetWriter(str(partial), fields, num_workers=max(1, workers)).from_indexed_dataset(dataset)
        partial.replace(path)  # a file is either complete or absent
        written += len(dataset)
    return written


def photometric_augment(spec: Any) -> DeviceAugment:
    """(d)'s batched RandAugment, normalisation and erasing, without its crop and flips (done before)."""
    cfg = dataclasses.replace(spec.augment, scale=[1.0, 1.0], hflip=0.0, vflip=0.0)
    return DeviceAugment(cfg, spec.size, seed=spec.seed).to(spec.device)


def ffcv_loader(path: Path, spec: Any, workers: int) -> tuple[Iterable[Batch], Callable[[Batch], Batch]]:
    """(e) / (ej): FFCV's loader over `path` (random order, every image once), then the batched augmentation."""
    from ffcv.fields.decoders import IntDecoder, RandomResizedCropRGBImageDecoder
    from ffcv.loader import Loader, OrderOption
    from ffcv.transforms import RandomHorizontalFlip, Squeeze, ToTensor, ToTorchImage

    if spec.augment.vflip:
        raise ValueError("FFCV has no vertical flip; run the FFCV loaders with vflip 0")
    aug = spec.augment
    image = [
        RandomResizedCropRGBImageDecoder((spec.size, spec.size), scale=tuple(aug.scale), ratio=(3 / 4, 4 / 3)),
        RandomHorizontalFlip(aug.hflip),
        ToTensor(),
        ToTorchImage(channels_last=False),
    ]
    with _torch_threads_kept():
        loader = Loader(
            str(path), batch_size=spec.batch_size, num_workers=max(1, workers), order=OrderOption.RANDOM,
            seed=spec.seed, drop_last=False,
            pipelines={"image": image, "label": [IntDecoder(), ToTensor(), Squeeze()]},
        )  # fmt: skip
    _KEEP.append(loader)
    augment = photometric_augment(spec) if spec.photometric else None
    step_seed = iter(range(2**62))

    def step(batch: Batch) -> Batch:
        images, labels = to_device(batch, spec.device)
        return (augment(images, seed=next(step_seed)) if augment is not None else images), labels

    return _FFCVEpochs(loader), step


@contextlib.contextmanager
def _torch_threads_kept() -> Iterator[None]:
    """Restore torch's thread count afterwards: FFCV sets numba's when a loader is made and when an epoch starts,
    and that resets torch's too."""
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class _FFCVEpochs:
    """FFCV's loader, except that starting an epoch leaves torch's thread count as it was."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def __iter__(self) -> Iterator[Batch]:
        with _torch_threads_kept():
            return iter(self.loader)


def dali_loader(png_dir: Path, spec: Any, workers: int) -> tuple[Iterable[Batch], Callable[[Batch], Batch]]:
    """(f): a DALI pipeline over the PNG class folders, then random erasing batched."""
    from nvidia.dali import fn, pipeline_def, types
    from nvidia.dali.auto_aug import rand_augment
    from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

    from fdsl_app.data.randaugment import LEVEL_DENOM, parse_rand_augment

    gpu = spec.device.startswith("cuda")
    aug = spec.augment
    mean = [255 * float(m) for m in aug.mean]
    std = [255 * float(s) for s in aug.std]

    @pipeline_def(enable_conditionals=True)
    def pipeline() -> Any:
        files, labels = fn.readers.file(file_root=str(png_dir), random_shuffle=True, name="reader", seed=spec.seed)
        images = fn.decoders.image(files, device="mixed" if gpu else "cpu", output_type=types.RGB)
        images = fn.random_resized_crop(images, size=(spec.size, spec.size), random_area=tuple(aug.scale),
                                        random_aspect_ratio=(3 / 4, 4 / 3))  # fmt: skip
        images = fn.flip(images, horizontal=fn.random.coin_flip(probability=aug.hflip),
                         vertical=fn.random.coin_flip(probability=aug.vflip))  # fmt: skip
        if aug.rand_augment and spec.photometric:
            ra = parse_rand_augment(aug.rand_augment)
            # Translations up to 45 % of the side, as timm's (every image is S x S here).
            suite = rand_augment.get_rand_augment_suite(max_translate_abs=round(0.45 * spec.size))
            ops = [op for op in suite if op.name != "identity"]
            identity = [op for op in suite if op.name == "identity"]
            # Each layer applies with probability p (timm): identities fill the rest of the op list.
            idle = round(len(ops) * (1 - ra.prob) / max(ra.prob, 1e-9))
            images = rand_augment.apply_rand_augment(
                ops + identity * idle, images, n=ra.num_ops, m=round(ra.magnitude), seed=spec.seed,
                num_magnitude_bins=int(LEVEL_DENOM) + 1, fill_value=round(mean[0]),
            )  # fmt: skip
        if not spec.photometric:  # the crop and flips only: uint8, channels first
            return fn.transpose(images, perm=[2, 0, 1]), labels.gpu() if gpu else labels
        images = fn.crop_mirror_normalize(images, dtype=types.FLOAT, output_layout="CHW", mean=mean, std=std)
        return images, labels.gpu() if gpu else labels

    with warnings.catch_warnings():
        warnings.showwarning = _without_dali_aliases(warnings.showwarning)
        pipe = pipeline(batch_size=spec.batch_size, num_threads=max(1, workers), device_id=0 if gpu else None,
                        seed=spec.seed)  # fmt: skip
        iterator = DALIGenericIterator(
            pipe, ["images", "labels"], reader_name="reader", last_batch_policy=LastBatchPolicy.PARTIAL,
            auto_reset=True,
        )  # fmt: skip
    generator = torch.Generator().manual_seed(spec.seed)

    def step(batch: Batch) -> Batch:
        (out,) = batch
        images, labels = out["images"], out["labels"].flatten().long()
        return (random_erase(images, aug.re_prob, generator) if spec.photometric else images), labels

    return iterator, step


def _without_dali_aliases(show: Callable[..., None]) -> Callable[..., None]:
    """`show` that drops the deprecation notices DALI's own RandAugment triggers (it calls fn.experimental aliases
    and forces its warnings on, past any warning filter)."""

    def showwarning(message: Any, *args: Any, **kwargs: Any) -> None:
        if "nvidia.dali.fn.experimental" not in str(message):
            show(message, *args, **kwargs)

    return showwarning
