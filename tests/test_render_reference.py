"""Reference mode equals the numpy restatement of the published FractalDB renderer, pixel for pixel."""

from __future__ import annotations

import numpy as np
import pytest
from mask_streams import patch_masks, union_mask
from PIL import Image

from fdsl_app import render
from fdsl_app.families.sampling import fractaldb_candidates
from fdsl_app.render import _render
from fdsl_app.render import reference_numpy as ref


@pytest.mark.parametrize("seed", [0, 1, 100, 12345, 2**32 - 1])
def test_uniforms_equal_numpy_legacy_sequence(seed):
    np.random.seed(seed)
    expected = np.random.random(10_000)
    assert np.array_equal(_render.legacy_uniforms(seed, 10_000), expected)


def _systems(count: int, scale: float, seed: int) -> list[np.ndarray]:
    params, n_maps = fractaldb_candidates(np.random.default_rng(seed), count, param_range=scale)
    return [system[:n] for system, n in zip(params, n_maps, strict=True)]


def _gray3(image: np.ndarray) -> np.ndarray:
    """A gray oracle image as the renderer's (H, W, 3) output (the reference saves RGB)."""
    return np.repeat(image[..., None], 3, axis=2)


def _render_one(system, size, n_points, seed=100, **kw):
    out = np.empty((1, size, size, 3), np.uint8)
    params, n_maps = render.pack_systems([system])
    return render.render_ifs(params, out, n_maps=n_maps, seeds=seed, n_points=n_points, threads=1, **kw)[0]


@pytest.mark.parametrize(
    "scale, seed",
    [(1.0, 0), (1.0, 1), (1.6, 2), (3.0, 3)],  # 1.0: FractalDB's range; larger scales diverge (NaN rule)
)
def test_point_mode_is_pixel_identical(scale, seed):
    size, n_points = 96, 3000
    diverged = 0
    for i, system in enumerate(_systems(12, scale, seed)):
        xs, ys = ref.chain(system, n_points, seed=100 + i)
        diverged += bool(np.isnan(xs).any())
        cols, rows = ref.pixels(xs, ys, size, size)
        expected = _gray3(ref.draw(cols, rows, size, size))
        got = _render_one(system, size, n_points, seed=100 + i)
        assert np.array_equal(got, expected), f"system {i}: {np.sum(got != expected)} bytes differ"
    if scale >= 3.0:
        assert diverged > 0, "the divergent case must exercise the NaN rule"


def test_nan_before_point_100_and_infinite_points():
    # Explodes within a few steps: the first NaN comes before point 100, and inf points appear before it.
    system = np.array([[1e150, 1.0, 0.0, 1e150, 1.0, 1.0, 0.5], [-1e150, 0.5, 0.3, 1e150, -1.0, 1.0, 0.5]])
    xs, ys = ref.chain(system, 500)
    assert np.isnan(xs).any() and np.argmax(np.isnan(xs)) < 100
    assert np.isinf(xs[: np.argmax(np.isnan(xs))]).any()
    cols, rows = ref.pixels(xs, ys, 64, 64)
    assert np.array_equal(_render_one(system, 64, 500), _gray3(ref.draw(cols, rows, 64, 64)))


def test_degenerate_system_draws_one_pixel_in_the_middle():
    # Every map sends everything to the origin: one point, zero span on both axes.
    system = np.zeros((2, 7))
    system[:, 6] = 0.5
    image = _render_one(system, 64, 1000)
    lit = np.argwhere(image[..., 0] > 0)
    assert lit.tolist() == [[64 - 1 - 32, 32]]  # middle pixel (32, 32), then the reference's top-bottom flip


def test_probability_sum_below_one_keeps_the_previous_point():
    # cumsum(p) ends below 1: a draw above it moves nowhere, as in the reference (not an error within tolerance).
    system = np.array([[0.5, 0, 0, 0.5, 0, 0, 0.49996], [0.5, 0, 0, 0.5, 1, 1, 0.49996]])
    np.random.seed(100)
    assert (np.random.random(40_000) > system[:, 6].sum()).sum() >= 1, "the case must occur in this sequence"
    xs, ys = ref.chain(system, 40_000)
    cols, rows = ref.pixels(xs, ys, 64, 64)
    assert np.array_equal(_render_one(system, 64, 40_000), _gray3(ref.draw(cols, rows, 64, 64)))


