"""The ``fdsl_app`` command line: ``fdsl_app <verb> [options]``.

Verbs live in :data:`COMMANDS` (verb -> :class:`Command`); a verb with sub-verbs (``bench``) holds its own table.
Bad flag values stop in argparse with a message naming the flag; a ``ValueError`` or ``TypeError`` raised while
running is reported as ``fdsl_app: error: ...`` with exit code 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple

from fdsl_app import bench, bench_loaders, cli_families, cli_train, provenance, render
from fdsl_app.cli_families import UsageError as _UsageError
from fdsl_app.cli_families import say
from fdsl_app.families import preview

PROG = "fdsl_app"
MAX_SIZE = 2048
MAX_POINTS = 10_000_000
MAX_COLUMNS = 64


class Command(NamedTuple):
    """A verb: what it runs, its one-line help, and how it adds its flags (or its own table of sub-verbs)."""

    run: Callable[[argparse.Namespace], int] | None
    help: str
    configure: Callable[[argparse.ArgumentParser], None] | None = None
    subcommands: Mapping[str, Command] | None = None


# --- flag types: argparse turns their ValueError/ArgumentTypeError into "argument --flag: <message>" ----------


def _choice_list(choices: tuple[str, ...]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        values = [part.strip() for part in text.split(",") if part.strip()]
        bad = [v for v in values if v not in choices]
        if bad or not values:
            raise argparse.ArgumentTypeError(f"choose from {','.join(choices)} (comma-separated), got {text!r}")
        return values

    return parse


_size = cli_families.int_arg(2 * 6 + 1, MAX_SIZE, " (more than twice the 6 px pad)")
_points = cli_families.int_arg(1, MAX_POINTS)
_threads = cli_families.int_arg(1)
_sizes = cli_families.int_list_arg(_size, "224,362,512")
_point_counts = cli_families.int_list_arg(_points, "100000,200000")


def _add_threads(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=_threads, default=None, metavar="N",
                        help=f"render threads (default: all {render.cpu_count()} cores)")  # fmt: skip


# --- render -------------------------------------------------------------------------------------------------------


def _configure_render(parser: argparse.ArgumentParser) -> None:
    cli_families.add_family_arguments(parser, family_required=False)
    parser.add_argument("-o", "--output", required=True, type=Path, help="PNG file to write")
    parser.add_argument("--classes", type=cli_families.int_arg(1, MAX_COLUMNS), default=4,
                        help="with a family: classes shown, one per row (default 4)")  # fmt: skip
    parser.add_argument("--per-class", type=cli_families.int_arg(1, MAX_COLUMNS), default=6,
                        help="with a family: samples per class, one per column (default 6)")  # fmt: skip
    parser.add_argument("--columns", type=cli_families.int_arg(1, MAX_COLUMNS), default=6,
                        help="without a family: distinct random systems, one per column (default 6)")  # fmt: skip
    parser.add_argument("--size", type=_size, default=None,
                        help="tile size in px (default: 128, or the family's image_size)")  # fmt: skip
    parser.add_argument("--points", type=_points, default=100_000,
                        help="without a family: points per IFS image (default 100000)")  # fmt: skip
    _add_threads(parser)


def _run_render(args: argparse.Namespace) -> int:
    output: Path = args.output
    if not output.parent.is_dir():
        raise _UsageError(f"output directory {output.parent} does not exist; create it or choose another -o path")
    if args.family is not None or args.params is not None:
        return cli_families.render_family(args)
    if args.settings:
        raise _UsageError("--set needs a family: `fdsl_app render FAMILY --set key=value -o grid.png`")
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
        f"{result.systems.stats['candidates']} candidates searched (fill >= {fill})")
    say(f"elapsed: {time.perf_counter() - start:.2f} s")
    return 0


# --- bench --------------------------------------------------------------------------------------------------------


def _configure_bench_render(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", type=_sizes, default=list(bench.SIZES), metavar="PX,...",
                        help="image sizes (default 224,362,512)")  # fmt: skip
    parser.add_argument("--points", type=_point_counts, default=list(bench.POINTS), metavar="N,...",
                        help="points per image (default 100000,200000)")  # fmt: skip
    parser.add_argument("--modes", type=_choice_list(bench.MODES), default=list(bench.MODES), metavar="MODE,...",
                        help=f"render modes (default {','.join(bench.MODES)})")  # fmt: skip
    parser.add_argument("--rasters", type=_choice_list(bench.RASTERS), default=list(bench.RASTERS),
                        metavar="RASTER,...", help=f"raster variants (default {','.join(bench.RASTERS)})")  # fmt: skip
    _add_threads(parser)
    parser.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write rows and machine as JSON")
    parser.add_argument("--no-baseline", dest="baseline", action="store_false",
                        help="skip the numpy/Python reference baseline")  # fmt: skip


def _run_bench_render(args: argparse.Namespace) -> int:
    if args.json is not None and not args.json.parent.is_dir():
        raise _UsageError(f"--json directory {args.json.parent} does not exist; create it or choose another path")
    settings = bench.RenderSettings(args.sizes, args.points, args.modes, args.rasters, args.threads, args.baseline)
    machine = provenance.machine()
    say(bench.render_header(machine, settings))
    say()
    say(bench.render_table_head(settings))
    start = time.perf_counter()
    rows = bench.run_render_bench(settings, on_row=lambda row: say(bench.render_table_row(row, settings.baseline)))
    say()
    say(f"{len(rows)} rows in {time.perf_counter() - start:.1f} s")
    if args.json is not None:
        bench.write_json(args.json, rows, machine, settings)
        say(f"wrote {args.json}")
    return 0


BENCH_COMMANDS: dict[str, Command] = {
    "render": Command(
        run=_run_bench_render,
        help="IFS render throughput per mode, raster, size and point count",
        configure=_configure_bench_render,
    ),
    "loaders": Command(
        run=bench_loaders.run_cli,
        help="data loading: PNG ImageFolder, WebDataset and rendering on the fly, same images and DeiT augmentation",
        configure=bench_loaders.configure_cli,
    ),
}

COMMANDS: dict[str, Command] = {
    "fit": Command(
        run=cli_train.run_fit,
        help="train from a recipe (default: the quick start): fdsl_app fit --config RECIPE [key=value ...]",
        configure=cli_train.configure_fit,
    ),
    "validate": Command(
        run=cli_train.run_validate, help="validate a checkpoint", configure=cli_train.configure_evaluate
    ),
    "test": Command(run=cli_train.run_test, help="test a checkpoint", configure=cli_train.configure_evaluate),
    "families": Command(
        run=cli_families.run_families,
        help="list the formula families",
        configure=cli_families.configure_families,
    ),
    "search": Command(
        run=cli_families.run_search,
        help="generate a family's class parameters (FractalDB: the category search) into a file",
        configure=cli_families.configure_search,
    ),
    "render": Command(
        run=_run_render,
        help="write a labelled grid (PNG): samples of a family, or without one every renderer and raster variant",
        configure=_configure_render,
    ),
    "export": Command(
        run=cli_families.run_export,
        help="write a family's dataset to disk: PNG in class folders, or WebDataset shards",
        configure=cli_families.configure_export,
    ),
    "bench": Command(
        run=None,
        help="benchmarks: render (the renderer), loaders (data pipelines against PNG and WebDataset)",
        subcommands=BENCH_COMMANDS,
    ),
}


# --- plumbing -----------------------------------------------------------------------------------------------------


def _add_commands(parser: argparse.ArgumentParser, commands: Mapping[str, Command], dest: str) -> None:
    sub = parser.add_subparsers(dest=dest, required=True, metavar="{" + ",".join(commands) + "}")
    for verb, command in commands.items():
        child = sub.add_parser(verb, help=command.help, description=command.help)
        if command.configure is not None:
            command.configure(child)
        if command.subcommands is not None:
            _add_commands(child, command.subcommands, f"{dest}_{verb}")
        else:
            child.set_defaults(run=command.run)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every verb in :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(prog=PROG, description="Formula-driven image rendering for ViT pre-training.")
    parser.add_argument("--version", action="version", version=f"{PROG} {provenance.package_version()}")
    _add_commands(parser, COMMANDS, "verb")
    return parser


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    return code if isinstance(code, int) else 1


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (argparse's 2 for bad flags, 0 for ``--help``/``--version``)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # argparse has printed its message already
        return _exit_code(stop.code)
    try:
        return args.run(args)
    except (_UsageError, ValueError, TypeError) as err:
        sys.stderr.write(f"{PROG}: error: {err}\n")
        return 2
    except (RuntimeError, OSError) as err:
        sys.stderr.write(f"{PROG}: error: {err}\n")
        return 1
