"""Labelled image grids (render/grid.py): geometry, placement, labels, refusal of bad tiles."""

from __future__ import annotations

import numpy as np
import pytest

from fdsl_app.render.grid import BACKGROUND, grid_layout, image_grid


def test_image_grid_geometry_and_placement():
    gray = np.full((10, 12), 200, np.uint8)
    rgb = np.zeros((10, 12, 3), np.uint8)
    rgb[..., 0] = 255
    labels, heads = ["first row", "second"], ["a", "b", "a much longer column label"]
    grid = np.asarray(image_grid([[gray, rgb, gray], [rgb, gray, rgb]], labels, heads, scale=2))
    layout = grid_layout(2, 3, (10, 12), labels, heads, scale=2)
    assert (grid.shape[1], grid.shape[0]) == layout.size
    assert (layout.tile_height, layout.tile_width) == (20, 24)
    assert layout.column_width > 24 and layout.header_height > 0  # the long label widens the columns
    for r in range(2):
        for c in range(3):
            x, y = layout.origin(r, c)
            tile = grid[y : y + 20, x : x + 24]
            want = (255, 0, 0) if (r + c) % 2 else (200, 200, 200)
            assert (tile == want).all()
    label_area = grid[layout.header_height :, : layout.label_width]
    header_area = grid[: layout.header_height, layout.label_width :]
    assert (label_area != BACKGROUND).any(axis=-1).sum() > 20  # text was drawn
    assert (header_area != BACKGROUND).any(axis=-1).sum() > 20


def test_image_grid_without_column_labels_has_no_header():
    grid = image_grid([[np.zeros((8, 8), np.uint8)]], ["x"])
    layout = grid_layout(1, 1, (8, 8), ["x"])
    assert layout.header_height == 0 and grid.size == layout.size


@pytest.mark.parametrize(
    "images, labels, match",
    [([[np.zeros((8, 8), np.uint8), np.zeros((9, 8), np.uint8)]], ["x"], "one height and width"),
     ([[np.zeros((8, 8), np.float32)]], ["x"], "must be uint8"),
     ([[np.zeros((8, 8), np.uint8)]], ["x", "y"], "row labels")],
)  # fmt: skip
def test_image_grid_rejects_bad_tiles(images, labels, match):
    with pytest.raises(ValueError, match=match):
        image_grid(images, labels)