@pytest.mark.parametrize("flip", [0, 1, 2, 3])
def test_flip_variants_and_gray_channel(flip):
    system = _systems(1, 1.0, 7)[0]
    xs, ys = ref.chain(system, 2000)
    cols, rows = ref.pixels(xs, ys, 80, 60)
    expected = ref.draw(cols, rows, 80, 60, flip=flip)
    out = np.empty((1, 60, 80), np.uint8)
    params, n_maps = render.pack_systems([system])
    render.render_ifs(params, out, n_maps=n_maps, n_points=2000, flips=flip)
    assert np.array_equal(out[0], expected)


def test_color_wheel_matches_reference():
    system = _systems(1, 1.0, 8)[0]
    xs, ys = ref.chain(system, 3000)
    cols, rows = ref.pixels(xs, ys, 64, 64)
    assert np.array_equal(_render_one(system, 64, 3000, color=True), ref.draw(cols, rows, 64, 64, color=True))


@pytest.mark.parametrize("color, flip", [(False, 0), (True, 3)])
def test_fractaldb_patch_matches_the_reference(color, flip):
    size, n_points, patch_seed = 72, 2500, 987654321
    for i, system in enumerate(_systems(4, 1.0, 9)):
        xs, ys = ref.chain(system, n_points)
        cols, rows = ref.pixels(xs, ys, size, size)
        expected = ref.draw(cols, rows, size, size, raster="patch", masks=patch_masks(patch_seed + i, len(cols)),
                            color=color, flip=flip)  # fmt: skip
        got = _render_one(system, size, n_points, patch_seeds=patch_seed + i, raster="patch", color=color, flips=flip)
        assert np.array_equal(got, expected if color else _gray3(expected)), f"system {i}"


@pytest.mark.parametrize("color", [False, True])
def test_numpy_patch_draw_is_the_reference_pil_paste(color):
    """The oracle's vectorised paste against the reference's loop: one PIL paste of a 3x3 patch per point."""
    size = 24
    rng = np.random.default_rng(4)
    cols, rows = rng.integers(0, size - 3, 300), rng.integers(0, size - 3, 300)  # dense: patches overlap a lot
    masks = rng.integers(1, 512, 300)
    canvas = Image.new("RGB", (size, size))
    for i in range(len(cols)):
        rgb = np.array(ref.convert_color(i) if color else (ref.GRAY,) * 3, np.uint8)
        bits = np.array([int(b) for b in f"{int(masks[i]):09b}"], np.uint8).reshape(3, 3, 1)
        canvas.paste(Image.fromarray(bits * rgb), (int(cols[i]) + 1, int(rows[i]) + 1))
    want = np.flipud(np.asarray(canvas))
    got = ref.draw(cols, rows, size, size, raster="patch", masks=masks, color=color)
    assert np.array_equal(got, want if color else want[..., 0])


@pytest.mark.parametrize("raster", ["union_patch", "full_patch", "density"])
def test_other_rasters_match_the_numpy_restatement(raster):
    size, n_points, patch_seed = 64, 3000, 4242
    system = _systems(1, 1.0, 10)[0]
    cols, rows = ref.pixels(*ref.chain(system, n_points), size, size)
    expected = ref.draw(cols, rows, size, size, raster=raster, masks=union_mask(patch_seed))
    got = _render_one(system, size, n_points, patch_seeds=patch_seed, raster=raster)
    assert np.array_equal(got, _gray3(expected))


def test_patch_masks_cover_1_to_511_uniformly():
    """Each point draws its mask uniformly from the 511 non-empty 3x3 masks: read off one-point renders (the
    origin alone, in the middle pixel) over 100,000 patch seeds."""
    n = 100_000
    system = np.array([[[0.5, 0, 0, 0.5, 0, 0, 0.5], [0.5, 0, 0, 0.5, 0, 0, 0.5]]]).repeat(n, axis=0)
    images = render.render_ifs(system, np.empty((n, 16, 16), np.uint8), n_points=1, raster="patch",
                               patch_seeds=np.arange(n))  # fmt: skip
    cells = np.flipud(np.moveaxis(images, 0, -1))[9:12, 9:12] > 0  # the patch of pixel (8, 8), at (+1, +1)
    masks = (cells.reshape(9, n).T * (1 << np.arange(8, -1, -1))).sum(axis=1)
    counts = np.bincount(masks, minlength=512)
    assert counts[0] == 0 and images.sum(axis=(1, 2)).min() > 0  # never an empty patch
    expected = n / 511
    assert counts[1:].min() > 0.7 * expected and counts[1:].max() < 1.3 * expected
