"""``fdsl_app runs``: the runs under a root folder, one line each, or a few side by side with their curves."""

from __future__ import annotations

import argparse
from pathlib import Path

from fdsl_app.cli.args import say


def configure_runs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pattern", nargs="?", default="*", help="shell pattern of run names (default: every run)")
    parser.add_argument("--root", type=Path, default=Path("runs"), help="folder holding the runs (the fits' root=)")
    parser.add_argument("--compare", nargs="+", metavar="RUN", default=None,
                        help="tabulate these runs side by side and plot their curves (see --plot)")  # fmt: skip
    parser.add_argument("--plot", type=Path, default=None,
                        help="where --compare writes its PNG (default: ROOT/compare.png)")  # fmt: skip


def run_runs(args: argparse.Namespace) -> int:
    from fdsl_app.training.runs import curve_series, find_runs, side_by_side, table, write_curves

    if args.compare is None:
        runs = find_runs(args.root, args.pattern)
        if not runs:
            say(f"no runs matching {args.pattern!r} in {args.root}")
            return 0
        say(table([run.columns() for run in runs]))
        return 0
    known = {run.name: run for run in find_runs(args.root)}
    missing = [name for name in args.compare if name not in known]
    if missing:
        raise ValueError(f"no run {', '.join(map(repr, missing))} in {args.root}; runs there: "
                         f"{', '.join(known) or 'none'}")  # fmt: skip
    chosen = [known[name] for name in args.compare]
    say(side_by_side(chosen))
    plot = args.plot or args.root / "compare.png"
    write_curves(plot, {run.name: curve_series(run.rows) for run in chosen})
    say(f"curves: {plot}")
    return 0
