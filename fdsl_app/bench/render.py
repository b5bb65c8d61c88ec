"""``fdsl_app bench render``: IFS render throughput against the numpy restatement of the published renderer.

Each figure warms up once, then times repeated calls until at least :data:`MIN_SECONDS` and :data:`MIN_REPEATS`
have passed and reports the median call. All rows render one fixed set of accepted FractalDB systems (found with
:mod:`fdsl_app.families.search`), so runs on different machines or builds are comparable.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from fdsl_app import provenance, render
from fdsl_app.families import create_family
from fdsl_app.render import reference_numpy

MODES, RASTERS = render.MODES, render.RASTERS
SIZES = (224, 362, 512)
POINTS = (100_000, 200_000)
MIN_SECONDS = 0.3
MIN_REPEATS = 3
N_SYSTEMS = 8
SYSTEM_SEED = 0


@dataclass(frozen=True)
class RenderRow:
    """One line of ``bench render``.

    Attributes:
        seconds_per_image: our render, one thread.
        ns_per_point: ``seconds_per_image / points`` in ns (one thread, so per core).
        images_per_s_one_core, images_per_s_all_cores: throughput on 1 and on ``threads`` threads.
        threads, batch: threads and images per call of the all-cores figure.
        baseline_*: the numpy/Python reference algorithm on one core; None when not run.
        speedup: ``baseline_seconds_per_image / seconds_per_image``.
    """

    mode: str
    raster: str
    size: int
    points: int
    seconds_per_image: float
    ns_per_point: float
    images_per_s_one_core: float
    images_per_s_all_cores: float
    threads: int
    batch: int
    baseline_seconds_per_image: float | None = None
    baseline_ns_per_point: float | None = None
    baseline_images_per_s: float | None = None
    speedup: float | None = None


@dataclass(frozen=True)
class RenderSettings:
    """What ``bench render`` measures."""

    sizes: Sequence[int] = SIZES
    points: Sequence[int] = POINTS
    modes: Sequence[str] = MODES
    rasters: Sequence[str] = RASTERS
    threads: int | None = None
    baseline: bool = True


def time_call(fn: Callable[[], object], min_seconds: float | None = None, min_repeats: int | None = None) -> float:
    """Median seconds of one ``fn()`` call, after one untimed warm-up call.

    Args:
        fn: the call to time.
        min_seconds, min_repeats: keep timing until both are reached; default :data:`MIN_SECONDS` and
            :data:`MIN_REPEATS` (read at call time, so a test can lower them).
    """
    min_seconds = MIN_SECONDS if min_seconds is None else min_seconds
    min_repeats = MIN_REPEATS if min_repeats is None else min_repeats
    fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_repeats or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_systems(count: int = N_SYSTEMS, seed: int = SYSTEM_SEED) -> list[np.ndarray]:
    """The fixed systems every benchmark renders: the first ``count`` FractalDB categories of `seed`."""
    found = create_family("fractaldb", classes=count).generate(seed).arrays
    return [system[:n] for system, n in zip(found["params"], found["n_maps"], strict=True)]


# --- the baseline: FractalDB's algorithm written plainly in numpy and Python (render/reference_numpy.py) ----------


def baseline_image(
    chain: tuple[np.ndarray, np.ndarray], size: int, raster: str, rng: np.random.Generator
) -> np.ndarray:
    """Rescale and draw one gray image of a reference chain with the numpy reference (masks from `rng`)."""
    cols, rows = reference_numpy.pixels(*chain, size, size)
    masks = rng.integers(1, 512, len(cols)) if raster == "patch" else rng.integers(1, 512)
    return reference_numpy.draw(cols, rows, size, size, raster=raster, masks=masks)


class Baseline:
    """Times of the baseline on one core, per image: its chain (timed once per system and point count, shared by
    all rasters, sizes and modes since it is the same algorithm) plus its rescale and drawing (timed per raster
    and size)."""

    def __init__(self, systems: Sequence[np.ndarray]) -> None:
        self.systems = list(systems)
        self._chains: dict[int, tuple[list[tuple[np.ndarray, np.ndarray]], float]] = {}
        self._times: dict[tuple[str, int, int], float] = {}

    def _chain(self, points: int) -> tuple[list[tuple[np.ndarray, np.ndarray]], float]:
        if points not in self._chains:
            start = time.perf_counter()
            chains = [reference_numpy.chain(s, points) for s in self.systems]
            self._chains[points] = chains, (time.perf_counter() - start) / len(self.systems)
        return self._chains[points]

    def seconds_per_image(self, raster: str, size: int, points: int) -> float:
        """Chain plus rescale-and-draw seconds of one image."""
        key = (raster, size, points)
        if key not in self._times:
            chains, chain_seconds = self._chain(points)
            rng = np.random.default_rng(0)

            def draw_all() -> None:
                for chain in chains:
                    baseline_image(chain, size, raster, rng)

            self._times[key] = chain_seconds + time_call(draw_all) / len(chains)
        return self._times[key]


# --- our renderer -------------------------------------------------------------------------------------------------


def _render_call(systems: Sequence[np.ndarray], batch: int, size: int, points: int, mode: str, raster: str,
                 threads: int) -> Callable[[], object]:  # fmt: skip
    params, n_maps = render.pack_systems([systems[i % len(systems)] for i in range(batch)])
    out = np.empty((batch, size, size), np.uint8)
    seeds = np.arange(batch, dtype=np.uint64)
    chain_seeds = render.REFERENCE_SEED if mode == "reference" else seeds

    def call() -> object:
        return render.render_ifs(params, out, seeds=chain_seeds, patch_seeds=seeds, n_maps=n_maps, n_points=points,
                                 mode=mode, raster=raster, threads=threads)  # fmt: skip

    return call


def measure_row(systems: Sequence[np.ndarray], mode: str, raster: str, size: int, points: int, threads: int,
                baseline: Baseline | None) -> RenderRow:  # fmt: skip
    """Time one (mode, raster, size, points) on one thread and on ``threads`` threads."""
    one = time_call(_render_call(systems, len(systems), size, points, mode, raster, 1)) / len(systems)
    # At least 4 images per thread, so the all-cores figure is not dominated by the slowest thread's tail.
    batch = -(-max(4 * threads, len(systems)) // len(systems)) * len(systems)
    many = time_call(_render_call(systems, batch, size, points, mode, raster, threads)) / batch
    row = RenderRow(mode, raster, size, points, one, one / points * 1e9, 1 / one, 1 / many, threads, batch)
    if baseline is None:
        return row
    base = baseline.seconds_per_image(raster, size, points)
    return replace(
        row,
        baseline_seconds_per_image=base,
        baseline_ns_per_point=base / points * 1e9,
        baseline_images_per_s=1 / base,
        speedup=base / one,
    )


def run_render_bench(settings: RenderSettings, on_row: Callable[[RenderRow], None] | None = None) -> list[RenderRow]:
    """Measure every (mode, raster, size, points) of ``settings``; ``on_row`` sees each row as it is measured."""
    systems = bench_systems()
    baseline = Baseline(systems) if settings.baseline else None
    threads = settings.threads or render.cpu_count()
    rows = []
    for mode in settings.modes:
        for raster in settings.rasters:
            for size in settings.sizes:
                for points in settings.points:
                    rows.append(measure_row(systems, mode, raster, size, points, threads, baseline))
                    if on_row is not None:
                        on_row(rows[-1])
    return rows


# --- reporting ----------------------------------------------------------------------------------------------------


def render_header(machine: dict[str, Any], settings: RenderSettings) -> str:
    """Markdown lines above the table: the machine and how the figures were taken."""
    threads = settings.threads or render.cpu_count()
    versions = machine["versions"]
    lines = [
        f"**Machine:** {machine['cpu_model']}, {machine['cores']} cores, fast kernel {machine['fast_kernel']}, "
        f"build `{machine['build_flags']}`; fdsl_app {versions['fdsl_app']}, numpy {versions['numpy']}, "
        f"Python {versions['python']}.",
        "",
        f"Each figure: median of >= {MIN_REPEATS} timed calls over >= {MIN_SECONDS} s after one warm-up; "
        f"the first {N_SYSTEMS} FractalDB categories of seed {SYSTEM_SEED} (fill >= 0.2); gray output; "
        f"all cores = {threads} threads, >= 4 images per thread.",
    ]
    if settings.baseline:
        lines.append(
            "Baseline: the reference algorithm in plain numpy/Python (Python-loop chain, numpy rescale and drawing), "
            "single core only; its chain is timed once per system and point count and its drawing per raster and "
            "size, shared by both modes (same algorithm); speed-up = baseline time / our time per image on one core."
        )
    return "\n".join(lines)


def render_table_head(settings: RenderSettings) -> str:
    """Markdown table header of ``bench render``."""
    threads = settings.threads or render.cpu_count()
    cols = ["mode", "raster", "size", "points", "ns/pt/core", "img/s 1 core", f"img/s {threads} cores"]
    if settings.baseline:
        cols += ["numpy ns/pt", "numpy img/s", "speed-up"]
    return "| " + " | ".join(cols) + " |\n|" + "|".join("---" if i < 2 else "---:" for i in range(len(cols))) + "|"


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def render_table_row(row: RenderRow, baseline: bool = True) -> str:
    """One markdown table line."""
    cells = [row.mode, row.raster, str(row.size), f"{row.points:,}", f"{row.ns_per_point:.1f}",
             _fmt(row.images_per_s_one_core), _fmt(row.images_per_s_all_cores)]  # fmt: skip
    if baseline:
        if row.baseline_images_per_s is None or row.speedup is None or row.baseline_ns_per_point is None:
            cells += ["-", "-", "-"]
        else:
            cells += [f"{row.baseline_ns_per_point:.0f}", f"{row.baseline_images_per_s:.2f}", f"{row.speedup:,.0f}x"]
    return "| " + " | ".join(cells) + " |"


def write_json(path: str | Path, rows: Sequence[RenderRow], machine: dict[str, Any], settings: RenderSettings) -> None:
    """Write the rows, the machine and the settings of a run as JSON."""
    doc = {"benchmark": "render", "machine": machine, "settings": asdict(settings),
           "method": {"statistic": "median", "min_seconds": MIN_SECONDS, "min_repeats": MIN_REPEATS,
                      "systems": N_SYSTEMS, "system_seed": SYSTEM_SEED},
           "rows": [asdict(r) for r in rows]}  # fmt: skip
    Path(path).write_text(json.dumps(doc, indent=2) + "\n")


def run(settings: RenderSettings, json_path: Path | None, say: Callable[..., None]) -> list[RenderRow]:
    """Measure every row of `settings`, printing the header and each row with `say` as it is measured."""
    machine = provenance.machine()
    say(render_header(machine, settings))
    say()
    say(render_table_head(settings))
    start = time.perf_counter()
    rows = run_render_bench(settings, on_row=lambda row: say(render_table_row(row, settings.baseline)))
    say()
    say(f"{len(rows)} rows in {time.perf_counter() - start:.1f} s")
    if json_path is not None:
        write_json(json_path, rows, machine, settings)
        say(f"wrote {json_path}")
    return rows
