"""``fdsl_app search``: generate a family's class parameters into a parameter file, restartably.

A category search (FractalDB, OFDB) can take an hour. While it runs, :func:`run_search` saves its state every few
seconds to ``<output stem>.partial.npz`` next to the output; a later run with the same family, settings and seed
continues from there (searches draw candidate batch ``b`` from ``SeedSequence([seed, b])``, so resuming skips the
examined candidates without redrawing them) and gives exactly the parameters of an uninterrupted run. Families
without a resumable search simply run ``generate``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from fdsl_app.families.base import ClassParams, Family
from fdsl_app.families.fractaldb import SearchExhaustedError, SearchState
from fdsl_app.families.params_io import load_params, save_params

#: Settings a resumed search may change: more (or fewer) classes, a larger candidate budget.
RESUMABLE_CHANGES = frozenset({"classes", "max_candidates"})


@runtime_checkable
class ResumableSearch(Protocol):
    """A family whose ``generate`` is a search that can stop and continue (see :class:`IFSSearchFamily`)."""

    resumable: bool

    def new_search(self, seed: int) -> SearchState: ...

    def check_settings(self, params: ClassParams, also_free: Iterable[str] = ...) -> None: ...

    def search(self, state: SearchState, *, progress: bool = ..., on_step: Any = ...) -> ClassParams: ...


def params_path(output: str | Path) -> Path:
    """Where :func:`fdsl_app.families.save_params` writes `output` (``.npz`` appended when missing)."""
    output = Path(output)
    return output if output.suffix == ".npz" else output.with_name(output.name + ".npz")


def partial_path(output: str | Path) -> Path:
    """The checkpoint of an unfinished search for `output`: ``classes.npz`` -> ``classes.partial.npz``."""
    return params_path(output).with_suffix(".partial.npz")


def run_search(
    family: Family, seed: int, output: Path, *, progress: bool = True, checkpoint_every: float = 10.0
) -> ClassParams:
    """Generate `family`'s class parameters from `seed` and write them to `output`, resuming an unfinished run.

    Args:
        family: the family with its settings.
        seed: the generation seed.
        output: the parameter file (``.npz``).
        progress: show a progress bar over accepted classes on stderr.
        checkpoint_every: seconds between checkpoints of the search state (0: after every batch).

    Returns:
        The parameters, as written (their ``stats`` read with :func:`format_stats`).

    Raises:
        ValueError: the output folder is missing, or the checkpoint belongs to another search.
        RuntimeError: the candidate budget ran out (the checkpoint is kept, so a rerun with a larger budget
            continues).
    """
    output = params_path(output)
    if not output.parent.is_dir():
        raise ValueError(f"cannot write {output}: folder {output.parent} does not exist")
    if checkpoint_every < 0:
        raise ValueError(f"checkpoint_every must be >= 0 seconds, got {checkpoint_every}")
    if not (isinstance(family, ResumableSearch) and family.resumable):
        params = family.generate(seed, progress=progress)
        save_params(params, output)
        return params
    partial = partial_path(output)
    state = load_checkpoint(family, seed, partial) if partial.exists() else family.new_search(seed)
    checkpoint = _Checkpointer(family, seed, partial, checkpoint_every, state)
    try:
        params = family.search(state, progress=progress, on_step=checkpoint.step)
    except SearchExhaustedError as err:
        checkpoint.save()
        raise SearchExhaustedError(f"{err}; progress is saved in {partial} and a rerun continues from it") from None
    except BaseException:  # Ctrl-C included: keep what was found
        checkpoint.save()
        raise
    save_params(params, output)
    partial.unlink(missing_ok=True)
    return params


class _Checkpointer:
    """Keeps the latest consistent search state and writes it at most every `every` seconds."""

    def __init__(self, family: Family, seed: int, path: Path, every: float, state: SearchState) -> None:
        self.family, self.seed, self.path, self.every = family, seed, path, every
        self.state = state
        self.last = time.monotonic()

    def step(self, state: SearchState) -> None:
        self.state = state
        if time.monotonic() - self.last >= self.every:
            self.save()

    def save(self) -> None:
        save_checkpoint(self.family, self.seed, self.state, self.path)
        self.last = time.monotonic()


def save_checkpoint(family: Family, seed: int, state: SearchState, path: Path) -> None:
    """Write `state` atomically, as a parameter file of family ``<name>.partial`` (so nothing trains on it)."""
    stats = {"candidates": state.consumed, "accepted": state.accepted, "seconds": state.seconds}
    partial = ClassParams(family=f"{family.name}.partial", settings=family.describe(), seed=int(seed),
                          arrays=state.to_arrays(), stats=stats)  # fmt: skip
    save_params(partial, path)


def load_checkpoint(family: Family, seed: int, path: Path) -> SearchState:
    """The search state saved in `path`; ValueError if it is another family's, seed's or settings' search."""
    saved = load_params(path)
    start_over = f"delete {path} to start the search over"
    if saved.family != f"{family.name}.partial" or saved.seed != seed:
        raise ValueError(
            f"{path} holds an unfinished search of family {saved.family.removesuffix('.partial')!r} with seed "
            f"{saved.seed}, not {family.name!r} with seed {seed}: {start_over}"
        )
    try:
        family.check_settings(dataclasses.replace(saved, family=family.name), also_free=RESUMABLE_CHANGES)
    except ValueError as err:
        raise ValueError(f"{path} holds an unfinished search with other settings: {err}; {start_over}") from None
    try:
        return SearchState.from_arrays(saved.seed, saved.arrays)
    except ValueError as err:
        raise ValueError(f"{path} is not a valid search checkpoint ({err}): {start_over}") from None


def format_stats(stats: dict[str, Any]) -> str:
    """Generation statistics as lines for the terminal (candidates, acceptance overall and per N, time, speed)."""
    if stats.get("source") != "search":
        return "\n".join(f"{key}: {value}" for key, value in stats.items())
    lines = [
        f"candidates searched: {stats['candidates']:,}",
        f"classes accepted:    {stats['accepted']:,} ({stats['acceptance_rate']:.2%} of candidates)",
        "acceptance by number of maps N:",
    ]
    for n, row in stats.get("per_maps", {}).items():
        lines.append(f"  N={n}: {row['accepted']:>6,} of {row['candidates']:>8,} ({row['rate']:.2%})")
    lines.append(f"time: {stats['seconds']:.1f} s ({stats['candidates_per_second']:,.0f} candidates/s)")
    return "\n".join(lines)
