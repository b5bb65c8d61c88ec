"""Radial-contour renderer (RCDB, VisualAtom): output contracts, determinism, geometry and argument checks."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from fdsl_app import render
from fdsl_app.render import CONTOUR_FIELDS


def _params(batch: int = 1, **fields: float) -> np.ndarray:
    """Rows of CONTOUR_FIELDS: a mid-sized RCDB-like contour at the canvas centre unless overridden."""
    base = dict(n_vertices=60, n_contours=40, perlin_amp=1.5, line_width=0.05, radius=40.0, oval_x=1.3, oval_y=1.1,
                center_x=256.0, center_y=256.0, freq1=3, freq2=7)  # fmt: skip
    base.update(fields)
    return np.tile(np.array([[base[name] for name in CONTOUR_FIELDS]], np.float64), (batch, 1))


def _random_params(batch: int, seed: int = 0) -> np.ndarray:
    """Parameters drawn like the reference scripts' category search (RCDB ranges)."""
    rng = np.random.default_rng(seed)
    p = _params(batch)
    p[:, 0] = rng.integers(3, 200, batch)
    p[:, 1] = rng.integers(1, 200, batch)
    p[:, 2] = rng.uniform(0, 4, batch)
    p[:, 3] = rng.uniform(0, 0.1, batch)
    p[:, 4] = rng.integers(0, 100, batch)
    p[:, 5:7] = rng.uniform(1, 2, (batch, 2))
    p[:, 7:9] = (512 + rng.integers(-400, 400, (batch, 2))) / 2
    p[:, 9:11] = rng.integers(0, 20, (batch, 2))
    return p


def _render(params, size=128, channels=None, style="rcdb", seeds=0, **kw) -> np.ndarray:
    shape = (len(params), size, size) + ((channels,) if channels else ())
    out = np.empty(shape, np.uint8)
    result = render.render_contours(params, out, seeds=seeds, style=style, **kw)
    assert result is out
    return out


# Output contracts.


@pytest.mark.parametrize("style", ["rcdb", "visualatom"])
def test_gray_and_rgb_shapes_and_channels_agree(style):
    params = _random_params(3, seed=1)
    gray = _render(params, 96, style=style, seeds=[1, 2, 3], canvas_size=512.0)
    rgb = _render(params, 96, 3, style=style, seeds=[1, 2, 3])
    assert gray.shape == (3, 96, 96) and gray.dtype == np.uint8
    assert rgb.shape == (3, 96, 96, 3) and rgb.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(rgb[..., c], gray)


@pytest.mark.parametrize("style, background", [("rcdb", 255), ("visualatom", 0)])
def test_every_pixel_is_written(style, background):
    # Centre off the canvas (at the bounds' edge): no line lands, so the whole (garbage-prefilled) image must be
    # background.
    out = np.full((2, 64, 80, 3), 77, np.uint8)
    render.render_contours(_params(2, center_x=-500, center_y=1000), out, seeds=[5, 6], style=style)
    assert (out == background).all()


def test_non_square_output_scales_each_axis():
    # A noise-free diamond of radius 100 at the centre of the 512 canvas, drawn at 48 x 160: x scales by 160 / 512
    # and y by 48 / 512, so the drawn box spans columns 49.x .. 111 and rows 14.x .. 33.
    p = _params(1, n_vertices=4, n_contours=1, perlin_amp=0.0, line_width=0.0, radius=100, oval_x=1, oval_y=1)
    out = np.empty((1, 48, 160), np.uint8)
    render.render_contours(p, out, seeds=3)
    np.testing.assert_allclose(_bbox(out[0], 255), [156 * 48 / 512, 356 * 48 / 512, 156 * 160 / 512, 111], atol=1)


# Determinism.


@pytest.mark.parametrize("style", ["rcdb", "visualatom"])
def test_same_seeds_same_bytes_different_seeds_differ(style):
    params = _random_params(4, seed=2)
    a = _render(params, style=style, seeds=[10, 11, 12, 13])
    b = _render(params, style=style, seeds=[10, 11, 12, 13])
    c = _render(params, style=style, seeds=[20, 21, 22, 23])
    assert a.tobytes() == b.tobytes()
    for i in range(4):
        if (a[i] != a[i].flat[0]).any():  # an image with lines on it
            assert not np.array_equal(a[i], c[i])


