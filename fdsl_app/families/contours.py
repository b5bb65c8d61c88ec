"""Radial-contour families: ``rcdb`` (Kataoka et al., CVPR'22) and ``visualatom`` (Takashima et al., CVPR'23).

Per class the scripts fix the vertex count, contour count, Perlin amplitude and radial growth; per instance they
re-draw part of the geometry (RCDB: oval factors, start radius and centre; VisualAtom: the centre), the first
instance keeping the class's own values. Here instance geometry is a pure function of (parameter seed, class,
instance), so the dataset is fixed like the published one; the noise and gray levels of each render come from the
per-sample key, so every epoch draws them afresh.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from fdsl_app import render
from fdsl_app.families.base import ClassParams, Family
from fdsl_app.families.registry import register_family
from fdsl_app.provenance import package_version
from fdsl_app.render.keys import derive, splitmix64, uniforms

CANVAS = 512  # the reference canvas, in whose pixels all geometry is given
FIELD = {name: i for i, name in enumerate(render.CONTOUR_FIELDS)}


def _randint(rng: np.random.Generator, low: int, high: int) -> int:
    """Python's ``random.randint``: both ends included (the contour scripts use Python's ``random``)."""
    return int(rng.integers(low, high, endpoint=True))


def _contour_fields(**fields: float) -> np.ndarray:
    return np.array([float(fields.get(name, 0.0)) for name in render.CONTOUR_FIELDS])


def sample_rcdb_params(rng: np.random.Generator) -> np.ndarray:
    """One RCDB category (spec section 6), as a row in :data:`fdsl_app.render.CONTOUR_FIELDS` order.

    The vertex count is ``int(Exp(mean 100))`` resampled until 3..200 (the reference's 2 < n <= 200).
    """
    n = 0
    while not 3 <= n <= 200:
        n = int(rng.exponential(100.0))
    return _contour_fields(
        n_vertices=n, n_contours=_randint(rng, 1, 200), perlin_amp=rng.uniform(0, 4), line_width=rng.uniform(0, 0.1),
        radius=_randint(rng, 0, 100), oval_x=rng.uniform(1, 2), oval_y=rng.uniform(1, 2),
        center_x=(CANVAS + _randint(rng, -400, 400)) / 2, center_y=(CANVAS + _randint(rng, -400, 400)) / 2,
    )  # fmt: skip


def sample_visualatom_params(rng: np.random.Generator) -> np.ndarray:
    """One VisualAtom category (spec section 7); the two sine frequencies differ unless the first is 0."""
    n1 = _randint(rng, 0, 20)
    n2 = _randint(rng, 0, 20)
    while n1 != 0 and n2 == n1:
        n2 = _randint(rng, 0, 20)
    return _contour_fields(
        n_vertices=_randint(rng, 200, 1000), n_contours=_randint(rng, 1, 200), perlin_amp=rng.uniform(0, 4),
        line_width=rng.uniform(0, 0.1), radius=_randint(rng, 10, 60), oval_x=rng.uniform(1, 2),
        oval_y=rng.uniform(1, 2), center_x=(CANVAS + _randint(rng, -512, 512)) / 2,
        center_y=(CANVAS + _randint(rng, -512, 512)) / 2, freq1=n1, freq2=n2,
    )  # fmt: skip


@dataclass
class ContourSettings:
    """Settings of a contour family (defaults: the published scripts)."""

    classes: int = 1000  # categories
    instances: int = 1000  # images per category
    image_size: int = 512  # rendered size; geometry scales from the 512 px reference canvas
    color: bool = False  # gray replicated to 3 channels when True


class ContourFamily(Family):
    """Common machinery: per-class sampling, per-instance geometry, rendering."""

    Settings = ContourSettings
    style: render.ContourStyle

    def sample_class(self, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def instance_geometry(self, rows: np.ndarray, u: np.ndarray) -> None:
        """Re-draw the per-instance fields of `rows` in place from uniforms `u` (B, 5)."""
        raise NotImplementedError

    def validate(self) -> None:
        s = self.settings
        self.require(s.classes >= 1, "classes", "an int >= 1")
        self.require(s.instances >= 1, "instances", "an int >= 1")
        self.require(8 <= s.image_size <= render.MAX_SIDE, "image_size", f"an int in 8..{render.MAX_SIDE}")

    @property
    def num_classes(self) -> int:
        return self.settings.classes

    def check_params(self, params: ClassParams) -> None:
        super().check_params(params)
        self.check_array(params, "params", (params.num_classes, len(render.CONTOUR_FIELDS)))

    @property
    def instances_per_class(self) -> int:
        return self.settings.instances

    def generate(self, seed: int, *, progress: bool = False) -> ClassParams:
        start = time.perf_counter()
        rng = np.random.default_rng(seed)
        rows = np.stack([self.sample_class(rng) for _ in range(self.settings.classes)])
        stats = {"seconds": round(time.perf_counter() - start, 3)}
        return ClassParams(self.name, self.describe(), int(seed), {"params": rows}, stats, package_version())

    def sample_rows(self, params: ClassParams, classes: np.ndarray, instances: np.ndarray) -> np.ndarray:
        """The exact contour parameters of samples (class, instance): instance 0 is the class itself."""
        rows = params.arrays["params"][classes].copy()
        moved = instances > 0
        if moved.any():
            # Geometry of instance k of class c: a hash of (parameter seed, class, instance), not of the epoch.
            n = np.uint64(self.settings.instances)  # all uint64: no float on the way, exact for any index
            ids = classes[moved].astype(np.uint64) * n + instances[moved].astype(np.uint64)
            keys = splitmix64(splitmix64(np.uint64(params.seed)) ^ splitmix64(ids))
            sub = rows[moved]
            self.instance_geometry(sub, uniforms(keys, range(5)))
            rows[moved] = sub
        return rows

    def render(self, params, classes, instances, keys, out, *, threads=None, augment=None):  # noqa: D102
        if augment is not None:
            raise ValueError(f"{self.name} has no formula-space augmentation; augment its pixels instead")
        classes, instances, keys = self.check_batch(params, classes, instances, keys, out)
        rows = self.sample_rows(params, classes, instances)
        return render.render_contours(rows, out, seeds=derive(keys, 0), style=self.style, threads=threads)


def _centre(u: np.ndarray, half_range: int) -> np.ndarray:
    """(512 + randint(-r, r)) / 2 from uniforms."""
    return (CANVAS + (np.floor(u * (2 * half_range + 1)) - half_range)) / 2


@register_family
class Rcdb(ContourFamily):
    """RCDB: gray radial contours on white (spec section 6)."""

    name = "rcdb"
    style = "rcdb"

    def sample_class(self, rng: np.random.Generator) -> np.ndarray:
        return sample_rcdb_params(rng)

    def instance_geometry(self, rows: np.ndarray, u: np.ndarray) -> None:
        rows[:, FIELD["oval_x"]] = 1 + u[:, 0]
        rows[:, FIELD["oval_y"]] = 1 + u[:, 1]
        rows[:, FIELD["radius"]] = np.floor(u[:, 2] * 101)  # randint(0, 100)
        rows[:, FIELD["center_x"]] = _centre(u[:, 3], 400)
        rows[:, FIELD["center_y"]] = _centre(u[:, 4], 400)


@register_family
class VisualAtom(ContourFamily):
    """VisualAtom: gray sine-modulated contours on black (spec section 7)."""

    name = "visualatom"
    style = "visualatom"

    def sample_class(self, rng: np.random.Generator) -> np.ndarray:
        return sample_visualatom_params(rng)

    def instance_geometry(self, rows: np.ndarray, u: np.ndarray) -> None:
        rows[:, FIELD["center_x"]] = _centre(u[:, 3], 512)
        rows[:, FIELD["center_y"]] = _centre(u[:, 4], 512)
