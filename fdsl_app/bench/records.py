"""What ``fdsl_app bench loaders`` measures and reports: the loaders, its settings, a row of the table, and the
rules that settings resolve by (family settings, main-process threads, device). Standard library only at load time:
the command line builds its parser from these."""

from __future__ import annotations

import importlib.util
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

#: Loader key -> short name.
LOADERS: dict[str, str] = {
    "a": "PNG ImageFolder + timm",
    "b": "WebDataset tar + timm",
    "c": "render + timm (per sample)",
    "d": "render batched + DeviceAugment",
    "e": "FFCV .beton raw",
    "ej": "FFCV .beton JPEG",
    "f": "NVIDIA DALI",
    "g": "attractor cache draw + DeviceAugment",
}
ENGINES = ("e", "ej", "f")  # loaders with threads and compiled pipelines of their own (peers.py)
_PEERS = "pip install 'fdsl_app[bench]'"
INSTALL = {
    "b": f"{_PEERS} or pip install webdataset",
    "e": f"{_PEERS}; FFCV builds against Debian's libturbojpeg0-dev, libopencv-dev and pkg-config",
    "f": f"{_PEERS} or pip install nvidia-dali-cuda130, or the wheel matching your CUDA",
}
INSTALL["ej"] = INSTALL["e"]
MODULES = {"b": "webdataset", "e": "ffcv", "ej": "ffcv", "f": "nvidia.dali"}


@dataclass(frozen=True)
class LoaderBenchSettings:
    """What ``bench loaders`` measures (the CLI flags)."""

    loaders: Sequence[str] = tuple(LOADERS)
    workers: Sequence[int] = (0, 1, 2)
    samples: int = 1024
    size: int = 224
    render_size: int | None = None  # rendered / stored image side; None: `size`
    batch_size: int = 64
    family: str = "onepfrac"
    points: int | None = 100_000  # None: the family's own n_points
    family_settings: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    repeats: int = 1
    data: str | None = None
    shard_size: int | None = None  # None: auto_shard_size(samples)
    main_threads: int | None = None  # None: see main_threads()
    device: str = "auto"  # auto: cuda when available, else cpu
    photometric: bool = True  # DeiT's RandAugment, normalisation and erasing after the crop and flips (else uint8)
    node_gpus: int = 8  # the node whose budget the per-core figures are held against
    gpu_images_per_s: float = 20_000.0
    node_cores: int = 96

    @property
    def core_budget(self) -> float:
        """Images per second each core of the node must deliver to keep its GPUs fed."""
        return self.node_gpus * self.gpu_images_per_s / self.node_cores


@dataclass(frozen=True)
class LoaderRow:
    """One (loader, workers) of the table. Step figures cover the steps after the first of every repeat."""

    loader: str
    name: str
    workers: int
    images: int
    step_images_per_s: float
    step_images_per_s_std: float
    epoch_images_per_s: float
    epoch_seconds: float
    first_batch_s: float
    ratio_to_a: float | None
    main_threads: int
    step_seconds: list[float]
    step_images: list[int]
    images_per_cpu_s: float  # images per CPU second of this process and its workers: the rate of one core


@dataclass(frozen=True)
class Skipped:
    loader: str
    name: str
    reason: str


def installed(module: str) -> bool:
    """Whether `module` can be imported (a missing parent package counts as missing)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def skipped_loaders(loaders: Sequence[str]) -> list[Skipped]:
    """The requested loaders that will not run (their package is missing), and why."""
    out = []
    for key in loaders:
        module = MODULES.get(key)
        if module is not None and not installed(module):
            out.append(Skipped(key, LOADERS[key], f"skipped: {module} not installed ({INSTALL[key]})"))
    return out


def step_stats(seconds: Sequence[float], images: Sequence[int]) -> tuple[float, float]:
    """Images/s over the steps (total images / total time) and its spread: the same relative spread as the
    per-image step time (std / mean). Robust to steps served instantly from the prefetch queue."""
    if not seconds:
        return 0.0, 0.0
    rate = sum(images) / max(sum(seconds), 1e-12)
    per_image = [s / n for s, n in zip(seconds, images, strict=True) if n]
    if len(per_image) < 2:
        return rate, 0.0
    return rate, rate * statistics.stdev(per_image) / max(statistics.fmean(per_image), 1e-12)


def make_row(key: str, workers: int, timings: Sequence[Any], base: LoaderRow | None, threads: int) -> LoaderRow:
    """Aggregate the repeats of one (loader, workers): medians of epoch figures, steps pooled."""
    seconds = [s for t in timings for s in t.step_seconds]
    images = [n for t in timings for n in t.step_images]
    step_rate, step_std = step_stats(seconds, images)
    epoch_s = statistics.median(t.epoch_s for t in timings)
    epoch_rate = statistics.median(t.images / t.epoch_s for t in timings)
    ratio = epoch_rate / base.epoch_images_per_s if base is not None and base.epoch_images_per_s > 0 else None
    per_core = statistics.median(t.images / max(t.cpu_s, 1e-9) for t in timings)
    return LoaderRow(key, LOADERS[key], workers, timings[0].images, step_rate, step_std, epoch_rate, epoch_s,
                     statistics.median(t.first_batch_s for t in timings), ratio, threads, seconds, images,
                     per_core)  # fmt: skip


def family_settings(settings: LoaderBenchSettings) -> dict[str, Any]:
    """The family's settings for the benchmark: render size and points, then the user's ``--set`` values."""
    base: dict[str, Any] = {"image_size": settings.render_size or settings.size}
    if settings.points is not None:
        base["n_points"] = settings.points
    return base | dict(settings.family_settings)


def main_threads(settings: LoaderBenchSettings, workers: int, loader: str) -> int:
    """Torch threads of the main process for `loader` at `workers` workers: ``--main-threads`` if given; else 1 for
    the per-sample loaders (a)-(c) (their tensor ops are per image, as in a worker, where torch runs 1 thread) and
    the cores the workers leave (at least 1) for the batched augmentation of (d), (g) and the FFCV loaders. Torch's
    all-core default next to busy workers oversubscribes the cores, and its thread pool then slows small tensor ops
    several-fold."""
    from fdsl_app import render

    if settings.main_threads is not None:
        return settings.main_threads
    return max(1, render.cpu_count() - workers) if loader in ("d", "e", "ej", "g") else 1


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; ``cuda`` without a GPU is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: torch sees no CUDA GPU here; use --device cpu (or auto)")
    return device
