"""Preview grids: every renderer variant side by side, or a family's samples as the model sees them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from fdsl_app import render
from fdsl_app.families.base import ClassParams, Family
from fdsl_app.families.contours import CANVAS, sample_rcdb_params, sample_visualatom_params
from fdsl_app.families.registry import create_family
from fdsl_app.render.grid import GridLayout, grid_layout, image_grid
from fdsl_app.render.keys import sample_keys

# --- every renderer variant -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreviewInputs:
    """Everything a preview row renders from: one entry per column."""

    params: np.ndarray
    n_maps: np.ndarray
    seeds: np.ndarray
    rcdb: np.ndarray
    visualatom: np.ndarray
    size: int
    points: int
    threads: int | None


def _ifs_row(mode: render.Mode, raster: render.Raster, color: bool = False) -> Callable[[PreviewInputs], np.ndarray]:
    def draw(inp: PreviewInputs) -> np.ndarray:
        out = np.empty((len(inp.params), inp.size, inp.size) + ((3,) if color else ()), np.uint8)
        # Reference mode keeps FractalDB's fixed chain seed (100); only its patch masks vary per column.
        seeds = render.REFERENCE_SEED if mode == "reference" else inp.seeds
        return render.render_ifs(
            inp.params, out, seeds=seeds, patch_seeds=inp.seeds, n_maps=inp.n_maps, n_points=inp.points,
            mode=mode, raster=raster, color=color, threads=inp.threads,
        )  # fmt: skip

    return draw


def _contour_row_renderer(style: render.ContourStyle) -> Callable[[PreviewInputs], np.ndarray]:
    def draw(inp: PreviewInputs) -> np.ndarray:
        params = inp.rcdb if style == "rcdb" else inp.visualatom
        out = np.empty((len(params), inp.size, inp.size), np.uint8)
        return render.render_contours(
            params, out, seeds=inp.seeds, style=style, canvas_size=float(CANVAS), threads=inp.threads
        )

    return draw


#: Rows of the preview grid: label and how to draw it (one image per column).
PREVIEW_ROWS: tuple[tuple[str, Callable[[PreviewInputs], np.ndarray]], ...] = (
    ("reference point", _ifs_row("reference", "point")),
    ("reference patch (FractalDB)", _ifs_row("reference", "patch")),
    ("fast patch", _ifs_row("fast", "patch")),
    ("fast union patch", _ifs_row("fast", "union_patch")),
    ("fast density", _ifs_row("fast", "density")),
    ("fast colour patch", _ifs_row("fast", "patch", color=True)),
    ("RCDB", _contour_row_renderer("rcdb")),
    ("VisualAtom", _contour_row_renderer("visualatom")),
)


@dataclass(frozen=True)
class Preview:
    """A rendered preview grid and its IFS systems: the first FractalDB categories of the seed."""

    image: Image.Image
    layout: GridLayout
    systems: ClassParams


def render_preview(
    columns: int = 6, size: int = 128, seed: int = 0, points: int = 100_000, threads: int | None = None
) -> Preview:
    """Render :data:`PREVIEW_ROWS` for ``columns`` random systems into a labelled grid.

    Args:
        columns: distinct random systems (IFS, RCDB and VisualAtom), one per column.
        size: tile size in pixels.
        seed: seed of everything random: the FractalDB category search (its published settings), the contour
            parameters, the render seeds.
        points: points per IFS image.
        threads: render threads (default: all cores).
    """
    systems = create_family("fractaldb", classes=columns).generate(seed)
    params, n_maps = systems.arrays["params"], systems.arrays["n_maps"]
    rng = np.random.default_rng(seed)
    inputs = PreviewInputs(
        params=params, n_maps=n_maps, seeds=rng.integers(0, 2**32, columns, dtype=np.uint64),
        rcdb=np.stack([sample_rcdb_params(rng) for _ in range(columns)]),
        visualatom=np.stack([sample_visualatom_params(rng) for _ in range(columns)]),
        size=size, points=points, threads=threads,
    )  # fmt: skip
    tiles = [list(draw(inputs)) for _, draw in PREVIEW_ROWS]
    labels = [label for label, _ in PREVIEW_ROWS]
    heads = [f"N={n}, fill {f:.2f}" for n, f in zip(n_maps, systems.arrays["fill"], strict=True)]
    image = image_grid(tiles, labels, heads)
    return Preview(image, grid_layout(len(tiles), columns, (size, size), labels, heads), systems)


# --- one family ---------------------------------------------------------------------------------------------------


def family_grid(
    family: Family, params: ClassParams, classes: int, per_class: int, seed: int = 0, threads: int | None = None
) -> Image.Image:
    """A labelled grid of samples as the model sees them: a row per class, instances spread over the class.

    Classes are spread evenly over the family's classes; sample ``i`` is rendered from the key of (seed, epoch 0,
    its dataset index), as the on-the-fly dataset renders it.
    """
    if not 1 <= classes <= family.num_classes or per_class < 1:
        raise ValueError(f"classes must be in [1, {family.num_classes}] and per_class >= 1, got {classes}, {per_class}")
    ipc = family.instances_per_class
    rows = np.unique(np.linspace(0, family.num_classes - 1, classes).round().astype(np.int64))
    spread = np.arange(per_class, dtype=np.int64) * ipc // per_class  # evenly over the instances
    # More columns than instances (1p-frac, OFDB: one image per class): the extra columns show later epochs.
    columns = spread if per_class <= ipc else np.arange(per_class, dtype=np.int64) % ipc
    epochs = np.zeros(per_class, np.int64) if per_class <= ipc else np.arange(per_class, dtype=np.int64) // ipc
    cls, inst = np.repeat(rows, per_class), np.tile(columns, len(rows))
    epoch = np.tile(epochs, len(rows))
    index = cls * ipc + inst
    keys = np.empty(len(index), np.uint64)
    for e in np.unique(epoch):
        keys[epoch == e] = sample_keys(seed, int(e), index[epoch == e])
    out = family.render(params, cls, inst, keys, family.new_batch(len(index)), threads=threads)
    tiles = out.reshape(len(rows), per_class, *out.shape[1:])
    labels = [f"class {c}" for c in rows]
    suffix = [f", epoch {e}" if per_class > ipc else "" for e in epochs]
    column_labels = [f"instance {i}{tail}" for i, tail in zip(columns, suffix, strict=True)]
    return image_grid([list(row) for row in tiles], labels, column_labels)
