"""FractalDB (Kataoka et al.) and 2D-OFDB (Nakamura et al.): IFS categories kept by a fill-rate search.

Category search (``fdsl-spec.md`` 2.1): a candidate has N ~ U{min_maps..max_maps} affine maps with a..f ~ U(-r, r)
and p proportional to ``|det A|``; it becomes a category when its reference point render (512 px, 100k points,
pad 6, chain seed 100) lights at least ``fill_threshold`` of the pixels. Candidates come in fixed batches, batch
``b`` drawn from ``SeedSequence([seed, b])``, and are accepted in candidate order, so a seed gives the same
categories on any machine and a search can resume at any candidate (:mod:`fdsl_app.families.search`). With
``published_stream`` the search is the published script's instead: one numpy stream from ``np.random.seed(seed)``
(:class:`~fdsl_app.families.search.PublishedSearch`); seed 1 replays FractalDB-1k's published categories, which a
run names as ``data.params: fractaldb1k-published`` (made on first use, kept in the cache folder).

Instances (spec 2.2, 8): FractalDB renders each category with the 25 rows of its weight file (factors on one of
a..f in every map; p untouched) x ``patch_redraws`` patch patterns x 4 flips; 2D-OFDB renders one image per category
with the weight file's first row (a x (1 - 2 delta)) and no flip. Patch masks come from the per-sample key, so every
epoch draws new ones, as the unseeded reference does between runs.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from fdsl_app import render
from fdsl_app.families.base import ClassParams
from fdsl_app.families.cache import default_cache_dir
from fdsl_app.families.fractaldb_csv import read_fractaldb_csv_folder
from fdsl_app.families.ifs import IfsFamily, IfsRenderSettings
from fdsl_app.families.registry import make_settings, register_family, register_named_params
from fdsl_app.families.search import CategorySearch, PublishedSearch, SearchState, run_search
from fdsl_app.files import locked
from fdsl_app.provenance import package_version

#: Row of the weight table that leaves the category unchanged (the published files list a's factors around it).
IDENTITY_ROW = 2


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
    published_stream: bool = False
    """Draw candidates as the published search script does, all from one numpy stream (np.random.seed(seed) once);
    with seed 1 and 1000 classes: the published FractalDB-1k categories, bit for bit."""


@dataclass
class FractalDBSettings(IFSSearchSettings):
    """FractalDB: 25 weight rows x ``patch_redraws`` patch patterns x 4 flips per category."""

    patch_redraws: int = 10
    """Patch patterns per (category, weight row): the scripts' --instance."""


@dataclass
class OFDBSettings(IFSSearchSettings):
    """2D-OFDB: one instance per category (weight row 0, no flip)."""


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


