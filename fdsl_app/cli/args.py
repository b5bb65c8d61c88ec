"""What every verb's flags share: the flag types (argparse turns their errors into "argument --flag: <message>"),
the family flags, the output helper and the error for bad input found after parsing."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from fdsl_app import render


class UsageError(ValueError):
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
                        help="class parameters: a file from `fdsl_app search` or a named set (`fdsl_app "
                             "families` lists them); default: generated from --seed")  # fmt: skip
    parser.add_argument("--seed", type=seed_arg, default=0, help="seed of the parameters and the samples (default 0)")


def choice_list(choices: tuple[str, ...]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        values = [part.strip() for part in text.split(",") if part.strip()]
        bad = [v for v in values if v not in choices]
        if bad or not values:
            raise argparse.ArgumentTypeError(f"choose from {','.join(choices)} (comma-separated), got {text!r}")
        return values

    return parse


def add_threads(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int_arg(1), default=None, metavar="N",
                        help=f"render threads (default: all {render.cpu_count()} cores)")  # fmt: skip
