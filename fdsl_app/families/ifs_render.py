"""How IFS families draw their samples: the render settings they share and the one call that renders them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fdsl_app import render
from fdsl_app.data.keys import derive

MODES = ("reference", "fast")
RASTERS = ("point", "patch", "union_patch", "full_patch", "density")


@dataclass
class IfsRenderSettings:
    """Render settings of an IFS family (they never change its class parameters)."""

    image_size: int = 362
    """Side in px of a rendered sample."""
    n_points: int = 200_000
    """Points per rendered sample."""
    mode: str = "reference"
    """Renderer mode: "reference" (the published renderer exactly) or "fast" (interleaved chains)."""
    raster: str = "patch"
    """Raster variant: point, patch (FractalDB), union_patch, full_patch or density."""
    color: bool = False
    """Colour points by FractalDB's colour wheel instead of gray."""


def check_render_settings(family: str, s: IfsRenderSettings) -> None:
    """ValueError naming the first render setting out of its range."""
    checks = [
        (s.image_size > 12, "image_size", "an int > 12 (the render pads 6 px each side)"),
        (1 <= s.n_points <= render.MAX_POINTS, "n_points", f"in 1..{render.MAX_POINTS:_}"),
        (s.mode in MODES, "mode", f"one of {', '.join(MODES)}"),
        (s.raster in RASTERS, "raster", f"one of {', '.join(RASTERS)}"),
        (not (s.color and s.raster == "density"), "color", "False with raster density (gray only)"),
    ]
    for ok, setting, allowed in checks:
        if not ok:
            raise ValueError(f"{family} setting {setting}={getattr(s, setting)!r} is not allowed: it must be {allowed}")


def render_systems(
    s: IfsRenderSettings,
    systems: np.ndarray,
    n_maps: np.ndarray,
    keys: np.ndarray,
    out: np.ndarray,
    *,
    flips: Any = 0,
    threads: int | None = None,
) -> np.ndarray:
    """Render one system per sample with the family's render settings and the samples' keys."""
    # FractalDB and 1p-frac re-seed every chain with 100 (reference mode); fast mode draws a chain per sample.
    seeds = render.REFERENCE_SEED if s.mode == "reference" else derive(keys, 0)
    return render.render_ifs(
        systems, out, seeds=seeds, patch_seeds=derive(keys, 1), n_maps=n_maps, n_points=s.n_points, mode=s.mode,
        raster=s.raster, color=s.color, flips=flips, threads=threads,
    )  # fmt: skip
