"""FractalDB's category search, and ``fdsl_app search``: a family's class parameters into a file, restartably.

The search (``fdsl-spec.md`` 2.1): candidates from :func:`~fdsl_app.families.sampling.fractaldb_candidates`, in
fixed batches of :data:`SEARCH_BATCH`, batch ``b`` drawn from ``SeedSequence([seed, b])``; a candidate becomes a
category when its reference point render (``search_size`` px, ``search_points`` points, pad ``search_pad``, chain
seed 100) lights at least ``fill_threshold`` of the pixels; candidates are accepted in order. So a seed gives the
same categories on any machine, and a search can stop after any batch and continue there without redrawing what it
examined.

A category search can take an hour. While it runs, :func:`run_search` saves its state every few seconds to
``<output stem>.partial.npz`` next to the output; a later run with the same family, settings and seed continues
from there and gives exactly the parameters of an uninterrupted run. Families without a search simply run
``generate``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
from tqdm import tqdm

from fdsl_app import render
from fdsl_app.errors import RunFailure
from fdsl_app.families.base import ClassParams, Family
from fdsl_app.families.params_io import load_params, save_params
from fdsl_app.families.sampling import fractaldb_candidates

#: Candidates per search batch. Fixed, never tied to the thread count, so a seed finds the same categories anywhere.
SEARCH_BATCH = 256
#: Automatic candidate budget per class: acceptance is about 2% at fill 0.2 (~50 candidates a class), so 10x room.
CANDIDATES_PER_CLASS = 500
#: Settings a resumed search may change: more (or fewer) classes, a larger candidate budget.
RESUMABLE_CHANGES = frozenset({"classes", "max_candidates"})


class SearchExhaustedError(RunFailure):
    """The candidate budget ran out before enough categories were found."""


@dataclass(frozen=True)
class SearchState:
    """Where a category search stands: enough to continue it, or to report it.

    Attributes:
        seed: the search seed.
        consumed: candidates examined so far, in candidate order.
        params: accepted systems ``(A, K, 7)``, K = max_maps, rows past a system's N zero.
        n_maps: maps of each accepted system ``(A,)``.
        fill: fill rate of each accepted system ``(A,)``.
        candidate: global candidate index of each accepted system ``(A,)``.
        seconds: search time spent so far, over all sessions.
        tried: candidates examined per map count N ``(MAX_MAPS + 1,)`` (all zero in checkpoints of older versions).
    """

    seed: int
    consumed: int
    params: np.ndarray
    n_maps: np.ndarray
    fill: np.ndarray
    candidate: np.ndarray
    seconds: float = 0.0
    tried: np.ndarray = field(default_factory=lambda: np.zeros(render.MAX_MAPS + 1, np.int64))

    @classmethod
    def empty(cls, seed: int, max_maps: int) -> SearchState:
        return cls(seed, 0, np.zeros((0, max_maps, 7)), np.zeros(0, np.int32), np.zeros(0), np.zeros(0, np.int64))

    @property
    def accepted(self) -> int:
        return len(self.n_maps)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The state as named arrays (the seed travels in the file header)."""
        return {f.name: np.asarray(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "seed"}

    @classmethod
    def from_arrays(cls, seed: int, arrays: dict[str, np.ndarray]) -> SearchState:
        """Inverse of :meth:`to_arrays`; ValueError if arrays are missing or inconsistent."""
        names = [f.name for f in dataclasses.fields(cls) if f.name not in ("seed", "tried")]
        missing = [n for n in names if n not in arrays]
        if missing:
            raise ValueError(f"search state lacks arrays {missing}")
        state = cls(seed, int(arrays["consumed"]), np.asarray(arrays["params"], np.float64),
                    np.asarray(arrays["n_maps"], np.int32), np.asarray(arrays["fill"], np.float64),
                    np.asarray(arrays["candidate"], np.int64), float(arrays["seconds"]),
                    np.asarray(arrays.get("tried", np.zeros(render.MAX_MAPS + 1)), np.int64))  # fmt: skip
        sizes = {len(state.params), len(state.n_maps), len(state.fill), len(state.candidate)}
        if len(sizes) != 1 or (state.accepted and state.candidate[-1] >= state.consumed):
            raise ValueError("search state arrays are inconsistent")
        return state

    def truncated(self, classes: int) -> SearchState:
        """The state of the same search stopped at its ``classes``-th acceptance (nothing to do if not past it)."""
        if self.accepted <= classes:
            return self
        consumed = int(self.candidate[classes - 1]) + 1
        keep = slice(0, classes)
        # The per-N counts cannot be cut at a candidate: zeroed, so that stats recounts them.
        return dataclasses.replace(self, consumed=consumed, params=self.params[keep], n_maps=self.n_maps[keep],
                                   fill=self.fill[keep], candidate=self.candidate[keep],
                                   tried=np.zeros_like(self.tried))  # fmt: skip


@dataclass(frozen=True)
class CategorySearch:
    """What a category search looks for (the search settings of FractalDB and 2D-OFDB, see the module docstring).

    Attributes:
        name: the family, for messages.
        classes: categories to find.
        budget: candidates it may examine before giving up.
    """

    name: str
    classes: int
    budget: int
    fill_threshold: float
    min_maps: int
    max_maps: int
    param_range: float
    search_size: int
    search_points: int
    search_pad: int
    #: How candidates are drawn (reported in the statistics): batches from ``SeedSequence([seed, batch])``.
    stream: ClassVar[str] = "seeded"

    @classmethod
    def of(cls, name: str, settings: Any) -> CategorySearch:
        """The search of a family's settings (``max_candidates`` 0: :data:`CANDIDATES_PER_CLASS` per class)."""
        fields = {f.name: getattr(settings, f.name) for f in dataclasses.fields(cls) if hasattr(settings, f.name)}
        budget = int(settings.max_candidates) or CANDIDATES_PER_CLASS * int(settings.classes)
        return cls(name=name, budget=budget, **fields)

    def start(self, seed: int) -> SearchState:
        """A search from its first candidate."""
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= seed < 2**64:
            raise ValueError(f"seed must be an int in [0, 2**64), got {seed!r}")
        return SearchState.empty(int(seed), self.max_maps)

    def candidates(self, seed: int, batch: int) -> tuple[np.ndarray, np.ndarray]:
        """Candidate batch `batch` of the search from `seed`: ``params`` ``(SEARCH_BATCH, max_maps, 7)``, ``n_maps``."""
        rng = np.random.default_rng(np.random.SeedSequence([seed, batch]))
        return fractaldb_candidates(rng, SEARCH_BATCH, min_maps=self.min_maps, max_maps=self.max_maps,
                                    param_range=self.param_range)  # fmt: skip

    def run(
        self, state: SearchState, *, progress: bool = False, on_step: Callable[[SearchState], None] | None = None
    ) -> SearchState:
        """Run the search from `state` to the end, with a progress bar over accepted classes.

        Args:
            state: where to start (:meth:`start` or a saved state).
            progress: show a tqdm bar on stderr.
            on_step: called with the state after every batch of candidates (checkpoints).

        Raises:
            SearchExhaustedError: the candidate budget ran out first.
        """
        state = state.truncated(self.classes)
        bar = tqdm(total=self.classes, initial=state.accepted, disable=not progress, unit="class",
                   desc=f"{self.name} search", dynamic_ncols=True)  # fmt: skip
        with bar:
            for state in self.steps(state):  # noqa: B020 - the last state is the result
                bar.update(state.accepted - bar.n)
                bar.set_postfix(candidates=state.consumed, rate=f"{state.accepted / max(state.consumed, 1):.2%}")
                if on_step is not None:
                    on_step(state)
        return state

    def steps(self, state: SearchState) -> Iterator[SearchState]:
        """Examine candidates one batch at a time from ``state.consumed``, yielding the new state after each.

        Raises:
            SearchExhaustedError: the candidate budget ran out before ``classes`` were accepted.
        """
        while state.accepted < self.classes:
            self._check_budget(state)
            start = time.perf_counter()
            batch, offset = divmod(state.consumed, SEARCH_BATCH)
            stop = min(SEARCH_BATCH, self.budget - batch * SEARCH_BATCH)
            params, n_maps = self.candidates(state.seed, batch)
            params, n_maps = params[offset:stop], n_maps[offset:stop]
            state = self._accept(state, params, n_maps, self.fill_rate(params, n_maps))
            state = dataclasses.replace(state, seconds=state.seconds + time.perf_counter() - start)
            yield state

    def _check_budget(self, state: SearchState) -> None:
        if state.consumed >= self.budget:
            raise SearchExhaustedError(
                f"{self.name} search found {state.accepted} of {self.classes} classes with fill rate >= "
                f"{self.fill_threshold} in {state.consumed} candidates (the budget); lower fill_threshold, "
                "raise max_candidates or ask for fewer classes"
            )

    def fill_rate(self, params: np.ndarray, n_maps: np.ndarray) -> np.ndarray:
        """The search's fill rate of each system."""
        return render.fill_rate(params, n_maps=n_maps, n_points=self.search_points, size=self.search_size,
                                pad=self.search_pad, seeds=render.REFERENCE_SEED)  # fmt: skip

    def _accept(self, state: SearchState, params: np.ndarray, n_maps: np.ndarray, fill: np.ndarray) -> SearchState:
        """`state` after examining the next candidates `params` (their fill rates `fill`) in order, stopping at the
        last class needed."""
        hits = np.flatnonzero(fill >= self.fill_threshold)[: self.classes - state.accepted]
        done = state.accepted + len(hits) == self.classes
        used = int(hits[-1]) + 1 if done and len(hits) else len(params)
        return dataclasses.replace(
            state, consumed=state.consumed + used, params=np.concatenate([state.params, params[hits]]),
            n_maps=np.concatenate([state.n_maps, n_maps[hits]]), fill=np.concatenate([state.fill, fill[hits]]),
            candidate=np.concatenate([state.candidate, state.consumed + hits]),
            tried=state.tried + np.bincount(n_maps[:used], minlength=len(state.tried)),
        )  # fmt: skip

    def map_counts(self, state: SearchState) -> np.ndarray:
        """Candidates examined per map count N, their draws regenerated (cheap): for states that lack the count."""
        tried = np.zeros(render.MAX_MAPS + 1, np.int64)
        for batch in range(-(-state.consumed // SEARCH_BATCH)):
            n_maps = self.candidates(state.seed, batch)[1][: state.consumed - batch * SEARCH_BATCH]
            tried += np.bincount(n_maps, minlength=len(tried))
        return tried

    def stats(self, state: SearchState) -> dict[str, Any]:
        """Candidates, acceptance overall and per map count N, time and throughput of a search."""
        tried = state.tried if state.tried.sum() == state.consumed else self.map_counts(state)
        hits = np.bincount(state.n_maps, minlength=len(tried))
        per_n = {
            str(n): {"candidates": int(tried[n]), "accepted": int(hits[n]), "rate": float(hits[n] / tried[n])}
            for n in range(len(tried)) if tried[n]
        }  # fmt: skip
        return {
            "source": "search", "stream": self.stream, "candidates": state.consumed, "accepted": state.accepted,
            "acceptance_rate": state.accepted / max(state.consumed, 1), "per_maps": per_n,
            "seconds": round(state.seconds, 3), "candidates_per_second": state.consumed / max(state.seconds, 1e-9),
        }  # fmt: skip


@dataclass(frozen=True)
class PublishedSearch(CategorySearch):
    """The published search script itself: one numpy stream, ``np.random.seed(seed)`` once, from which candidates
    and their chains draw in turn (:class:`fdsl_app.render.PublishedStream`); seed 1 gives FractalDB-1k's
    published categories. Resuming redraws the examined candidates' parameters without rendering them."""

    stream = "published"

    def start(self, seed: int) -> SearchState:
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= seed < 2**32:
            raise ValueError(f"the published search's seed is numpy's legacy seed, an int in [0, 2**32), got {seed!r}")
        return SearchState.empty(int(seed), self.max_maps)

    def _stream(self, seed: int) -> render.PublishedStream:
        return render.PublishedStream(seed, min_maps=self.min_maps, max_maps=self.max_maps,
                                      param_range=self.param_range, n_points=self.search_points)  # fmt: skip

    def steps(self, state: SearchState) -> Iterator[SearchState]:
        stream = self._stream(state.seed)
        stream.skip(state.consumed)
        while state.accepted < self.classes:
            self._check_budget(state)
            start = time.perf_counter()
            count = min(SEARCH_BATCH, self.budget - state.consumed)
            params, n_maps, fill = stream.examine(count, size=self.search_size, pad=self.search_pad)
            state = self._accept(state, params, n_maps, fill)
            state = dataclasses.replace(state, seconds=state.seconds + time.perf_counter() - start)
            yield state

    def map_counts(self, state: SearchState) -> np.ndarray:
        return np.bincount(self._stream(state.seed).skip(state.consumed), minlength=render.MAX_MAPS + 1)


@runtime_checkable
class SearchingFamily(Protocol):
    """A family whose ``generate`` may be a :class:`CategorySearch` (FractalDB, OFDB), which :func:`run_search` runs
    with checkpoints."""

    name: str

    def category_search(self) -> CategorySearch | None:
        """The search behind ``generate`` (None: its parameters come from elsewhere, e.g. published CSVs)."""

    def search_result(self, state: SearchState) -> ClassParams:
        """The parameters of a finished search."""

    def check_settings(self, params: ClassParams, also_free: Iterable[str] = ()) -> None:
        """ValueError unless `params` come from this family's settings, ignoring `also_free`."""


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
    search = family.category_search() if isinstance(family, SearchingFamily) else None
    if search is None:
        params = family.generate(seed, progress=progress)
        save_params(params, output)
        return params
    partial = partial_path(output)
    state = load_checkpoint(family, seed, partial) if partial.exists() else search.start(seed)
    checkpoint = _Checkpointer(family, seed, partial, checkpoint_every, state)
    try:
        params = family.search_result(search.run(state, progress=progress, on_step=checkpoint.step))
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

    def __init__(self, family: SearchingFamily, seed: int, path: Path, every: float, state: SearchState) -> None:
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


def save_checkpoint(family: SearchingFamily, seed: int, state: SearchState, path: Path) -> None:
    """Write `state` atomically, as a parameter file of family ``<name>.partial`` (so nothing trains on it)."""
    stats = {"candidates": state.consumed, "accepted": state.accepted, "seconds": state.seconds}
    partial = ClassParams(family=f"{family.name}.partial", settings=family.describe(), seed=int(seed),
                          arrays=state.to_arrays(), stats=stats)  # fmt: skip
    save_params(partial, path)


def load_checkpoint(family: SearchingFamily, seed: int, path: Path) -> SearchState:
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
