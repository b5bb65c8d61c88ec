"""The family verbs of the command line: ``families``, ``search``, ``render <family>`` and ``export``.

Each pair ``configure_*`` / ``run_*`` is wired into :data:`fdsl_app.cli.COMMANDS`. Family settings come as
``--set key=value`` (values parsed as YAML: numbers, booleans, lists), checked against the family's settings.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from fdsl_app.data import export
from fdsl_app.families import ClassParams, Family, create_family, family_class, list_families, preview, resolve_family


class UsageError(Exception):
    """A problem with the user's input found after parsing (exit code 2)."""


def say(text: str = "") -> None:
    """One line of command output on stdout, flushed (the verbs report progress as they go)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def setting_arg(text: str) -> tuple[str, Any]:
    """A ``--set key=value`` flag: the value read as YAML (numbers, booleans, lists)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError:
        raise argparse.ArgumentTypeError(f"cannot read the value of {key!r}: {value!r}") from None


def int_arg(low: int, high: int | None = None, hint: str = "") -> Callable[[str], int]:
    """An integer flag in ``low..high`` (no upper bound: None); `hint` follows the bound in the message."""

    def parse(text: str) -> int:
        try:
            value = int(text.replace("_", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            bound = f">= {low:,}" if high is None else f"in {low:,}..{high:,}"
            raise argparse.ArgumentTypeError(f"must be {bound}{hint}, got {value:,}")
        return value

    return parse


def int_list_arg(item: Callable[[str], int], example: str) -> Callable[[str], list[int]]:
    """A comma-separated list of `item` values (at least one); `example` shows one in the message."""

    def parse(text: str) -> list[int]:
        values = [item(part.strip()) for part in text.split(",") if part.strip()]
        if not values:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, e.g. {example}")
        return values

    return parse


def seed_arg(text: str) -> int:
    """A seed: an integer in [0, 2**64)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not 0 <= value < 2**64:
        raise argparse.ArgumentTypeError(f"must be between 0 and 2**64 - 1, got {value}")
    return value


def add_family_arguments(parser: argparse.ArgumentParser, *, family_required: bool = True) -> None:
    """The family, its settings and where its parameters come from."""
    parser.add_argument("family", nargs=None if family_required else "?", help="family name (see `fdsl_app families`)")
    parser.add_argument("--set", dest="settings", type=setting_arg, action="append", default=[], metavar="KEY=VALUE",
                        help="override a family setting (repeatable), e.g. --set image_size=224")  # fmt: skip
    parser.add_argument("--params", type=Path, default=None, metavar="FILE",
                        help="class parameters from `fdsl_app search` (default: generated from --seed)")  # fmt: skip
    parser.add_argument("--seed", type=seed_arg, default=0, help="seed of the parameters and the samples (default 0)")


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
    return 0


# --- search -------------------------------------------------------------------------------------------------------


def configure_search(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("family", help="family name (see `fdsl_app families`)")
    parser.add_argument("--classes", type=int, default=None, help="number of classes (default: the family's)")
    parser.add_argument("--seed", type=seed_arg, default=0, help="seed of the search (default 0)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="parameter file to write (.npz)")
    parser.add_argument("--set", dest="settings", type=setting_arg, action="append", default=[], metavar="KEY=VALUE",
                        help="override a family setting (repeatable), e.g. --set fill_threshold=0.1")  # fmt: skip
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def run_search(args: argparse.Namespace) -> int:
    from fdsl_app.families import search  # the search machinery (and tqdm) only when searching

    overrides = dict(args.settings) | ({} if args.classes is None else {"classes": args.classes})
    family = create_family(args.family, **overrides)
    if not args.output.parent.is_dir():
        raise UsageError(f"output folder {args.output.parent} does not exist; create it or choose another -o path")
    start = time.perf_counter()
    params = search.run_search(family, args.seed, args.output, progress=args.progress)
    say(f"wrote {args.output} ({params.num_classes} {family.name} classes, seed {args.seed})")
    say(search.format_stats(params.stats))
    say(f"elapsed: {time.perf_counter() - start:.1f} s")
    return 0


# --- render <family> ----------------------------------------------------------------------------------------------


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