@pytest.mark.parametrize("style", ["rcdb", "visualatom"])
def test_thread_count_does_not_change_bytes(style):
    params = _random_params(6, seed=3)
    seeds = np.arange(100, 106, dtype=np.uint64)
    one = _render(params, style=style, seeds=seeds, threads=1)
    two = _render(params, style=style, seeds=seeds, threads=2)
    many = _render(params, style=style, seeds=seeds, threads=5)
    assert one.tobytes() == two.tobytes() == many.tobytes()


def test_batch_equals_one_by_one():
    params = _random_params(5, seed=4)
    seeds = np.array([7, 2**64 - 1, 0, 123456789, 42], np.uint64)
    batch = _render(params, 100, 3, style="visualatom", seeds=seeds)
    for i in range(5):
        single = _render(params[i : i + 1], 100, 3, style="visualatom", seeds=seeds[i])
        np.testing.assert_array_equal(single[0], batch[i])


def test_scalar_seed_broadcasts():
    params = _random_params(3, seed=5)
    np.testing.assert_array_equal(_render(params, seeds=9), _render(params, seeds=[9, 9, 9]))


# Appearance.


def test_rcdb_is_gray_lines_on_white():
    out = _render(_params(1, n_vertices=100, n_contours=100, radius=30), 256, seeds=1)
    assert (out == 255).mean() > 0.5
    drawn = out[out != 255]
    assert np.unique(drawn).size > 40  # one random gray level per contour


def test_visualatom_is_gray_lines_on_black():
    out = _render(_params(1, n_vertices=300, n_contours=100, radius=30), 256, style="visualatom", seeds=1)
    assert (out == 0).mean() > 0.4
    assert np.unique(out[out != 0]).size > 40


def _pillow_polygon(p: np.ndarray, size: int, background: int) -> np.ndarray:
    """The undisturbed base polygon drawn with Pillow's ImageDraw.line, as the reference scripts draw it."""
    n = int(p[0])
    angle = (np.pi * 2) / n
    xs = [np.cos(angle * k) * p[4] * p[5] + p[7] for k in range(n)]
    ys = [np.sin(angle * k) * p[4] * p[6] + p[8] for k in range(n)]
    img = Image.new("L", (size, size), background)
    draw = ImageDraw.Draw(img)
    for k in range(n):
        draw.line((xs[k], ys[k], xs[(k + 1) % n], ys[(k + 1) % n]), fill=128, width=1)
    return np.asarray(img) != background


@pytest.mark.parametrize("style, background", [("rcdb", 255), ("visualatom", 0)])
def test_noise_free_polygon_equals_pillow_lines(style, background):
    rng = np.random.default_rng(6)
    for trial in range(25):
        p = _params(
            1, n_vertices=int(rng.integers(3, 40)), n_contours=1, perlin_amp=0.0, line_width=0.0,
            radius=rng.uniform(0, 300), oval_x=rng.uniform(0.2, 2), oval_y=rng.uniform(0.2, 2),
            center_x=rng.uniform(-100, 600), center_y=rng.uniform(-100, 600), freq1=0, freq2=0,
        )  # fmt: skip
        out = _render(p, 512, style=style, seeds=trial)[0]
        drawn = out != background
        expected = _pillow_polygon(p[0], 512, background)
        if drawn.any():  # unless the contour's gray happens to equal the background
            np.testing.assert_array_equal(drawn, expected, err_msg=f"trial {trial}")
            assert np.unique(out[drawn]).size == 1


def _drawn_radii(out: np.ndarray, background: int, cx: float, cy: float) -> np.ndarray:
    rows, cols = np.nonzero(out != background)
    return np.hypot(cols - cx, rows - cy)


def test_line_width_grows_each_contour_before_drawing():
    # No noise: each of the 5 contours moves the vertices out by line_width = 8, then draws: radii 108 .. 140.
    p = _params(1, n_vertices=720, n_contours=5, perlin_amp=0.0, line_width=8.0, radius=100, oval_x=1, oval_y=1)
    radii = _drawn_radii(_render(p, 512, seeds=3)[0], 255, 256, 256)
    assert 106.5 < radii.min() < 108.5 and 139 < radii.max() < 141.5


def test_visualatom_radius_follows_the_sine_frequencies():
    # No noise, freq1 = 4: vertex k moves out by 0.5 sin(4 th_k) per contour, so after 60 contours the outermost
    # contour reaches 100 + 30 and the innermost dips to 100 - 30. RCDB ignores the frequencies.
    p = _params(1, n_vertices=720, n_contours=60, perlin_amp=0.0, line_width=0.0, radius=100, oval_x=1, oval_y=1,
                freq1=4, freq2=0)  # fmt: skip
    atom = _drawn_radii(_render(p, 512, style="visualatom", seeds=4)[0], 0, 256, 256)
    assert 128.5 < atom.max() < 131.5 and 68.5 < atom.min() < 71.5
    rcdb = _drawn_radii(_render(p, 512, style="rcdb", seeds=4)[0], 255, 256, 256)
    assert 98.5 < rcdb.min() and rcdb.max() < 101.5


