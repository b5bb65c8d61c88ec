"""FractalDB (Kataoka et al.) and 2D-OFDB (Nakamura et al.): IFS categories kept by a fill-rate search.

Category search (``fdsl-spec.md`` 2.1): a candidate has N ~ U{min_maps..max_maps} affine maps with a..f ~ U(-r, r)
and p proportional to ``|det A|``; it becomes a category when its reference point render (512 px, 100k points,
pad 6, chain seed 100) lights at least ``fill_threshold`` of the pixels. Candidates come in fixed batches, batch
``b`` drawn from ``SeedSequence([seed, b])``, and are accepted in candidate order, so a seed gives the same
categories on any machine and a search can resume at any candidate (:mod:`fdsl_app.families.search`).

Instances (spec 2.2, 8): FractalDB renders each category with the 25 rows of its weight file (factors on one of
a..f in every map; p untouched) x ``patch_redraws`` patch patterns x 4 flips; 2D-OFDB renders one image per category
with the weight file's first row (a x (1 - 2 delta)) and no flip. Patch masks come from the per-sample key, so every
epoch draws new ones, as the unseeded reference does between runs.
"""

from __future__ import annotations

import dataclasses
import math
import time
from abc import abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from tqdm import tqdm

from fdsl_app import render as renderer
from fdsl_app.families.base import ClassParams, Family
from fdsl_app.families.ifs import IfsRenderSettings, check_render_settings, render_systems
from fdsl_app.families.params_io import package_version
from fdsl_app.families.registry import register_family
from fdsl_app.render.formula_space import FormulaAugment

#: Candidates per search batch. Fixed, never tied to the thread count, so a seed finds the same categories anywhere.
SEARCH_BATCH = 256
#: Automatic candidate budget per class: acceptance is about 2% at fill 0.2 (~50 candidates a class), so 10x room.
CANDIDATES_PER_CLASS = 500
#: Row of the weight table that leaves the category unchanged (the published files list a's factors around it).
IDENTITY_ROW = 2
_MAX_POINTS = renderer.MAX_POINTS


@dataclass
class IFSSearchSettings(IfsRenderSettings):
    """Settings shared by FractalDB and 2D-OFDB: the category search and how instances are drawn."""

    classes: int = 1000
    """Categories to find."""
    fill_threshold: float = 0.2
    """Smallest share of lit pixels of the search render that makes a candidate a category."""
    min_maps: int = 2
    """Fewest affine maps of a candidate."""
    max_maps: int = 7
    """Most affine maps of a candidate (the scripts' randint(2, 8) gives 2..7)."""
    param_range: float = 1.0
    """Each of a..f is drawn from U(-param_range, param_range)."""
    search_size: int = 512
    """Side in px of the fill-rate render of the search."""
    search_points: int = 100_000
    """Points of the fill-rate render (the origin included)."""
    search_pad: int = 6
    """Border in px of the fill-rate render."""
    weight_delta: float = 0.4
    """The weights_{delta}.csv file: factors 1 - 2d, 1 - d, 1 + d, 1 + 2d on one of a..f."""
    csv_dir: str | None = None
    """Folder of published category CSVs (%05d.csv, rows a,b,c,d,e,f[,p]) to read instead of searching."""
    max_candidates: int = 0
    """Candidates the search may examine before giving up; 0 = 500 x classes."""


@dataclass
class FractalDBSettings(IFSSearchSettings):
    """FractalDB: 25 weight rows x ``patch_redraws`` patch patterns x 4 flips per category."""

    patch_redraws: int = 10
    """Patch patterns per (category, weight row): the scripts' --instance."""


@dataclass
class OFDBSettings(IFSSearchSettings):
    """2D-OFDB: one instance per category (weight row 0, no flip)."""