class IFSSearchFamily(IfsFamily):
    """What FractalDB and 2D-OFDB share: the category search, the CSV source, weighted and flipped instances.

    Subclasses set ``name``, ``Settings``, :attr:`instances_per_class` and :meth:`instance_layout`.
    """

    #: Settings a parameter file may differ in: they pick instances or bound the search, never change a category.
    free_settings: ClassVar[frozenset[str]] = frozenset({"weight_delta", "max_candidates"})

    # --- settings --------------------------------------------------------------------------------------------------

    def validate(self) -> None:
        s = self.settings
        self.require(s.classes >= 1, "classes", "an int >= 1")
        self.require(0.0 <= s.fill_threshold <= 1.0, "fill_threshold", "in [0, 1]")
        self.require(2 <= s.min_maps <= render.MAX_MAPS, "min_maps", f"in 2..{render.MAX_MAPS}")
        self.require(s.min_maps <= s.max_maps <= render.MAX_MAPS, "max_maps", f"in min_maps..{render.MAX_MAPS}")
        self.require(0.0 < s.param_range < math.inf, "param_range", "a finite number > 0")
        self.require(s.search_pad >= 0, "search_pad", "an int >= 0")
        self.require(s.search_size > 2 * s.search_pad, "search_size", f"an int > 2 * search_pad ({2 * s.search_pad})")
        self.require(1 <= s.search_points <= render.MAX_POINTS, "search_points", f"in 1..{render.MAX_POINTS:_}")
        self.require(0.0 < s.weight_delta < math.inf, "weight_delta", "a finite number > 0")
        self.require(s.max_candidates >= 0, "max_candidates", "an int >= 0 (0: 500 x classes)")
        super().validate()
        self.require(s.csv_dir is None or Path(s.csv_dir).is_dir(), "csv_dir", "None or an existing folder")
        self.require(not (s.published_stream and s.csv_dir), "published_stream",
                     "false when csv_dir is set (the categories come from the files, not from a search)")  # fmt: skip

    @property
    def num_classes(self) -> int:
        return int(self.settings.classes)

    def check_params(self, params: ClassParams) -> None:
        """The base checks except for :attr:`free_settings`, and the arrays' shapes."""
        self.check_settings(params)
        self.check_systems(params)

    def check_settings(self, params: ClassParams, also_free: Iterable[str] = ()) -> None:
        """The base check of family and settings, ignoring :attr:`free_settings` and `also_free`."""
        mine = self.describe()
        free = self.free_settings.union(also_free)
        # Our values in place of the file's for the free settings, so the base comparison skips them.
        relaxed = {**params.settings, **{k: mine[k] for k in free if k in mine}}
        self.check_origin(dataclasses.replace(params, settings=relaxed))

    # --- generation ------------------------------------------------------------------------------------------------

    def category_search(self) -> CategorySearch | None:
        """The search behind :meth:`generate`; None when ``csv_dir`` supplies the categories."""
        if self.settings.csv_dir is not None:
            return None
        return (PublishedSearch if self.settings.published_stream else CategorySearch).of(self.name, self.settings)

    def generate(self, seed: int, *, progress: bool = False) -> ClassParams:
        """The categories: searched from `seed` (:mod:`fdsl_app.families.search`), or read from ``csv_dir``."""
        search = self.category_search()
        if search is None:
            return self._read_csv_dir(seed)
        return self.search_result(search.run(search.start(seed), progress=progress))

    def search_result(self, state: SearchState) -> ClassParams:
        """The parameter set of a finished search, with its statistics."""
        search = self.category_search()
        assert search is not None, "search_result of a family that reads csv_dir"
        arrays = {"params": state.params, "n_maps": state.n_maps, "fill": state.fill, "candidate": state.candidate}
        return self._class_params(state.seed, arrays, search.stats(state))

    def _read_csv_dir(self, seed: int) -> ClassParams:
        s = self.settings
        start = time.perf_counter()
        params, n_maps = read_fractaldb_csv_folder(s.csv_dir, limit=s.classes)
        if len(params) < s.classes:
            raise ValueError(f"csv_dir {s.csv_dir} holds {len(params)} category files, fewer than classes={s.classes}")
        if params.shape[1] < s.max_maps:  # the same array shape as a search, whatever the files hold
            params = np.pad(params, ((0, 0), (0, s.max_maps - params.shape[1]), (0, 0)))
        fill = CategorySearch.of(self.name, s).fill_rate(params, n_maps)
        stats = {"source": "csv", "csv_dir": str(s.csv_dir), "accepted": len(params),
                 "seconds": round(time.perf_counter() - start, 3)}  # fmt: skip
        return self._class_params(seed, {"params": params, "n_maps": n_maps, "fill": fill}, stats)

    def _class_params(self, seed: int, arrays: dict[str, np.ndarray], stats: dict[str, Any]) -> ClassParams:
        return ClassParams(family=self.name, settings=self.describe(), seed=int(seed), arrays=arrays, stats=stats,
                           version=package_version())  # fmt: skip

    # --- rendering -------------------------------------------------------------------------------------------------

    def variant_systems(
        self, params: ClassParams, classes: np.ndarray, variants: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The category times its weight row (the variant); see the module."""
        systems = params.arrays["params"][classes]  # fancy indexing copies: scaling never touches `params`
        systems[..., :6] *= weight_table(self.settings.weight_delta)[variants][:, None, :]
        return systems, params.arrays["n_maps"][classes]


@register_family
class FractalDB(IFSSearchFamily):
    """FractalDB (Kataoka et al.): 25 weight rows x patch re-draws x 4 flips per category (1000 at the defaults)."""

    name = "fractaldb"
    Settings = FractalDBSettings
    free_settings = IFSSearchFamily.free_settings | {"patch_redraws"}

    def validate(self) -> None:
        super().validate()
        self.require(self.settings.patch_redraws >= 1, "patch_redraws", "an int >= 1")

    @property
    def instances_per_class(self) -> int:
        return 25 * 4 * int(self.settings.patch_redraws)

    @property
    def variants_per_class(self) -> int:
        return 25  # the weight rows

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


#: The published FractalDB-1k (hirokatsukataoka16/FractalDB-Pretrained-ResNet-PyTorch at 1b8fb9f,
#: data/csv_rate0.2_category1000): its search script replayed from np.random.seed(1), values bit for bit.
PUBLISHED_1K = "fractaldb1k-published"


def published_fractaldb1k(folder: str | Path | None = None, *, progress: bool = True) -> Path:
    """The parameter file of the published FractalDB-1k categories in `folder` (default: the cache folder,
    ``$FDSL_CACHE_DIR``), regenerated by the published search on first use (under a minute on a few cores) while
    the node's other processes wait for it."""
    folder = Path(folder) if folder is not None else default_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{PUBLISHED_1K}.npz"
    with locked(folder / f"{PUBLISHED_1K}.lock"):
        if not path.is_file():
            family = FractalDB(make_settings(FractalDB, {"classes": 1000, "published_stream": True}))
            run_search(family, 1, path, progress=progress)
    return path


register_named_params(
    PUBLISHED_1K, "FractalDB-1k's 1,000 published categories, regenerated by its search replayed from seed 1",
    published_fractaldb1k,
)  # fmt: skip
