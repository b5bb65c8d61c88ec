"""``fdsl_app bench cache``: what an attractor cache costs to build (all cores) and to hold, for a family's settings
and parameters (e.g. the 1p-frac and FractalDB-1k recipes)."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fdsl_app import render
from fdsl_app.families import resolve_family
from fdsl_app.families.cache import open_cache


def run(family: str, settings: dict[str, Any], params_path: Path | None, seed: int, say: Callable[..., None]) -> float:
    """Build the cache of every system of the family (from `params_path`, else generated from `seed`) in a fresh
    folder; print and return the build seconds."""
    fam, params = resolve_family(family, settings, params_path)
    if params is None:
        start = time.perf_counter()
        params = fam.generate(seed)
        say(f"parameters: generated from seed {seed} in {time.perf_counter() - start:.1f} s")
    systems, n_maps = fam.all_systems(params)
    s = fam.settings
    with tempfile.TemporaryDirectory(prefix="fdsl_bench_cache_") as folder:
        start = time.perf_counter()
        cache = open_cache(systems, n_maps, side=s.image_size, n_points=s.n_points, dilate=fam.settings.raster in
                           ("patch", "full_patch"), cache_dir=folder, progress=True, name=fam.name)  # fmt: skip
        seconds = time.perf_counter() - start
        size = cache.words.nbytes
    cores = render.cpu_count()
    say(f"{fam.name}: {len(systems):,} systems ({params.num_classes:,} classes x {fam.variants_per_class} "
        f"variants) at {s.image_size} px, {s.n_points:,} points, raster {s.raster}")  # fmt: skip
    say(f"cache: {size / 2**20:,.1f} MiB ({size / len(systems) / 1024:.1f} KiB a system), built in {seconds:.1f} s "
        f"on {cores} cores = {seconds * cores / len(systems) * 1e3:.2f} ms of one core a system")  # fmt: skip
    return seconds