class SearchExhaustedError(RuntimeError):
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
    """

    seed: int
    consumed: int
    params: np.ndarray
    n_maps: np.ndarray
    fill: np.ndarray
    candidate: np.ndarray
    seconds: float = 0.0

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
        names = [f.name for f in dataclasses.fields(cls) if f.name != "seed"]
        missing = [n for n in names if n not in arrays]
        if missing:
            raise ValueError(f"search state lacks arrays {missing}")
        state = cls(seed, int(arrays["consumed"]), np.asarray(arrays["params"], np.float64),
                    np.asarray(arrays["n_maps"], np.int32), np.asarray(arrays["fill"], np.float64),
                    np.asarray(arrays["candidate"], np.int64), float(arrays["seconds"]))  # fmt: skip
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
        return dataclasses.replace(self, consumed=consumed, params=self.params[keep], n_maps=self.n_maps[keep],
                                   fill=self.fill[keep], candidate=self.candidate[keep])  # fmt: skip


def weight_table(delta: float) -> np.ndarray:
    """FractalDB's ``weights_{delta}.csv``: 25 rows of factors on a..f, in the published files' order.

    Rows 0-4 scale a by 1 - 2d, 1 - d, 1 (identity, :data:`IDENTITY_ROW`), 1 + d, 1 + 2d; then 4 rows each for b..f
    with 1 - 2d, 1 - d, 1 + d, 1 + 2d. A factor multiplies that one parameter in every map.
    """
    low = 1.0 - 2.0 * delta
    # weights_0.5.csv writes 0.01 where 1 - 2d is 0: a zero factor would erase the parameter from every map.
    factors = (0.01 if math.isclose(low, 0.0, abs_tol=1e-12) else low, 1.0 - delta, 1.0 + delta, 1.0 + 2.0 * delta)
    rows = []
    for param in range(6):
        for k, factor in enumerate(factors):
            if param == 0 and k == 2:
                rows.append(np.ones(6))
            row = np.ones(6)
            row[param] = factor
            rows.append(row)
    return np.array(rows)


def read_fractaldb_csv_folder(path: str | Path, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read the published FractalDB category CSVs of a folder (and its subfolders, as in the repository's csv0..39).

    Files are taken in sorted file-name order (the ``%05d.csv`` category number). Each file has one row ``a,b,c,d,
    e,f,p`` per map, no header; rows of 6 numbers get p = ``|det A|`` normalised, p not summing to 1 is normalised.

    Args:
        path: the folder.
        limit: read only the first `limit` files.

    Returns:
        ``params`` ``(C, K, 7)`` (K = most maps of any file, rows past a system's N zero) and ``n_maps`` ``(C,)``.

    Raises:
        ValueError: no folder, no CSV files, or a bad file (named with its line).
    """
    folder = Path(path)
    if not folder.is_dir():
        raise ValueError(f"FractalDB CSV folder {folder} does not exist")
    files = sorted(folder.rglob("*.csv"), key=lambda f: (f.name, f.as_posix()))
    if not files:
        raise ValueError(f"FractalDB CSV folder {folder} holds no .csv files")
    systems = [read_fractaldb_csv(f) for f in files[:limit]]
    return renderer.pack_systems(systems)


def read_fractaldb_csv(path: Path) -> np.ndarray:
    """One category CSV as ``(N, 7)`` rows ``a b c d e f p`` (see :func:`read_fractaldb_csv_folder`)."""
    rows: list[list[float]] = []
    for line_no, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            values = [float(v) for v in line.split(",")]
        except ValueError:
            raise ValueError(f"{path}, line {line_no}: not comma-separated numbers: {line.strip()!r:.80}") from None
        if len(values) not in (6, 7) or (rows and len(values) != len(rows[0])):
            raise ValueError(f"{path}, line {line_no}: {len(values)} numbers; every row must be a,b,c,d,e,f[,p]")
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"{path}, line {line_no}: numbers must be finite")
        rows.append(values)
    if not 2 <= len(rows) <= renderer.MAX_MAPS:
        raise ValueError(f"{path}: {len(rows)} maps; a FractalDB category has 2..{renderer.MAX_MAPS}")
    system = np.array(rows)
    p = system[:, 6] if system.shape[1] == 7 else np.abs(system[:, 0] * system[:, 3] - system[:, 1] * system[:, 2])
    if p.min() < 0 or p.sum() <= 0:
        raise ValueError(f"{path}: map probabilities p must be >= 0 with a positive sum")
    # Leave published p (summing to 1 up to rounding) bit-exact; renormalise only what clearly does not sum to 1.
    if abs(p.sum() - 1.0) > 1e-9:
        p = p / p.sum()
    return np.column_stack([system[:, :6], p])


