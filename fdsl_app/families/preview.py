"""Preview grid of what the renderer draws, and the random parameter samplers behind it.

The samplers follow the published generators (``fdsl-spec.md`` sections 2.1, 6 and 7) but draw from a
``np.random.Generator`` so that a preview or a benchmark is a pure function of its seed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from fdsl_app import render
from fdsl_app.families.base import ClassParams, Family
from fdsl_app.families.contours import CANVAS, sample_rcdb_params, sample_visualatom_params
from fdsl_app.render.keys import sample_keys

#: FractalDB's category filter: share of non-zero pixels of a 512 px, 100k point, pad 6 point render.
FILL_THRESHOLD = 0.2
SEARCH_BATCH = 64
MAX_CANDIDATES = 20_000
#: The papers' canvas; contour geometry is sampled in its pixels and scaled to the output size.

# --- samplers -------------------------------------------------------------------------------------------------


def sample_fractaldb_system(rng: np.random.Generator) -> np.ndarray:
    """One FractalDB-style candidate system (not yet filtered by fill rate).

    N maps with N ~ randint(2, 8) (2..7, as the reference's numpy call), each of a..f ~ U(-1, 1), and
    p proportional to ``|det A|``.

    Returns:
        ``(N, 7)`` rows ``a b c d e f p``.
    """
    n_maps = int(rng.integers(2, 8))
    coefs = rng.uniform(-1.0, 1.0, size=(n_maps, 6))
    det = np.abs(coefs[:, 0] * coefs[:, 3] - coefs[:, 1] * coefs[:, 2])
    # All-singular systems have probability zero under U(-1, 1); equal weights keep the sampler total anyway.
    p = det / det.sum() if det.sum() > 0 else np.full(n_maps, 1.0 / n_maps)
    return np.column_stack([coefs, p])


@dataclass(frozen=True)
class SearchResult:
    """Systems accepted by :func:`search_fractaldb_systems`.

    Attributes:
        systems: accepted ``(N, 7)`` systems, in the order they were drawn.
        fill_rates: their fill rates.
        candidates: candidates drawn and rendered to find them.
    """

    systems: list[np.ndarray]
    fill_rates: list[float]
    candidates: int


def search_fractaldb_systems(
    count: int,
    rng: np.random.Generator,
    *,
    threshold: float = FILL_THRESHOLD,
    batch: int = SEARCH_BATCH,
    max_candidates: int = MAX_CANDIDATES,
    threads: int | None = None,
) -> SearchResult:
    """FractalDB's category search: draw candidates until ``count`` have a fill rate >= ``threshold``.

    Candidates are rendered ``batch`` at a time on all threads at the published search settings
    (:func:`fdsl_app.render.fill_rate` defaults). Acceptance is about 2% at 0.2, so ~50 candidates per system.

    Raises:
        RuntimeError: ``max_candidates`` were drawn before ``count`` were accepted.
    """
    systems: list[np.ndarray] = []
    fills: list[float] = []
    drawn = 0
    while len(systems) < count:
        if drawn >= max_candidates:
            raise RuntimeError(
                f"found only {len(systems)} of {count} IFS systems with fill rate >= {threshold} in {drawn} "
                "candidates; lower the threshold or ask for fewer systems"
            )
        candidates = [sample_fractaldb_system(rng) for _ in range(min(batch, max_candidates - drawn))]
        drawn += len(candidates)
        params, n_maps = render.pack_systems(candidates)
        rates = render.fill_rate(params, n_maps=n_maps, threads=threads)
        for system, rate in zip(candidates, rates, strict=True):
            if rate >= threshold and len(systems) < count:
                systems.append(system)
                fills.append(float(rate))
    return SearchResult(systems, fills, drawn)


# --- image grid -----------------------------------------------------------------------------------------------

GAP = 2
MARGIN = 4
BACKGROUND = (224, 224, 224)
TEXT = (0, 0, 0)
FONT_SIZE = 11


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=FONT_SIZE)


def _text_size(text: str) -> tuple[int, int]:
    left, top, right, bottom = _font().getbbox(text)
    return int(right - left), int(bottom - top)


@dataclass(frozen=True)
class GridLayout:
    """Pixel geometry of an :func:`image_grid`: a label column, an optional header row, then the tiles.

    Attributes:
        rows, columns: tiles down and across.
        tile_height, tile_width: size of one (scaled) tile.
        column_width: width of a column (the tile, or a wider column label); tiles sit centred in it.
        label_width: width of the row-label column.
        header_height: height of the column-label row (0 without column labels).
    """

    rows: int
    columns: int
    tile_height: int
    tile_width: int
    column_width: int
    label_width: int
    header_height: int

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of the whole grid image."""
        width = self.label_width + self.columns * (self.column_width + GAP) + GAP
        return width, self.header_height + self.rows * (self.tile_height + GAP) + GAP

    def origin(self, row: int, column: int) -> tuple[int, int]:
        """``(x, y)`` of the top-left pixel of a tile."""
        x = self.label_width + GAP + column * (self.column_width + GAP) + (self.column_width - self.tile_width) // 2
        return x, self.header_height + GAP + row * (self.tile_height + GAP)


def grid_layout(
    rows: int, columns: int, tile_shape: tuple[int, int], row_labels: Sequence[str],
    column_labels: Sequence[str] | None = None, scale: int = 1,
) -> GridLayout:  # fmt: skip
    """Geometry of the grid :func:`image_grid` draws for these tiles and labels."""
    tile_h, tile_w = tile_shape[0] * scale, tile_shape[1] * scale
    label_w = max((_text_size(t)[0] for t in row_labels), default=0) + 2 * MARGIN
    column_w, header_h = tile_w, 0
    if column_labels:
        column_w = max(tile_w, *(_text_size(t)[0] + 2 * MARGIN for t in column_labels))
        header_h = max(_text_size(t)[1] for t in column_labels) + 2 * MARGIN
    return GridLayout(rows, columns, tile_h, tile_w, column_w, label_w, header_h)


def _as_rgb(tile: np.ndarray, scale: int) -> np.ndarray:
    if tile.dtype != np.uint8 or tile.ndim not in (2, 3) or (tile.ndim == 3 and tile.shape[2] != 3):
        raise ValueError(f"tiles must be uint8 (H, W) or (H, W, 3), got {tile.dtype} {tile.shape}")
    rgb = np.repeat(tile[:, :, None], 3, axis=2) if tile.ndim == 2 else tile
    return rgb.repeat(scale, axis=0).repeat(scale, axis=1) if scale > 1 else rgb


def image_grid(
    images: list[list[np.ndarray]],
    row_labels: Sequence[str],
    column_labels: Sequence[str] | None = None,
    scale: int = 1,
) -> Image.Image:
    """Tile uint8 images into one labelled RGB image.

    Args:
        images: ``images[row][column]``, each ``(H, W)`` gray or ``(H, W, 3)`` RGB, all of one ``H, W``.
        row_labels: one label per row, drawn left of it.
        column_labels: optional label per column, drawn above it.
        scale: integer nearest-neighbour magnification of the tiles (labels keep their size).
    """
    rows, columns = len(images), max((len(r) for r in images), default=0)
    if len(row_labels) != rows or (column_labels is not None and len(column_labels) != columns):
        raise ValueError(f"need {rows} row labels and {columns} column labels (or None)")
    if rows == 0 or columns == 0 or scale < 1:
        raise ValueError(f"need at least one tile and scale >= 1, got {rows}x{columns} tiles, scale {scale}")
    shapes = {tile.shape[:2] for row in images for tile in row}
    if len(shapes) != 1:
        raise ValueError(f"all tiles must have one height and width, got {sorted(shapes)}")
    layout = grid_layout(rows, columns, shapes.pop(), row_labels, column_labels, scale)
    grid = Image.new("RGB", layout.size, BACKGROUND)
    draw, font = ImageDraw.Draw(grid), _font()
    for r, row in enumerate(images):
        y = layout.origin(r, 0)[1] + layout.tile_height // 2
        draw.text((MARGIN, y), row_labels[r], fill=TEXT, font=font, anchor="lm")
        for c, tile in enumerate(row):
            grid.paste(Image.fromarray(_as_rgb(tile, scale)), layout.origin(r, c))
    for c, label in enumerate(column_labels or ()):
        x = layout.label_width + GAP + c * (layout.column_width + GAP) + layout.column_width // 2
        draw.text((x, layout.header_height // 2), label, fill=TEXT, font=font, anchor="mm")
    return grid


# --- preview --------------------------------------------------------------------------------------------------


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
    """A rendered preview grid and how its IFS systems were found."""

    image: Image.Image
    layout: GridLayout
    search: SearchResult


def render_preview(
    columns: int = 6, size: int = 128, seed: int = 0, points: int = 100_000, threads: int | None = None
) -> Preview:
    """Render :data:`PREVIEW_ROWS` for ``columns`` random systems into a labelled grid.

    Args:
        columns: distinct random systems (IFS, RCDB and VisualAtom), one per column.
        size: tile size in pixels.
        seed: seed of everything random (systems, contour parameters, render seeds).
        points: points per IFS image.
        threads: render threads (default: all cores).
    """
    rng = np.random.default_rng(seed)
    search = search_fractaldb_systems(columns, rng, threads=threads)
    params, n_maps = render.pack_systems(search.systems)
    inputs = PreviewInputs(
        params=params, n_maps=n_maps, seeds=rng.integers(0, 2**32, columns, dtype=np.uint64),
        rcdb=np.stack([sample_rcdb_params(rng) for _ in range(columns)]),
        visualatom=np.stack([sample_visualatom_params(rng) for _ in range(columns)]),
        size=size, points=points, threads=threads,
    )  # fmt: skip
    tiles = [list(draw(inputs)) for _, draw in PREVIEW_ROWS]
    labels = [label for label, _ in PREVIEW_ROWS]
    heads = [f"N={n}, fill {f:.2f}" for n, f in zip(n_maps, search.fill_rates, strict=True)]
    image = image_grid(tiles, labels, heads)
    return Preview(image, grid_layout(len(tiles), columns, (size, size), labels, heads), search)


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
