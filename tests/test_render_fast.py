"""Fast mode and the raster variants: determinism, SIMD paths, fidelity to the reference, defined edge cases."""

from __future__ import annotations

import numpy as np
import pytest
from kernels import outputs_per_kernel
from mask_streams import union_mask

from fdsl_app import render
from fdsl_app.families.sampling import fractaldb_candidates
from fdsl_app.render import reference_numpy

SIERPINSKI = np.array(
    [[0.5, 0, 0, 0.5, 0, 0, 1 / 3], [0.5, 0, 0, 0.5, 0.5, 0, 1 / 3], [0.5, 0, 0, 0.5, 0.25, 0.5, 1 / 3]]
)


def contractive_systems(count: int, seed: int) -> np.ndarray:
    """Random contractive 3-map systems whose map 0 fixes the origin, so the origin lies on the attractor."""
    rng = np.random.default_rng(seed)
    systems = []
    while len(systems) < count:
        s = fractaldb_candidates(rng, 1, min_maps=3, max_maps=3, param_range=0.9)[0][0]
        s[0, 4:6] = 0.0
        if all(np.linalg.norm(s[k, :4].reshape(2, 2), 2) < 0.8 for k in range(3)):
            systems.append(s)
    return np.stack(systems)


def _render(params, size=96, channels=1, **kw):
    shape = (len(params), size, size) + ((3,) if channels == 3 else ())
    return render.render_ifs(params, np.empty(shape, np.uint8), threads=1, **kw)


def test_fast_mode_is_deterministic_and_seed_dependent():
    params = contractive_systems(4, 0)
    a = _render(params, mode="fast", raster="patch", seeds=[1, 2, 3, 4], n_points=20_000)
    b = _render(params, mode="fast", raster="patch", seeds=[1, 2, 3, 4], n_points=20_000)
    c = _render(params, mode="fast", raster="patch", seeds=[5, 6, 7, 8], n_points=20_000)
    assert np.array_equal(a, b)
    assert all(not np.array_equal(a[i], c[i]) for i in range(4))


def test_generic_and_avx2_kernels_give_identical_bytes():
    code = (
        "import numpy as np, hashlib;"
        "from test_render_fast import contractive_systems; from fdsl_app import render;"
        "out = np.empty((6, 64, 64), np.uint8);"
        "render.render_ifs(contractive_systems(6, 3), out, mode='fast', seeds=range(6), n_points=30_011, chains=24);"
        "print(render.fast_kernel(), hashlib.sha256(out.tobytes()).hexdigest())"
    )
    runs = outputs_per_kernel(code)
    assert runs["avx2"] == runs["generic"]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return float((a & b).sum() / (a | b).sum())


@pytest.mark.parametrize("chains, burn_in, fixed_point", [(16, 20, False), (64, 50, True), (8, 0, False)])
def test_fast_mode_occupancy_overlaps_reference(chains, burn_in, fixed_point):
    params = np.concatenate([SIERPINSKI[None], contractive_systems(3, 1)])
    kw = dict(size=128, n_points=400_000)
    reference = _render(params, mode="reference", **kw)
    # The yardstick: two reference chains of other seeds differ too where the attractor is sparse.
    other_reference = _render(params, mode="reference", seeds=7, **kw)
    fast = _render(params, mode="fast", seeds=range(4), chains=chains, burn_in=burn_in,
                   start_at_fixed_point=fixed_point, **kw)  # fmt: skip
    for i in range(len(params)):
        baseline, got = _iou(reference[i], other_reference[i]), _iou(reference[i], fast[i])
        assert got > 0.6 and got >= baseline - 0.05, f"system {i}: IoU {got:.3f}, reference vs reference {baseline:.3f}"


def test_point_count_not_a_multiple_of_the_chains():
    # Exactly n points are drawn, also when n is not a multiple of the 16 chains: at 4096 px a few dozen points of
    # the Sierpinski triangle light as many distinct pixels.
    params = SIERPINSKI[None]
    counts = [int((_render(params, mode="fast", n_points=n, size=4096) > 0).sum()) for n in (16, 17, 33)]
    assert counts == [16, 17, 33]