class IFSSearchFamily(Family):
    """What FractalDB and 2D-OFDB share: the category search, the CSV source, weighted and flipped instances.

    Subclasses set ``name``, ``Settings``, :attr:`instances_per_class` and :meth:`instance_layout`.
    """

    #: Settings a parameter file may differ in: they pick instances or bound the search, never change a category.
    free_settings: ClassVar[frozenset[str]] = frozenset({"weight_delta", "max_candidates"})

    # --- settings --------------------------------------------------------------------------------------------------

    def validate(self) -> None:
        s = self.settings
        self._require(s.classes >= 1, "classes", "an int >= 1")
        self._require(0.0 <= s.fill_threshold <= 1.0, "fill_threshold", "in [0, 1]")
        self._require(2 <= s.min_maps <= renderer.MAX_MAPS, "min_maps", f"in 2..{renderer.MAX_MAPS}")
        self._require(s.min_maps <= s.max_maps <= renderer.MAX_MAPS, "max_maps", f"in min_maps..{renderer.MAX_MAPS}")
        self._require(0.0 < s.param_range < math.inf, "param_range", "a finite number > 0")
        self._require(s.search_pad >= 0, "search_pad", "an int >= 0")
        self._require(s.search_size > 2 * s.search_pad, "search_size", f"an int > 2 * search_pad ({2 * s.search_pad})")
        self._require(1 <= s.search_points <= _MAX_POINTS, "search_points", f"in 1..{_MAX_POINTS:_}")
        self._require(0.0 < s.weight_delta < math.inf, "weight_delta", "a finite number > 0")
        self._require(s.max_candidates >= 0, "max_candidates", "an int >= 0 (0: 500 x classes)")
        check_render_settings(self.name, s)
        self._require(s.csv_dir is None or Path(s.csv_dir).is_dir(), "csv_dir", "None or an existing folder")

    def _require(self, ok: bool, setting: str, allowed: str) -> None:
        if not ok:
            value = getattr(self.settings, setting)
            raise ValueError(f"{self.name} setting {setting}={value!r} is not allowed: it must be {allowed}")

    @property
    def formula_augment(self) -> bool:
        return self.settings.mode == "fast"

    @property
    def num_classes(self) -> int:
        return int(self.settings.classes)

    @property
    def candidate_budget(self) -> int:
        """Candidates the search may examine: ``max_candidates``, or 500 per class when that is 0."""
        return int(self.settings.max_candidates) or CANDIDATES_PER_CLASS * self.num_classes

    @property
    def resumable(self) -> bool:
        """Whether :meth:`generate` is a search that :func:`fdsl_app.families.search.run_search` can checkpoint."""
        return self.settings.csv_dir is None

    def check_params(self, params: ClassParams) -> None:
        """The base checks except for :attr:`free_settings`, and the arrays' shapes."""
        self.check_settings(params)
        shapes = {name: params.arrays[name].shape for name in ("params", "n_maps") if name in params.arrays}
        ok = len(shapes) == 2 and len(shapes["params"]) == 3 and shapes["params"][2] == 7
        if not ok or shapes["params"][0] != self.num_classes or shapes["n_maps"] != (self.num_classes,):
            raise ValueError(
                f"{self.name} parameter file must hold params ({self.num_classes}, K, 7) and n_maps "
                f"({self.num_classes},), got {shapes}"
            )

    def check_settings(self, params: ClassParams, also_free: Iterable[str] = ()) -> None:
        """The base check of family and settings, ignoring :attr:`free_settings` and `also_free`."""
        mine = self.describe()
        free = self.free_settings.union(also_free)
        # Our values in place of the file's for the free settings, so the base comparison skips them.
        relaxed = {**params.settings, **{k: mine[k] for k in free if k in mine}}
        super().check_params(dataclasses.replace(params, settings=relaxed))

    # --- generation ------------------------------------------------------------------------------------------------

    def generate(self, seed: int, *, progress: bool = False) -> ClassParams:
        """The categories: searched from `seed`, or read from ``csv_dir`` when it is set."""
        if self.settings.csv_dir is not None:
            return self._read_csv_dir(seed)
        return self.search(self.new_search(seed), progress=progress)

    def new_search(self, seed: int) -> SearchState:
        """A search from its first candidate."""
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= seed < 2**64:
            raise ValueError(f"seed must be an int in [0, 2**64), got {seed!r}")
        return SearchState.empty(int(seed), int(self.settings.max_maps))

    def search(
        self,
        state: SearchState,
        *,
        progress: bool = False,
        on_step: Callable[[SearchState], None] | None = None,
    ) -> ClassParams:
        """Run the search from `state` to the end, with a progress bar over accepted classes.

        Args:
            state: where to start (:meth:`new_search` or a saved state).
            progress: show a tqdm bar on stderr.
            on_step: called with the state after every batch of candidates (checkpoints).

        Raises:
            SearchExhaustedError: the candidate budget ran out first.
        """
        state = state.truncated(self.num_classes)
        bar = tqdm(total=self.num_classes, initial=state.accepted, disable=not progress, unit="class",
                   desc=f"{self.name} search", dynamic_ncols=True)  # fmt: skip
        latest = state
        with bar:
            for latest in self.search_steps(state):
                bar.update(latest.accepted - bar.n)
                bar.set_postfix(candidates=latest.consumed, rate=f"{latest.accepted / max(latest.consumed, 1):.2%}")
                if on_step is not None:
                    on_step(latest)
        return self.search_result(latest)

    def search_steps(self, state: SearchState) -> Iterator[SearchState]:
        """Examine candidates one batch at a time from ``state.consumed``, yielding the new state after each.

        Raises:
            SearchExhaustedError: the candidate budget ran out before ``classes`` were accepted.
        """
        budget = self.candidate_budget
        while state.accepted < self.num_classes:
            if state.consumed >= budget:
                raise SearchExhaustedError(
                    f"{self.name} search found {state.accepted} of {self.num_classes} classes with fill rate >= "
                    f"{self.settings.fill_threshold} in {state.consumed} candidates (the budget); lower "
                    "fill_threshold, raise max_candidates or ask for fewer classes"
                )
            start = time.perf_counter()
            batch, offset = divmod(state.consumed, SEARCH_BATCH)
            stop = min(SEARCH_BATCH, budget - batch * SEARCH_BATCH)
            params, n_maps = self.candidates(state.seed, batch)
            state = self._accept(state, params[offset:stop], n_maps[offset:stop])
            state = dataclasses.replace(state, seconds=state.seconds + time.perf_counter() - start)
            yield state

    def candidates(self, seed: int, batch: int) -> tuple[np.ndarray, np.ndarray]:
        """Candidate batch `batch` of the search from `seed`: ``params`` ``(SEARCH_BATCH, max_maps, 7)``, ``n_maps``.

        A candidate whose maps are all singular (probability zero) gets p = 0 everywhere; the search skips it.
        """
        s = self.settings
        rng = np.random.default_rng(np.random.SeedSequence([seed, batch]))
        n_maps = rng.integers(s.min_maps, s.max_maps + 1, size=SEARCH_BATCH).astype(np.int32)
        coefs = rng.uniform(-s.param_range, s.param_range, size=(SEARCH_BATCH, s.max_maps, 6))
        coefs[np.arange(s.max_maps) >= n_maps[:, None]] = 0.0
        det = np.abs(coefs[..., 0] * coefs[..., 3] - coefs[..., 1] * coefs[..., 2])
        total = det.sum(axis=1, keepdims=True)
        p = np.divide(det, total, out=np.zeros_like(det), where=total > 0)
        return np.concatenate([coefs, p[..., None]], axis=-1), n_maps

    def _accept(self, state: SearchState, params: np.ndarray, n_maps: np.ndarray) -> SearchState:
        """`state` after examining the next candidates `params` in order (stopping at the last class needed)."""
        fill = np.full(len(params), -np.inf)
        valid = np.flatnonzero(params[:, :, 6].sum(axis=1) > 0)
        if len(valid):
            s = self.settings
            fill[valid] = renderer.fill_rate(
                params[valid], n_maps=n_maps[valid], n_points=s.search_points, size=s.search_size,
                pad=s.search_pad, seeds=renderer.REFERENCE_SEED, threads=None,
            )  # fmt: skip
        hits = np.flatnonzero(fill >= self.settings.fill_threshold)[: self.num_classes - state.accepted]
        done = state.accepted + len(hits) == self.num_classes
        used = int(hits[-1]) + 1 if done and len(hits) else len(params)
        return dataclasses.replace(
            state, consumed=state.consumed + used, params=np.concatenate([state.params, params[hits]]),
            n_maps=np.concatenate([state.n_maps, n_maps[hits]]), fill=np.concatenate([state.fill, fill[hits]]),
            candidate=np.concatenate([state.candidate, state.consumed + hits]),
        )  # fmt: skip

    def search_result(self, state: SearchState) -> ClassParams:
        """The parameter set of a finished search, with its statistics."""
        arrays = {"params": state.params, "n_maps": state.n_maps, "fill": state.fill, "candidate": state.candidate}
        return self._class_params(state.seed, arrays, self.search_stats(state))

    def search_stats(self, state: SearchState) -> dict[str, Any]:
        """Candidates, acceptance overall and per map count N, time and throughput of a search."""
        tried = np.zeros(renderer.MAX_MAPS + 1, np.int64)
        for batch in range(-(-state.consumed // SEARCH_BATCH)):  # N of each candidate, regenerated (cheap)
            n_maps = self.candidates(state.seed, batch)[1][: state.consumed - batch * SEARCH_BATCH]
            tried += np.bincount(n_maps, minlength=len(tried))
        hits = np.bincount(state.n_maps, minlength=len(tried))
        per_n = {
            str(n): {"candidates": int(tried[n]), "accepted": int(hits[n]), "rate": float(hits[n] / tried[n])}
            for n in range(len(tried)) if tried[n]
        }  # fmt: skip
        return {
            "source": "search", "candidates": state.consumed, "accepted": state.accepted,
            "acceptance_rate": state.accepted / max(state.consumed, 1), "per_maps": per_n,
            "seconds": round(state.seconds, 3), "candidates_per_second": state.consumed / max(state.seconds, 1e-9),
        }  # fmt: skip

    def _read_csv_dir(self, seed: int) -> ClassParams:
        s = self.settings
        start = time.perf_counter()
        params, n_maps = read_fractaldb_csv_folder(s.csv_dir, limit=s.classes)
        if len(params) < s.classes:
            raise ValueError(f"csv_dir {s.csv_dir} holds {len(params)} category files, fewer than classes={s.classes}")
        if params.shape[1] < s.max_maps:  # the same array shape as a search, whatever the files hold
            params = np.pad(params, ((0, 0), (0, s.max_maps - params.shape[1]), (0, 0)))
        fill = renderer.fill_rate(params, n_maps=n_maps, n_points=s.search_points, size=s.search_size,
                                  pad=s.search_pad, seeds=renderer.REFERENCE_SEED)  # fmt: skip
        stats = {"source": "csv", "csv_dir": str(s.csv_dir), "accepted": len(params),
                 "seconds": round(time.perf_counter() - start, 3)}  # fmt: skip
        return self._class_params(seed, {"params": params, "n_maps": n_maps, "fill": fill}, stats)

    def _class_params(self, seed: int, arrays: dict[str, np.ndarray], stats: dict[str, Any]) -> ClassParams:
        return ClassParams(family=self.name, settings=self.describe(), seed=int(seed), arrays=arrays, stats=stats,
                           version=package_version())  # fmt: skip

    # --- rendering -------------------------------------------------------------------------------------------------

    @abstractmethod
    def instance_layout(self, instances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Weight-table row and flip (0..3) of each instance index."""

    def render(
        self,
        params: ClassParams,
        classes: np.ndarray,
        instances: np.ndarray,
        keys: np.ndarray,
        out: np.ndarray,
        *,
        threads: int | None = None,
        augment: FormulaAugment | None = None,
    ) -> np.ndarray:
        """Render (class, instance) samples into `out`: the category times its weight row, flipped; see the module."""
        s = self.settings
        classes, instances, keys = self.check_batch(params, classes, instances, keys, out)
        rows, flips = self.instance_layout(instances)
        systems = params.arrays["params"][classes]  # fancy indexing copies: scaling never touches `params`
        systems[..., :6] *= weight_table(s.weight_delta)[rows][:, None, :]
        n_maps = params.arrays["n_maps"][classes]
        return render_systems(s, systems, n_maps, keys, out, flips=flips, threads=threads, augment=augment)


@register_family
class FractalDB(IFSSearchFamily):
    """FractalDB (Kataoka et al.): 25 weight rows x patch re-draws x 4 flips per category (1000 at the defaults)."""

    name = "fractaldb"
    Settings = FractalDBSettings
    free_settings = IFSSearchFamily.free_settings | {"patch_redraws"}

    def validate(self) -> None:
        super().validate()
        self._require(self.settings.patch_redraws >= 1, "patch_redraws", "an int >= 1")

    @property
    def instances_per_class(self) -> int:
        return 25 * 4 * int(self.settings.patch_redraws)

    def instance_layout(self, instances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Instance i: weight row i // (4 patch_redraws), flip i % 4; the patch re-draw (i // 4) % patch_redraws
        only keeps instances distinct, its masks come from the sample key."""
        return instances // (4 * int(self.settings.patch_redraws)), instances % 4

    def file_stem(self, cls: int, instance: int) -> str:
        """The published name ``{category}_{weight row}_count_{patch re-draw}_flip{flip}``."""
        redraws = int(self.settings.patch_redraws)
        row, redraw, flip = instance // (4 * redraws), (instance // 4) % redraws, instance % 4
        return f"{cls:05d}_{row:02d}_count_{redraw}_flip{flip}"


@register_family
class OFDB(IFSSearchFamily):
    """2D-OFDB (Nakamura et al.): one instance per category, the weight file's first row (a x (1 - 2 delta))."""

    name = "ofdb"
    Settings = OFDBSettings

    @property
    def instances_per_class(self) -> int:
        return 1

    def instance_layout(self, instances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        zeros = np.zeros(len(instances), np.int64)
        return zeros, zeros
