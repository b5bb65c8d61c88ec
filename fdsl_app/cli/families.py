"""The family verbs of the command line: ``families``, ``search``, ``render`` (a family's samples, or every
renderer variant) and ``export``.

Each pair ``configure_*`` / ``run_*`` is wired into :data:`fdsl_app.cli.COMMANDS`. Family settings come as
``--set key=value`` (values parsed as YAML: numbers, booleans, lists), checked against the family's settings.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Any

from fdsl_app import render
from fdsl_app.cli.args import UsageError, add_family_arguments, add_threads, int_arg, say, seed_arg, setting_arg
from fdsl_app.data import export
from fdsl_app.families import (
    ClassParams,
    Family,
    create_family,
    family_class,
    list_families,
    named_params,
    preview,
    resolve_family,
)

MAX_COLUMNS = 64
SIZE = int_arg(2 * 6 + 1, 2048, " (more than twice the 6 px pad)")
POINTS = int_arg(1, render.MAX_POINTS)


def family_from_args(args: argparse.Namespace, **extra: Any) -> tuple[Family, ClassParams | None]:
    """The family with its settings, and the parameter file's contents if --params was given (whose generation
    settings then hold: --set may change only render settings)."""
    if args.family is None and args.params is None:
        raise UsageError("name a family (see `fdsl_app families`) or give --params FILE")
    return resolve_family(args.family, dict(args.settings) | extra, args.params)


def _params(family: Family, params: ClassParams | None, seed: int) -> ClassParams:
    return params if params is not None else family.generate(seed)


# --- families -----------------------------------------------------------------------------------------------------


def configure_families(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'frac*' (default: all)")


def run_families(args: argparse.Namespace) -> int:
    names = list_families(args.pattern)
    if not names:
        raise UsageError(f"no family matches {args.pattern!r}; known families: {', '.join(list_families())}")
    for name in names:
        family = create_family(name)
        doc = (family_class(name).__doc__ or "").strip().splitlines()[0]
        say(f"{name:12s} {family.num_classes:>6,} classes x {family.instances_per_class:>5,} instances  {doc}")
    if args.pattern == "*":
        say("\nnamed parameter sets (--params NAME, data.params: NAME; made on first use):")
        for name, description in named_params().items():
            say(f"  {name}: {description}")
    return 0


# --- search -------------------------------------------------------------------------------------------------------


def configure_search(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("family", help="family name (see `fdsl_app families`)")
    parser.add_argument("--classes", type=int, default=None, help="number of classes (default: the family's)")
    parser.add_argument("--seed", type=seed_arg, default=None,
                        help="seed of the search (default 0; with --published 1)")  # fmt: skip
    parser.add_argument("--published", action="store_true",
                        help="FractalDB/OFDB: replay the published search script's one numpy stream (setting "
                             "published_stream); with the default seed 1 and 1000 classes: the published FractalDB-1k "
                             "categories, bit for bit")  # fmt: skip
    parser.add_argument("-o", "--output", type=Path, required=True, help="parameter file to write (.npz)")
    parser.add_argument("--set", dest="settings", type=setting_arg, action="append", default=[], metavar="KEY=VALUE",
                        help="override a family setting (repeatable), e.g. --set fill_threshold=0.1")  # fmt: skip
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def run_search(args: argparse.Namespace) -> int:
    from fdsl_app.families import search  # the search machinery (and tqdm) only when searching

    overrides = dict(args.settings) | ({} if args.classes is None else {"classes": args.classes})
    if args.published:
        if "published_stream" not in {f.name for f in dataclasses.fields(family_class(args.family).Settings)}:
            raise UsageError(f"--published replays FractalDB's published search; family {args.family!r} has none "
                             "(use fractaldb or ofdb)")  # fmt: skip
        overrides["published_stream"] = True
    seed = args.seed if args.seed is not None else 1 if args.published else 0
    family = create_family(args.family, **overrides)
    if not args.output.parent.is_dir():
        raise UsageError(f"output folder {args.output.parent} does not exist; create it or choose another -o path")
    start = time.perf_counter()
    params = search.run_search(family, seed, args.output, progress=args.progress)
    say(f"wrote {args.output} ({params.num_classes} {family.name} classes, seed {seed})")
    say(search.format_stats(params.stats))
    say(f"elapsed: {time.perf_counter() - start:.1f} s")
    return 0


# --- render ----------------------------------------------------------------------------------------------


def configure_render(parser: argparse.ArgumentParser) -> None:
    add_family_arguments(parser, family_required=False)
    parser.add_argument("-o", "--output", required=True, type=Path, help="PNG file to write")
    parser.add_argument("--classes", type=int_arg(1, MAX_COLUMNS), default=4,
                        help="with a family: classes shown, one per row (default 4)")  # fmt: skip
    parser.add_argument("--per-class", type=int_arg(1, MAX_COLUMNS), default=6,
                        help="with a family: samples per class, one per column (default 6)")  # fmt: skip
    parser.add_argument("--columns", type=int_arg(1, MAX_COLUMNS), default=6,
                        help="without a family: distinct random systems, one per column (default 6)")  # fmt: skip
    parser.add_argument("--size", type=SIZE, default=None,
                        help="tile size in px (default: 128, or the family's image_size)")  # fmt: skip
    parser.add_argument("--points", type=POINTS, default=100_000,
                        help="without a family: points per IFS image (default 100000)")  # fmt: skip
    add_threads(parser)


def run_render(args: argparse.Namespace) -> int:
    output: Path = args.output
    if not output.parent.is_dir():
        raise UsageError(f"output directory {output.parent} does not exist; create it or choose another -o path")
    if args.family is not None or args.params is not None:
        return render_family(args)
    if args.settings:
        raise UsageError("--set needs a family: `fdsl_app render FAMILY --set key=value -o grid.png`")
    args.size = args.size or 128
    start = time.perf_counter()
    result = preview.render_preview(args.columns, args.size, args.seed, args.points, args.threads)
    result.image.save(output, format="PNG")
    width, height = result.image.size
    layout = result.layout
    say(f"wrote {output}")
    say(f"grid: {layout.rows} rows x {layout.columns} columns of {args.size} px tiles, {width}x{height} px")
    fill = result.systems.settings["fill_threshold"]
    say(f"IFS systems: the first {result.systems.num_classes} FractalDB categories of seed {args.seed}, "
        f"{result.systems.stats['candidates']} candidates searched (fill >= {fill})")  # fmt: skip
    say(f"elapsed: {time.perf_counter() - start:.2f} s")
    return 0


def render_family(args: argparse.Namespace) -> int:
    extra = {} if args.size is None else {"image_size": args.size}
    family, params = family_from_args(args, **extra)
    start = time.perf_counter()
    params = _params(family, params, args.seed)
    grid = preview.family_grid(family, params, min(args.classes, family.num_classes), args.per_class, args.seed,
                               args.threads)  # fmt: skip
    grid.save(args.output, format="PNG")
    shown, seconds = min(args.classes, family.num_classes), time.perf_counter() - start
    say(f"wrote {args.output}: {family.name}, {shown} classes x {args.per_class} samples of {family.image_shape[0]} "
         f"px, {grid.size[0]}x{grid.size[1]} px, {seconds:.2f} s")  # fmt: skip
    return 0


# --- export -------------------------------------------------------------------------------------------------------


def configure_export(parser: argparse.ArgumentParser) -> None:
    add_family_arguments(parser)
    parser.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    parser.add_argument("--format", choices=export.FORMATS, default="png", help="png (class folders) or webdataset")
    parser.add_argument("--limit", type=int, default=None, help="export only the first N samples")
    parser.add_argument("--epoch", type=int, default=0, help="epoch whose random variation is drawn (default 0)")
    parser.add_argument("--shard-size", type=int, default=1000, help="samples per WebDataset shard (default 1000)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def run_export(args: argparse.Namespace) -> int:
    family, params = family_from_args(args)
    params = _params(family, params, args.seed)
    result = export.export_dataset(
        family, params, args.output, fmt=args.format, seed=args.seed, epoch=args.epoch, limit=args.limit,
        shard_size=args.shard_size, workers=args.workers, progress=args.progress,
    )  # fmt: skip
    rate = result.written / result.seconds if result.seconds > 0 else 0.0
    say(f"wrote {result.written} samples to {args.output} ({args.format}; {result.skipped} already there), "
         f"{result.files} files, {result.seconds:.1f} s ({rate:,.0f} samples/s)")  # fmt: skip
    return 0
