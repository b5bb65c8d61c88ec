"""``exfractaldb``: 3D IFS point clouds seen from a camera (ExFractalDB / MV-FractalDB / 3D-OFDB, spec section 5).

Classes come from the published category search (``3dfractal_render/category_search.py``), replayed on numpy's
legacy stream: per candidate ``randint(2, 8)`` maps of 12 ``U(-1, 1)`` parameters, ``p`` from ``|det|`` of the 3x3
part, a 10,000-uniform chain; accepted when the normalised cloud has no NaN (in y, as published) and a per-axis
variance above ``variance`` on all three axes. So ``exfractaldb`` with seed s finds the classes the published script
finds with ``--seed s``.

Instances are (weight row, view): the rows of the published ``weights_ins145.csv`` (identity plus each of the 12
parameters scaled by 0.4..0.9, 1.1..1.6 in every map; ``p`` kept) in its order, the first ``instances`` of them
(1: 3D-OFDB's one model per class). The cloud of (class, row) is fixed by the parameter seed, like the published
PLY files (drawn unseeded there). Views: ``fixed`` is MV-FractalDB's 12 yaws ``2 pi k / 12 + 30 deg`` with its
jitter of ``radians(U(-pi, pi))`` (about +-3.1 deg, drawn per sample); ``random`` a uniform yaw per sample
(ExFractalDB's "view-point at random"); ``sphere`` a uniformly random direction (yaw and pitch).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import numpy as np
from tqdm import tqdm

from fdsl_app.families.base import ClassParams, Family
from fdsl_app.families.registry import register_family
from fdsl_app.provenance import package_version
from fdsl_app.render import MAX_SIDE
from fdsl_app.render.ifs3d import MAP_COLUMNS, cloud_ifs3d, render_ifs3d
from fdsl_app.render.keys import splitmix64, uniforms

Views = Literal["random", "sphere", "fixed"]
FIXED_VIEWS = 12  # MV-FractalDB's viewpoints
MAX_MAPS = 7  # randint(2, 8)
#: The weight factors of weights_ins145.csv per parameter; 1.0 appears once, in parameter a's run.
FACTORS = (0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6)


def published_weights() -> np.ndarray:
    """The 145 rows of ``weights_ins145.csv`` ``(145, 12)``: for each parameter a..l its factors in order, the
    identity row sitting between a x 0.9 and a x 1.1."""
    rows = []
    for k in range(12):
        factors = FACTORS[:6] + ((1.0,) if k == 0 else ()) + FACTORS[6:]
        for f in factors:
            row = np.ones(12)
            row[k] = f
            rows.append(row)
    return np.array(rows)


WEIGHTS = published_weights()


def sample_candidate(rs: np.random.RandomState) -> np.ndarray:
    """One candidate system ``(N, 13)``, drawn from the legacy stream in the published order."""
    n = rs.randint(2, 8)
    maps = np.zeros((n, MAP_COLUMNS))
    for m in range(n):
        maps[m, :12] = rs.uniform(-1.0, 1.0, 12)
        maps[m, 12] = abs(np.linalg.det(maps[m, :9].reshape(3, 3)))
    total = 0.0
    for prob in maps[:, 12]:  # the published running sum, in its order (numpy's sum may add in another)
        total += prob
    maps[:, 12] /= total
    return maps


def accepts(cloud: np.ndarray, variance: float) -> bool:
    """The published acceptance of a normalised cloud ``(3, N)``: no NaN in y, every axis' variance > `variance`."""
    if np.isnan(cloud[1]).any():
        return False
    return bool((np.var(cloud, axis=1) > variance).all())


@dataclass
class ExFractalDBSettings:
    """Settings of ``exfractaldb`` (defaults: the published ExFractalDB-1k scripts)."""

    classes: int = 1000  # categories
    variance: float = 0.05  # search: per-axis variance threshold (ExFractalDB_render.sh; the script's default 0.15)
    search_points: int = 10_000  # search: chain length (published point_num)
    max_candidates: int = 10_000_000  # search: give up after this many candidates
    instances: int = 145  # weight rows per class (first N of weights_ins145.csv; 1 = 3D-OFDB)
    views: Views = "random"  # random yaw (ExFractalDB), sphere, or MV-FractalDB's 12 fixed yaws
    image_size: int = 224
    n_points: int = 10_000  # render: chain length (published point_num; one fewer points drawn)


