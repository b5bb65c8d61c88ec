"""The ``fdsl_app`` command line: ``fdsl_app <verb> [options]``.

Verbs live in :data:`COMMANDS` (verb -> :class:`Command`); a verb with sub-verbs (``bench``) holds its own table.
Each verb group has its module: :mod:`~fdsl_app.cli.train`, :mod:`~fdsl_app.cli.runs`, :mod:`~fdsl_app.cli.families`,
:mod:`~fdsl_app.cli.bench`.

Errors: bad flag values stop in argparse with a message naming the flag (exit 2). After parsing, bad input is a
``ValueError`` that fdsl_app raised on purpose: one line, exit 2; a :class:`~fdsl_app.errors.RunFailure` or an
``OSError`` (disk, permissions): one line, exit 1. Anything else is unexpected, a bug until shown otherwise: its
traceback is printed, then one line saying so (exit 1). ``FDSL_DEBUG=1`` shows the traceback of every error.
"""

from __future__ import annotations

import argparse
import linecache
import os
import sys
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple

from fdsl_app import provenance
from fdsl_app.cli import bench, families, runs, suite, train
from fdsl_app.cli.args import UsageError
from fdsl_app.errors import RunFailure

PROG = "fdsl_app"
_PACKAGE = Path(__file__).resolve().parent.parent


class Command(NamedTuple):
    """A verb: what it runs, its one-line help, and how it adds its flags (or its own table of sub-verbs)."""

    run: Callable[[argparse.Namespace], int] | None
    help: str
    configure: Callable[[argparse.ArgumentParser], None] | None = None
    subcommands: Mapping[str, Command] | None = None


BENCH_COMMANDS: dict[str, Command] = {
    "render": Command(bench.run_render, "IFS render throughput per mode, raster, size and point count",
                      bench.configure_render),  # fmt: skip
    "cache": Command(bench.run_cache, "what an attractor cache (mode cached) costs to build and to hold for a family",
                     bench.configure_cache),  # fmt: skip
    "gpu": Command(bench.run_gpu, "what only a GPU shows: device draws, chaos game, DeviceAugment, training fed by the "
                   "default path against a fixed batch, DDP resume (--dry-run: tiny, any device)", bench.configure_gpu),
    "loaders": Command(bench.run_loaders, "data loading: PNG ImageFolder, WebDataset, FFCV, DALI and rendering on the "
                       "fly, on the same images with the DeiT augmentation", bench.configure_loaders),  # fmt: skip
}

COMMANDS: dict[str, Command] = {
    "fit": Command(train.run_fit, "train from a recipe (default: the quick start): fdsl_app fit --config RECIPE "
                   "[key=value ...]", train.configure_fit),  # fmt: skip
    "recipes": Command(train.run_recipes, "list the recipes with their descriptions, and the config groups"),
    "validate": Command(train.run_validate, "validate a checkpoint", train.configure_evaluate),
    "test": Command(train.run_test, "test a checkpoint", train.configure_evaluate),
    "runs": Command(runs.run_runs, "list runs (state, step, metrics, speed), or compare a few side by side with a "
                    "plot of their curves", runs.configure_runs),  # fmt: skip
    "suite": Command(suite.run_suite, "fine-tune a pre-training run and a scratch baseline on a suite's datasets and "
                     "seeds, resumably, into one results table", suite.configure_suite),  # fmt: skip
    "families": Command(families.run_families, "list the formula families", families.configure_families),
    "search": Command(families.run_search, "generate a family's class parameters (FractalDB: the category search) "
                      "into a file", families.configure_search),  # fmt: skip
    "render": Command(families.run_render, "write a labelled grid (PNG): samples of a family, or without one every "
                      "renderer and raster variant", families.configure_render),  # fmt: skip
    "export": Command(families.run_export, "write a family's dataset to disk: PNG in class folders, or WebDataset "
                      "shards", families.configure_export),  # fmt: skip
    "bench": Command(None, "benchmarks: render (the renderer), cache (attractor caches), loaders (data pipelines)",
                     subcommands=BENCH_COMMANDS),  # fmt: skip
}


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
    except Exception as err:
        if os.environ.get("FDSL_DEBUG", "") not in ("", "0"):
            raise
        status = expected_status(err)
        if status is None:
            traceback.print_exc()
            sys.stderr.write(f"{PROG}: unexpected error (a bug, unless the input explains it): "
                             f"{type(err).__name__}: {err}\n")  # fmt: skip
            return 1
        hint = " (FDSL_DEBUG=1 shows the traceback)" if isinstance(err, OSError) else ""
        sys.stderr.write(f"{PROG}: error: {err}{hint}\n")
        return status


def expected_status(err: Exception) -> int | None:
    """The exit status of a failure the message explains (2: bad input, 1: the run failed), or None when `err` is
    unexpected. Bad input is a ``ValueError`` fdsl_app raised on purpose, by a ``raise`` statement in its code or by
    the argument checks of its C++ bindings; one raised by a library or a builtin (numpy's broadcasting,
    ``int("x")``) is no message of ours."""
    if isinstance(err, UsageError):
        return 2
    if isinstance(err, RunFailure | OSError):
        return 1
    return 2 if isinstance(err, ValueError) and _raised_on_purpose(err) else None


def _raised_on_purpose(err: BaseException) -> bool:
    """Whether `err` comes from a ``raise`` statement in fdsl_app's package, or from the C++ bindings as called by
    their typed face (``fdsl_app/render/__init__.py``, whose every call into them is checked there)."""
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return False
    path = Path(tb.tb_frame.f_code.co_filename).resolve()
    if not path.is_relative_to(_PACKAGE):
        return False
    line = linecache.getline(str(path), tb.tb_lineno).lstrip()
    return line.startswith("raise") or (path == _PACKAGE / "render" / "__init__.py" and "_render." in line)
