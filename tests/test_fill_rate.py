"""fill_rate: FractalDB's category filter, equal to counting the lit pixels of a reference point render."""

from __future__ import annotations

import numpy as np

from fdsl_app import render
from fdsl_app.families.sampling import fractaldb_candidates
from fdsl_app.render import reference_numpy as ref


def test_fill_rate_counts_lit_pixels_of_the_reference_render():
    rng = np.random.default_rng(3)
    params, n_maps = fractaldb_candidates(rng, 20)
    rates = render.fill_rate(params, n_maps=n_maps, n_points=5000, size=128, pad=6)
    images = render.render_ifs(params, np.empty((20, 128, 128), np.uint8), n_maps=n_maps, n_points=5000)
    assert np.array_equal(rates, (images > 0).mean(axis=(1, 2)))


def test_fill_rate_matches_the_numpy_reference_at_the_search_settings():
    rng = np.random.default_rng(4)
    system = fractaldb_candidates(rng, 1, min_maps=3, max_maps=3)[0][0]
    xs, ys = ref.chain(system, 100_000)
    cols, rows = ref.pixels(xs, ys, 512, 512, pad=6)
    expected = (ref.draw(cols, rows, 512, 512) > 0).mean()
    assert render.fill_rate(system[None])[0] == expected


def test_fill_rate_separates_filled_from_sparse_systems():
    square = np.array([[[0.5, 0, 0, 0.5, x, y, 0.25] for x in (0, 0.5) for y in (0, 0.5)]])  # fills the square
    line = np.array([[[0.5, 0, 0, 0.0, 0, 0, 0.5], [0.5, 0, 0, 0.0, 0.5, 0, 0.5]]])  # a segment
    rate_square = render.fill_rate(square, n_points=200_000, size=128)[0]
    rate_line = render.fill_rate(line, n_points=200_000, size=128)[0]
    room = ((128 - 2 * 6 + 1) / 128) ** 2  # the padded square, edges included
    assert rate_square > 0.95 * room and rate_line < 0.01