@register_family
class ExFractalDB(Family):
    """3D IFS clouds projected in software (no OpenGL)."""

    name = "exfractaldb"
    Settings = ExFractalDBSettings

    def validate(self) -> None:
        s = self.settings
        self.require(s.classes >= 1, "classes", "an int >= 1")
        self.require(0.0 <= s.variance < 1.0, "variance", "in [0, 1) (a normalised axis' variance is at most 1)")
        self.require(2 <= s.search_points <= 10_000_000, "search_points", "an int in 2..10000000")
        self.require(s.max_candidates >= s.classes, "max_candidates", "an int >= classes")
        self.require(1 <= s.instances <= len(WEIGHTS), "instances", f"an int in 1..{len(WEIGHTS)}")
        self.require(s.views in ("random", "sphere", "fixed"), "views", "'random', 'sphere' or 'fixed'")
        self.require(8 <= s.image_size <= MAX_SIDE, "image_size", f"an int in 8..{MAX_SIDE}")
        self.require(2 <= s.n_points <= 10_000_000, "n_points", "an int in 2..10000000")

    @property
    def num_classes(self) -> int:
        return self.settings.classes

    @property
    def instances_per_class(self) -> int:
        views = FIXED_VIEWS if self.settings.views == "fixed" else 1
        return self.settings.instances * views

    def check_params(self, params: ClassParams) -> None:
        super().check_params(params)
        self.check_array(params, "params", (params.num_classes, MAX_MAPS, MAP_COLUMNS))
        n_maps = self.check_array(params, "n_maps", (params.num_classes,))
        if n_maps.size and (n_maps.min() < 1 or n_maps.max() > MAX_MAPS):
            raise ValueError(f"{self.name} parameter file: n_maps must be in 1..{MAX_MAPS}")

    def generate(self, seed: int, *, progress: bool = False) -> ClassParams:
        s = self.settings
        if not 0 <= int(seed) < 2**32:
            raise ValueError(f"{self.name} seeds numpy's legacy stream like the published search: seed must be in "
                             f"[0, 2**32), got {seed}")  # fmt: skip
        start = time.perf_counter()
        rs = np.random.RandomState(int(seed))
        params = np.zeros((s.classes, MAX_MAPS, MAP_COLUMNS))
        n_maps = np.zeros(s.classes, np.int32)
        tried = np.zeros(MAX_MAPS + 1, np.int64)
        taken = np.zeros(MAX_MAPS + 1, np.int64)
        accepted = candidates = 0
        with tqdm(total=s.classes, disable=not progress, unit="class", desc=self.name) as bar:
            while accepted < s.classes:
                if candidates >= s.max_candidates:
                    raise ValueError(f"{self.name}: {accepted} of {s.classes} classes after {candidates} candidates; "
                                     "raise max_candidates or lower variance")  # fmt: skip
                maps = sample_candidate(rs)
                cloud = cloud_ifs3d(maps, rs.random_sample(s.search_points))
                candidates += 1
                tried[len(maps)] += 1
                if accepts(cloud, s.variance):
                    params[accepted, : len(maps)] = maps
                    n_maps[accepted] = len(maps)
                    taken[len(maps)] += 1
                    accepted += 1
                    bar.update(1)
        seconds = time.perf_counter() - start
        per_maps = {
            str(n): {"accepted": int(taken[n]), "candidates": int(tried[n]), "rate": float(taken[n] / tried[n])}
            for n in range(2, MAX_MAPS + 1) if tried[n]
        }  # fmt: skip
        stats = {
            "source": "search", "candidates": candidates, "accepted": accepted,
            "acceptance_rate": accepted / candidates, "per_maps": per_maps, "seconds": round(seconds, 3),
            "candidates_per_second": candidates / max(seconds, 1e-9),
        }  # fmt: skip
        return ClassParams(self.name, self.describe(), int(seed), {"params": params, "n_maps": n_maps}, stats,
                           package_version())  # fmt: skip

    def chain_seeds(self, params: ClassParams, classes: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """The chain seed of (class, weight row): a hash of (parameter seed, class, row), never of the epoch."""
        ids = classes.astype(np.uint64) * np.uint64(len(WEIGHTS)) + rows.astype(np.uint64)
        return splitmix64(splitmix64(np.uint64(params.seed)) ^ splitmix64(ids))

    def cameras(self, instances: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """``(B, 2)`` (yaw, pitch) of each sample: its view index (fixed) and uniforms of its key."""
        u = uniforms(keys, range(2))
        cams = np.zeros((len(keys), 2))
        if self.settings.views == "fixed":
            k = instances % FIXED_VIEWS
            jitter = np.radians(-np.pi + 2 * np.pi * u[:, 0])  # radians(random.uniform(-pi, pi)), as published
            cams[:, 0] = 2 * np.pi * k / FIXED_VIEWS + np.radians(30.0) + jitter
        else:
            cams[:, 0] = 2 * np.pi * u[:, 0]
            if self.settings.views == "sphere":
                cams[:, 1] = np.arcsin(2 * u[:, 1] - 1)
        return cams

    def render(self, params, classes, instances, keys, out, *, threads=None, augment=None):  # noqa: D102
        if augment is not None:
            raise ValueError(f"{self.name} has no formula-space augmentation; augment its pixels instead")
        classes, instances, keys = self.check_batch(params, classes, instances, keys, out)
        rows = instances // FIXED_VIEWS if self.settings.views == "fixed" else instances
        maps = params.arrays["params"][classes].copy()
        maps[:, :, :12] *= WEIGHTS[rows][:, None, :]  # set_param's weight_a..l; p stays the class's
        return render_ifs3d(
            maps, out, seeds=self.chain_seeds(params, classes, rows), cameras=self.cameras(instances, keys),
            n_maps=params.arrays["n_maps"][classes], n_points=self.settings.n_points, threads=threads,
        )  # fmt: skip
