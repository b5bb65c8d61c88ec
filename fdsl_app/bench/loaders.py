"""``fdsl_app bench loaders``: PNG, WebDataset, FFCV and DALI loading against rendering on the fly, same images,
same augmentation.

It exports a small dataset of one family (or reuses ``--data DIR``), then times every loader at every worker count
on the same samples, image size, batch size and DeiT augmentation (:mod:`fdsl_app.bench_pipelines` and
:mod:`fdsl_app.bench_peers` say what each loader does). Per (loader, workers): images/s per batch step after the
first, images/s over the whole epoch (worker start included) and the time until the first batch. Output: a markdown
table, a JSON file and a PNG chart (:mod:`fdsl_app.bench_report`). A loader whose package is not installed is
reported as skipped, with the command that installs it.

This module imports only the standard library and yaml at load time (the CLI builds its parser on every call); the
loaders and torch are imported when the benchmark runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fdsl_app.cli_families import int_arg, int_list_arg, say, setting_arg

#: Loader key -> short name.
LOADERS: dict[str, str] = {
    "a": "PNG ImageFolder + timm",
    "b": "WebDataset tar + timm",
    "c": "render + timm (per sample)",
    "d": "render batched + DeviceAugment",
    "e": "FFCV .beton raw",
    "ej": "FFCV .beton JPEG",
    "f": "NVIDIA DALI",
}
ENGINES = ("e", "ej", "f")  # loaders with threads and compiled pipelines of their own (bench_peers.py)
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
    return LoaderRow(key, LOADERS[key], workers, timings[0].images, step_rate, step_std, epoch_rate, epoch_s,
                     statistics.median(t.first_batch_s for t in timings), ratio, threads, seconds, images)  # fmt: skip


# --- running ------------------------------------------------------------------------------------------------------


def family_settings(settings: LoaderBenchSettings) -> dict[str, Any]:
    """The family's settings for the benchmark: render size and points, then the user's ``--set`` values."""
    base: dict[str, Any] = {"image_size": settings.render_size or settings.size}
    if settings.points is not None:
        base["n_points"] = settings.points
    return base | dict(settings.family_settings)


def prepare(settings: LoaderBenchSettings, root: Path) -> Any:
    """The family sized to ``settings.samples``, its parameters and its export under `root` (reused where there).

    Returns:
        :class:`~fdsl_app.bench_pipelines.BenchData`.
    """
    from fdsl_app import bench_pipelines as bp

    family = bp.make_family(settings.family, family_settings(settings), settings.samples)
    skipped = {s.loader for s in skipped_loaders(settings.loaders)}
    formats = [key for key in ("b", "e", "ej") if key in settings.loaders and key not in skipped]
    shard_size = settings.shard_size or bp.auto_shard_size(settings.samples)
    return bp.prepare_data(family, root, seed=settings.seed, formats=formats, shard_size=shard_size)


def main_threads(settings: LoaderBenchSettings, workers: int, loader: str) -> int:
    """Torch threads of the main process for `loader` at `workers` workers: ``--main-threads`` if given; else 1 for
    the per-sample loaders (a)-(c) (their tensor ops are per image, as in a worker, where torch runs 1 thread) and
    the cores the workers leave (at least 1) for the batched augmentation of (d) and the FFCV loaders. Torch's
    all-core default next to busy workers oversubscribes the cores, and its thread pool then slows small tensor ops
    several-fold."""
    from fdsl_app import render

    if settings.main_threads is not None:
        return settings.main_threads
    return max(1, render.cpu_count() - workers) if loader in ("d", "e", "ej") else 1


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; ``cuda`` without a GPU is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: torch sees no CUDA GPU here; use --device cpu (or auto)")
    return device


def measure(settings: LoaderBenchSettings, data: Any, on_row: Callable[[LoaderRow], None]) -> list[LoaderRow]:
    """Time every runnable loader at every worker count on `data` (from :func:`prepare`).

    Each DataLoader-based loader first yields one untimed batch (imports, first calls); FFCV and DALI get one
    untimed epoch on the very loader that is timed (their pipeline build and JIT compilation are paid once per run,
    not per epoch). Worker counts are the outer loop, so the loaders compared at one count are measured next to each
    other, with :func:`main_threads` torch threads.
    """
    import torch

    from fdsl_app import bench_pipelines as bp
    from fdsl_app.data.augment import recycle_batch_memory

    skipped = {s.loader for s in skipped_loaders(settings.loaders)}
    runnable = [k for k in settings.loaders if k not in skipped]
    spec = bp.PipelineSpec(settings.size, settings.batch_size, settings.seed, device=resolve_device(settings.device))
    recycle_batch_memory()  # (d) sets it on first use; every loader runs under the same allocator
    for key in runnable:
        if key not in ENGINES:
            bp.warm_up(key, data, spec)
    rows: list[LoaderRow] = []
    default_threads = torch.get_num_threads()
    try:
        for workers in settings.workers:
            base: LoaderRow | None = None
            for key in runnable:
                torch.set_num_threads(main_threads(settings, workers, key))
                loader, step = bp.build_loader(key, data, spec, workers)
                if key in ENGINES:  # an untimed epoch: pipeline build and JIT compilation, paid once per run
                    bp.time_epoch(loader, step, spec.device)
                timings = [bp.time_epoch(loader, step, spec.device) for _ in range(settings.repeats)]
                row = make_row(key, workers, timings, base, torch.get_num_threads())
                base = row if key == "a" else base
                rows.append(row)
                on_row(row)
    finally:
        torch.set_num_threads(default_threads)
    return rows


# --- machine -------------------------------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    """CPU, cores, torch threads and versions."""
    import torch

    from fdsl_app import provenance

    info = provenance.machine()
    peers = provenance.versions(("torch", "torchvision", "timm", "webdataset", "ffcv", "nvidia-dali-cuda130"))
    return info | {"torch_default_threads": torch.get_num_threads(), "versions": info["versions"] | peers}


# --- command line -------------------------------------------------------------------------------------------------


def _workers(text: str) -> list[int]:
    return sorted(set(int_list_arg(int_arg(0, 256), "0,4,8,16")(text)))


def _loader_list(text: str) -> list[str]:
    values = [part.strip().strip("()").lower() for part in text.split(",") if part.strip()]
    if not values or any(v not in LOADERS for v in values):
        raise argparse.ArgumentTypeError(f"choose from {','.join(LOADERS)} (comma-separated), got {text!r}")
    return [k for k in LOADERS if k in values]


def configure_cli(parser: argparse.ArgumentParser) -> None:
    """Flags of ``bench loaders``; defaults finish in a few minutes on 2 cores."""
    d = LoaderBenchSettings()
    add = parser.add_argument
    add("--loaders", type=_loader_list, default=list(d.loaders), metavar="a,b,...",
        help="(a) PNG ImageFolder, (b) WebDataset, (c) render + timm, (d) render + DeviceAugment, (e) FFCV raw, "
             "(ej) FFCV JPEG, (f) DALI (default: all)")  # fmt: skip
    add("--workers", type=_workers, default=list(d.workers), metavar="N,...",
        help="DataLoader worker counts (default 0,1,2)")  # fmt: skip
    add("--samples", type=int_arg(2), default=d.samples, help=f"images per epoch (default {d.samples})")
    add("--size", type=int_arg(8, 4096), default=d.size, help=f"training resolution in px (default {d.size})")
    add("--render-size", type=int_arg(13, 4096), default=None, help="rendered/stored side in px (default: --size)")
    add("--batch-size", type=int_arg(1), default=d.batch_size, help=f"batch size (default {d.batch_size})")
    add("--family", default=d.family, help=f"formula family (default {d.family})")
    add("--points", type=int_arg(1), default=d.points, help=f"points per image (default {d.points:,})")
    add("--set", dest="family_settings", type=setting_arg, action="append", default=[], metavar="KEY=VALUE",
        help="other family settings, e.g. --set mode=fast")  # fmt: skip
    add("--seed", type=int_arg(0, 2**63), default=d.seed, help="parameter and sample seed (default 0)")
    add("--repeats", type=int_arg(1, 100), default=d.repeats, help="epochs per (loader, workers) (default 1)")
    add("--data", type=Path, default=None, metavar="DIR",
        help="keep the exported dataset in DIR and reuse it on later runs (default: a temporary folder)")  # fmt: skip
    add("--shard-size", type=int_arg(1), default=None, help="samples per WebDataset shard (default: about 32 shards)")
    add("--main-threads", type=int_arg(1, 1024), default=None, metavar="N",
        help="main-process torch threads (default: 1 for (a)-(c), the cores the workers leave for (d))")  # fmt: skip
    add("--device", choices=("auto", "cpu", "cuda"), default=d.device,
        help="where batches go and (d) augments: auto = cuda when available, else cpu (default auto)")  # fmt: skip
    add("--json", type=Path, default=Path("bench_loaders.json"), metavar="FILE",
        help="rows, machine and settings as JSON (default bench_loaders.json)")  # fmt: skip
    add("--chart", type=Path, default=Path("bench_loaders.png"), metavar="FILE",
        help="PNG bar chart of epoch images/s (default bench_loaders.png)")  # fmt: skip
    parser.epilog = (
        "On a training node, e.g.: fdsl_app bench loaders --samples 100000 --workers 0,4,8,16 --batch-size 256 "
        "--render-size 362 --size 224 --data /local/ssd/bench_loaders (the export is kept and reused)."
    )


def _settings(args: argparse.Namespace) -> LoaderBenchSettings:
    for flag, path in (("--json", args.json), ("--chart", args.chart)):
        if not path.parent.is_dir():
            raise ValueError(f"{flag} folder {path.parent} does not exist; create it or choose another path")
    if args.data is not None and args.data.exists() and not args.data.is_dir():
        raise ValueError(f"--data {args.data} is a file, not a folder")
    resolve_device(args.device)  # a missing GPU fails before the export
    return LoaderBenchSettings(
        loaders=tuple(args.loaders), workers=tuple(args.workers), samples=args.samples, size=args.size,
        render_size=args.render_size, batch_size=args.batch_size, family=args.family, points=args.points,
        family_settings=dict(args.family_settings), seed=args.seed, repeats=args.repeats,
        data=None if args.data is None else str(args.data), shard_size=args.shard_size,
        main_threads=args.main_threads, device=args.device,
    )  # fmt: skip


def run_cli(args: argparse.Namespace) -> int:
    """Run the benchmark and print the table; write the JSON and the chart."""
    from fdsl_app import bench_report as report

    settings = _settings(args)
    start = time.perf_counter()
    skipped = skipped_loaders(settings.loaders)
    with tempfile.TemporaryDirectory(prefix="fdsl_bench_loaders_") as tmp:
        root = Path(settings.data) if settings.data is not None else Path(tmp)
        say(f"data: {'reusing or writing' if settings.data else 'writing'} {settings.samples} samples under {root}")
        machine = machine_info()  # before the export: FFCV's writer changes torch's thread count
        data = prepare(settings, root)
        say(f"data: {data.written} images written (PNG files and shard members; 0: all reused), "
             f"{data.export_seconds:.1f} s with the class parameters")  # fmt: skip
        say()
        say(report.header(machine, settings, data))
        say()
        say(report.TABLE_HEAD)
        rows = measure(settings, data, lambda row: say(report.table_row(row)))
        seconds = time.perf_counter() - start
        report.write_json(args.json, report.json_doc(settings, machine, data, rows, skipped, seconds))
    say()
    for skip in skipped:
        say(f"({skip.loader}) {skip.name}: {skip.reason}")
    for line in report.ratio_summary(rows):
        say(line)
    title = f"{data.family.name}, {settings.samples} images at {settings.size} px, batch {settings.batch_size}"
    report.draw_chart(rows, args.chart, title=f"{title}: epoch images/s by workers")
    say(f"wrote {args.json} and {args.chart}; {len(rows)} rows, {seconds:.1f} s in all")
    return 0