@pytest.mark.parametrize("style, background", [("rcdb", 255), ("visualatom", 0)])
def test_noise_pushes_contours_outward_by_perlin_amp_on_average(style, background):
    # One contour of 2000 vertices at radius 150, P = 30. pnoise1 (as the `noise` package's) is centred on 0 and
    # spans about +-0.95, so the outward offset is about P on average, in -0.9 P .. 2.9 P for RCDB
    # (d = pnoise1 * 2P - P) and in 0.05 P .. 1.95 P for VisualAtom (d = pnoise1 * P - P, no sines here).
    p = _params(1, n_vertices=2000, n_contours=1, perlin_amp=30.0, line_width=0.0, radius=150, oval_x=1, oval_y=1,
                freq1=0, freq2=0)  # fmt: skip
    radii = np.concatenate([_drawn_radii(_render(p, 512, style=style, seeds=s)[0], background, 256, 256)
                            for s in range(4)])  # fmt: skip
    assert 175 < np.median(radii) < 185
    if style == "rcdb":
        assert radii.max() > 150 + 2.5 * 30 and radii.min() < 150 - 0.6 * 30
    else:
        assert 150 + 1.7 * 30 < radii.max() < 150 + 2.0 * 30 and 149 < radii.min() < 150 + 0.3 * 30


@pytest.mark.parametrize("style, background", [("rcdb", 255), ("visualatom", 0)])
def test_gray_levels_cover_the_full_range(style, background):
    # One uniform gray in 0..255 per contour: over 4 x 200 contours both ends of the range appear.
    p = _params(4, n_vertices=50, n_contours=200, perlin_amp=0.5, line_width=0.3, radius=10)
    out = _render(p, 256, style=style, seeds=[1, 2, 3, 4])
    drawn = out[out != background]
    assert drawn.min() <= 6 or background == 0
    assert drawn.max() >= 249 or background == 255
    assert np.unique(drawn).size > 200


def _bbox(img: np.ndarray, background: int) -> np.ndarray:
    rows, cols = np.nonzero(img != background)
    return np.array([rows.min(), rows.max(), cols.min(), cols.max()], float)


@pytest.mark.parametrize("style, background", [("rcdb", 255), ("visualatom", 0)])
def test_smaller_output_is_the_canvas_scaled_down(style, background):
    p = _params(3, n_vertices=150, n_contours=30, perlin_amp=1.0, radius=60, center_x=240, center_y=270)
    big = _render(p, 512, style=style, seeds=[1, 2, 3])
    small = _render(p, 224, style=style, seeds=[1, 2, 3])
    for i in range(3):
        scaled = _bbox(big[i], background) * (224 / 512)
        np.testing.assert_allclose(_bbox(small[i], background), scaled, atol=1.5)


def test_canvas_size_sets_the_geometry_units():
    # The same contour in a 256-unit canvas rendered at 256 px equals the 512-unit one doubled at 512 px, scaled.
    p = _params(1, n_contours=20)
    p2 = p.copy()
    p2[0, 2:5] *= 2  # perlin_amp, line_width, radius in the larger unit
    p2[0, 7:9] *= 2
    a = _bbox(_render(p, 256, seeds=1, canvas_size=256.0)[0], 255)
    b = _bbox(_render(p2, 256, seeds=1, canvas_size=512.0)[0], 255)
    np.testing.assert_allclose(a, b, atol=1.5)


def test_huge_geometry_is_refused_and_lines_far_past_the_canvas_are_clipped():
    # Vertices thrown to 1e300 and beyond would draw a blank image: refused (the core's own safety with such
    # values is csrc/tests/test_contour.cpp's).
    for field, value in (("perlin_amp", 1e8), ("line_width", -1e300), ("radius", 1e200)):
        with pytest.raises(ValueError, match=f"{field} must be in"):
            _render(_params(1, **{field: value}), 32)
    line = _params(1, n_vertices=4, n_contours=1, perlin_amp=0.0, line_width=0.0, radius=128, oval_x=100,
                   oval_y=0.0, center_x=100, center_y=64)  # fmt: skip
    img = _render(line, 128, seeds=3, canvas_size=128.0)[0]  # a horizontal line through row 64, ends at +-12800
    assert (img[64] != 255).all() and (np.delete(img, 64, axis=0) == 255).all()


