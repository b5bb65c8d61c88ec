"""The bench verbs of the command line: ``bench render`` and ``bench loaders`` (flags here, the benchmarks in
:mod:`fdsl_app.bench`; the loaders and torch are imported when that benchmark runs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from fdsl_app import render
from fdsl_app.bench import render as bench_render
from fdsl_app.bench.records import LOADERS, LoaderBenchSettings, resolve_device
from fdsl_app.bench.render import RenderSettings
from fdsl_app.cli.args import (
    UsageError,
    add_family_arguments,
    add_threads,
    choice_list,
    int_arg,
    int_list_arg,
    say,
    setting_arg,
)
from fdsl_app.cli.families import POINTS, SIZE

# --- bench render -------------------------------------------------------------------------------------------------


def configure_render(parser: argparse.ArgumentParser) -> None:
    d, add = RenderSettings(), parser.add_argument
    add("--sizes", type=int_list_arg(SIZE, "224,362,512"), default=list(d.sizes), metavar="PX,...",
        help="image sizes (default 224,362,512)")  # fmt: skip
    add("--points", type=int_list_arg(POINTS, "100000,200000"), default=list(d.points), metavar="N,...",
        help="points per image (default 100000,200000)")  # fmt: skip
    add("--modes", type=choice_list(render.MODES), default=list(render.MODES), metavar="MODE,...",
        help=f"render modes (default {','.join(render.MODES)})")  # fmt: skip
    add("--rasters", type=choice_list(render.RASTERS), default=list(render.RASTERS), metavar="RASTER,...",
        help=f"raster variants (default {','.join(render.RASTERS)})")  # fmt: skip
    add_threads(parser)
    add("--json", type=Path, default=None, metavar="FILE", help="also write rows and machine as JSON")
    add("--no-baseline", dest="baseline", action="store_false", help="skip the numpy/Python reference baseline")


def run_render(args: argparse.Namespace) -> int:
    if args.json is not None and not args.json.parent.is_dir():
        raise UsageError(f"--json directory {args.json.parent} does not exist; create it or choose another path")
    settings = RenderSettings(args.sizes, args.points, args.modes, args.rasters, args.threads, args.baseline)
    bench_render.run(settings, args.json, say)
    return 0


# --- bench gpu ----------------------------------------------------------------------------------------------------


def configure_gpu(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cuda", help="torch device to measure (default cuda)")
    parser.add_argument("--dry-run", action="store_true", help="every step at tiny sizes (any device, the CPU too)")


def run_gpu(args: argparse.Namespace) -> int:
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("bench gpu: torch sees no CUDA GPU here; run it on a GPU node, or --dry-run --device cpu")
    from fdsl_app.bench import gpu

    gpu.run(args.device, args.dry_run, say)
    return 0


# --- bench cache --------------------------------------------------------------------------------------------------


def configure_cache(parser: argparse.ArgumentParser) -> None:
    add_family_arguments(parser)


def run_cache(args: argparse.Namespace) -> int:
    from fdsl_app.bench import cache

    cache.run(args.family, dict(args.settings), args.params, args.seed, say)
    return 0


# --- bench loaders ------------------------------------------------------------------------------------------------


def _workers(text: str) -> list[int]:
    return sorted(set(int_list_arg(int_arg(0, 256), "0,4,8,16")(text)))


def _loader_list(text: str) -> list[str]:
    values = [part.strip().strip("()").lower() for part in text.split(",") if part.strip()]
    if not values or any(v not in LOADERS for v in values):
        raise argparse.ArgumentTypeError(f"choose from {','.join(LOADERS)} (comma-separated), got {text!r}")
    return [k for k in LOADERS if k in values]


def configure_loaders(parser: argparse.ArgumentParser) -> None:
    """Flags of ``bench loaders``; defaults finish in a few minutes on 2 cores."""
    d = LoaderBenchSettings()
    add = parser.add_argument
    add("--loaders", type=_loader_list, default=list(d.loaders), metavar="a,b,...",
        help="(a) PNG ImageFolder, (b) WebDataset, (c) render + timm, (d) render + DeviceAugment, (e) FFCV raw, "
             "(ej) FFCV JPEG, (f) DALI, (g) attractor cache draw (default: all)")  # fmt: skip
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
    add("--augment", choices=("deit", "geometric"), default="deit",
        help="deit: the whole DeiT transform (default); geometric: random resized crop and flips to uint8 only")
    add("--node-gpus", type=int_arg(1, 4096), default=d.node_gpus, metavar="N",
        help=f"GPUs of the node the per-core figures are held against (default {d.node_gpus})")  # fmt: skip
    add("--gpu-images-per-s", type=int_arg(1), default=int(d.gpu_images_per_s), metavar="N",
        help=f"images/s one GPU trains (default {d.gpu_images_per_s:,.0f}: DeiT-Tiny on an H200)")  # fmt: skip
    add("--node-cores", type=int_arg(1, 100_000), default=d.node_cores, metavar="N",
        help=f"CPU cores of that node (default {d.node_cores})")  # fmt: skip
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


def _loader_settings(args: argparse.Namespace) -> LoaderBenchSettings:
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
        main_threads=args.main_threads, device=args.device, photometric=args.augment == "deit",
        node_gpus=args.node_gpus, gpu_images_per_s=float(args.gpu_images_per_s), node_cores=args.node_cores,
    )  # fmt: skip


def run_loaders(args: argparse.Namespace) -> int:
    from fdsl_app.bench import loaders

    loaders.run(_loader_settings(args), args.json, args.chart, say)
    return 0