def test_divergent_system_restarts_chains_instead_of_hanging():
    expanding = np.array([[[3.0, 0.2, 0.1, 2.5, 1, 1, 0.5], [-2.8, 0.3, 0.2, 3.1, -1, 1, 0.5]]])
    a = _render(expanding, mode="fast", n_points=200_000, seeds=1)
    b = _render(expanding, mode="fast", n_points=200_000, seeds=1)
    assert np.array_equal(a, b) and (a > 0).sum() >= 1


def test_all_points_on_one_pixel_draws_the_middle_pixel_in_both_modes():
    collapse = np.zeros((1, 2, 7))
    collapse[0, :, 6] = 0.5
    for mode in ("reference", "fast"):
        image = _render(collapse, size=64, mode=mode, n_points=1000)[0]
        assert np.argwhere(image > 0).tolist() == [[31, 32]], mode


def test_keep_aspect_preserves_the_attractor_shape():
    # A wide, flat attractor: x spans [0, 2], y spans [0, 0.2].
    flat = np.array([[[0.5, 0, 0, 0.5, 0, 0, 0.5], [0.5, 0, 0, 0.5, 1.0, 0.1, 0.5]]])
    stretched = _render(flat, mode="fast", n_points=50_000, size=100)[0]
    kept = _render(flat, mode="fast", n_points=50_000, size=100, keep_aspect=True)[0]
    rows_stretched = np.ptp(np.argwhere(stretched > 0)[:, 0])
    rows_kept, cols_kept = np.ptp(np.argwhere(kept > 0), axis=0)
    assert rows_stretched > 80 and cols_kept > 80
    assert rows_kept == pytest.approx(cols_kept * 0.1, abs=2)


def test_density_lights_the_point_pixels_and_peaks_at_255():
    params = contractive_systems(2, 4)
    point = _render(params, mode="reference", n_points=50_000)
    density = _render(params, mode="reference", raster="density", n_points=50_000)
    assert np.array_equal(point > 0, density > 0)
    assert density.reshape(2, -1).max(axis=1).tolist() == [255, 255]
    assert len(np.unique(density)) > 10  # graded, not binary


def _shifted_union(points: np.ndarray, mask: int) -> np.ndarray:
    """OR of the point image shifted by (1 + dr, 1 + dc) for each set bit of mask (row-major, MSB top-left)."""
    h, w = points.shape
    out = np.zeros_like(points, dtype=bool)
    for cell in range(9):
        if mask >> (8 - cell) & 1:
            dr, dc = 1 + cell // 3, 1 + cell % 3
            out[dr:, dc:] |= points[: h - dr, : w - dc] > 0
    return out


def test_union_and_full_patch_stamp_the_mask_at_every_point():
    params = contractive_systems(1, 5)
    kw = dict(mode="reference", n_points=20_000, flips=1)  # flip 1 undoes the base flip: rows are y
    points = _render(params, **kw)[0]
    for raster, patch_seed in (("union_patch", 77), ("full_patch", 0)):
        mask = 511 if raster == "full_patch" else union_mask(patch_seed)
        image = _render(params, raster=raster, patch_seeds=patch_seed, **kw)[0]
        assert np.array_equal(image > 0, _shifted_union(points, mask)), raster
        assert set(np.unique(image)) <= {0, 127}


def test_gray_three_channel_output_replicates_the_gray_image():
    params = contractive_systems(2, 6)
    for mode in ("reference", "fast"):
        gray = _render(params, mode=mode, raster="patch", patch_seeds=3, n_points=10_000)
        rgb = _render(params, mode=mode, raster="patch", patch_seeds=3, n_points=10_000, channels=3)
        assert all(np.array_equal(rgb[..., k], gray) for k in range(3))


def test_fast_color_uses_the_wheel():
    image = _render(contractive_systems(1, 7), mode="fast", color=True, channels=3, n_points=20_000)[0]
    colours = {tuple(p) for p in image.reshape(-1, 3) if p.any()}
    assert len(colours) > 20 and colours <= {reference_numpy.convert_color(i) for i in range(128)}
