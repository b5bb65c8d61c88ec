"""Labelled image grids: uint8 tiles (gray or RGB) with row and column labels, in one RGB image (PIL)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

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