# Argument checks: each bad argument raises naming it.


def _call(params=None, out=None, **kw):
    params = _params(2) if params is None else params
    out = np.empty((len(params), 32, 32), np.uint8) if out is None else out
    kw.setdefault("seeds", 0)
    return render.render_contours(params, out, **kw)


def _with(field: str, value: float) -> np.ndarray:
    p = _params(2)
    p[1, CONTOUR_FIELDS.index(field)] = value
    return p


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(params=np.zeros((2, 10))), ValueError, "params must have shape"),
        (dict(params=np.zeros(11)), ValueError, "params"),
        (dict(params=_with("perlin_amp", np.nan)), ValueError, "perlin_amp"),
        (dict(params=_with("center_x", np.inf)), ValueError, "center_x"),
        (dict(params=_with("n_vertices", 2)), ValueError, "n_vertices"),
        (dict(params=_with("n_vertices", 10.5)), ValueError, "n_vertices"),
        (dict(params=_with("n_contours", 0)), ValueError, "n_contours"),
        (dict(params=_with("radius", -1.0)), ValueError, "radius"),
        (dict(params=_with("oval_y", -0.5)), ValueError, "oval_y"),
        (dict(params=_with("freq1", 2.5)), ValueError, "freq1"),
        (dict(params=[["a"] * 11]), TypeError, "params"),
        (dict(style="fractal"), ValueError, "style"),
        (dict(out=np.empty((2, 32, 32), np.float32)), TypeError, "out"),
        (dict(out=np.empty((2, 32, 32, 4), np.uint8)), ValueError, "out"),
        (dict(out=np.empty((3, 32, 32), np.uint8)), ValueError, "out holds 3 images but params holds 2"),
        (dict(out=np.empty((2, 32, 64), np.uint8)[:, :, ::2]), ValueError, "out must be C-contiguous"),
        (dict(out=[[0]]), TypeError, "out"),
        (dict(seeds=[1, 2, 3]), ValueError, "seeds"),
        (dict(seeds=-1), ValueError, "seeds"),
        (dict(seeds=1.5), TypeError, "seeds"),
        (dict(canvas_size=0.0), ValueError, "canvas_size"),
        (dict(canvas_size=float("nan")), ValueError, "canvas_size"),
        (dict(canvas_size="a"), TypeError, "canvas_size must be a number"),
        (dict(canvas_size=1e-300), ValueError, r"canvas_size must be in \[1, 65536\]"),
        (dict(params=_params(2, line_width=-1e6)), ValueError, r"line_width must be in \[-512, 512\] for canvas_size"),
        (dict(params=_params(2, radius=1e308)), ValueError, r"params\[0\] radius must be in \[0, 512\]"),
        (dict(params=_params(2, center_x=-600)), ValueError, r"center_x must be in \[-512, 1024\]"),
        (dict(params=_params(2, oval_y=101)), ValueError, r"oval_y must be in \[0, 100\]"),
        (dict(params=_params(2, perlin_amp=-1)), ValueError, r"perlin_amp must be in \[0, 512\]"),
        (dict(params=_params(2, n_vertices=100000, n_contours=1000)), ValueError, "n_vertices x n_contours"),
        (dict(seeds=[2**64, 1]), ValueError, "seeds must be in"),
        (dict(threads=-1), ValueError, "threads"),
        (dict(threads=0), ValueError, "threads"),
        (dict(threads=1.5), TypeError, "threads"),
    ],
)
def test_bad_arguments_raise_naming_them(kwargs, error, match):
    with pytest.raises(error, match=match):
        _call(**kwargs)


def test_read_only_out_raises():
    out = np.empty((2, 32, 32), np.uint8)
    out.setflags(write=False)
    with pytest.raises(ValueError, match="out must be writeable"):
        _call(out=out)


def test_rejected_call_leaves_out_untouched():
    out = np.full((2, 32, 32), 7, np.uint8)
    with pytest.raises(ValueError):
        _call(params=_with("n_contours", 0), out=out)
    assert (out == 7).all()


def test_empty_batch():
    out = np.empty((0, 32, 32), np.uint8)
    assert render.render_contours(np.empty((0, 11)), out, seeds=[]).shape == (0, 32, 32)


def test_full_range_64_bit_seeds_from_a_list():
    first, second = (
        _render(_params(2), seeds=[2**64 - 1, 7]),
        _render(_params(2), seeds=np.array([2**64 - 1, 7], np.uint64)),
    )
    np.testing.assert_array_equal(first, second)
