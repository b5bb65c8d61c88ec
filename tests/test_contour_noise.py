"""The contours' Perlin noise (csrc/core/contour.cpp perlin1) against the `noise` package's pnoise1, which the
RCDB and VisualAtom reference scripts call with its defaults (octaves 1, repeat 1024, base 0)."""

from __future__ import annotations

import noise  # the test extra installs it: pip install '.[test]'
import numpy as np
import pytest

from fdsl_app.render import _render

# noise parses x as a C float and evaluates in float32 (fade, gradients, lerp, times 0.4f); perlin1 evaluates the
# same formula in float64. For float32-exact x (t = x - floor(x) is then exact in both) only that rounding differs:
# the fade's error times |g1 - g0| <= 8 dominates, and a scan of every 7th float32 t in [0, 1) with each of the 81
# gradient pairs finds at most 62 * 2**-24 = 3.7e-6. Twice that, 2**-17 = 7.6e-6, is the tolerance. Any other x is
# first rounded to float32 by the package, which alone moves its result by up to ~2e-4 on [1024, 2048) (slopes
# reach ~3.5, half an ulp is 6e-5 there): the inputs below are float32 values for that reason.
ATOL = 2.0**-17


def _float32_points() -> np.ndarray:
    """A few thousand float32-exact x in [0, 2048): integers (lattice points, where both are 0), the float32
    neighbours of the table's period 256 and the repeat period 1024 (where the lattice hash wraps), fractions of
    every cell near the periods, tiny values, and random ones."""
    rng = np.random.default_rng(1024)
    ints = np.arange(2048, dtype=np.float32)
    periods = np.array([256, 512, 768, 1024, 1280, 2047], np.float32)
    neighbours = [periods]
    for direction in (-np.inf, np.inf):
        x = periods.copy()
        for _ in range(16):
            x = np.nextafter(x, np.float32(direction))
            neighbours.append(x)
    near = (np.arange(1016, 1032)[:, None] + np.linspace(0, 1, 33, endpoint=False)[None, :]).ravel()
    tiny = np.array([0.0, 1e-45, 1e-38, 1e-20, 1e-7, 0.5, 1 - 2**-24], np.float32)
    random = rng.uniform(0, 2048, 3000)
    xs = np.concatenate([ints, *neighbours, near.astype(np.float32), tiny, random.astype(np.float32)])
    xs = xs[(xs >= 0) & (xs < 2048)]
    return xs.astype(np.float64)


def test_perlin1_equals_pnoise1_to_float32_rounding():
    xs = _float32_points()
    assert xs.size > 5000
    ours = _render.perlin1(xs)
    theirs = np.array([noise.pnoise1(float(x)) for x in xs])
    worst = int(np.argmax(np.abs(ours - theirs)))
    assert np.abs(ours - theirs).max() <= ATOL, f"x = {xs[worst]!r}: perlin1 {ours[worst]!r}, pnoise1 {theirs[worst]!r}"
    assert np.abs(theirs).max() > 0.5  # a real comparison, not zeros against zeros


def test_perlin1_repeats_with_the_table_period():
    # repeat 1024 is a multiple of the permutation's period 256: the noise repeats every 256.
    xs = np.random.default_rng(3).uniform(0, 256, 1000).astype(np.float32).astype(np.float64)
    for shift in (256, 1024, 1280):
        assert np.array_equal(_render.perlin1(xs), _render.perlin1(xs + shift))


@pytest.mark.parametrize("bad", [-1e-9, np.nan, np.inf, 2.0**53])
def test_perlin1_refuses_x_outside_its_domain(bad):
    with pytest.raises(ValueError, match=r"xs\[1\]"):
        _render.perlin1(np.array([1.5, bad]))


def test_perlin1_takes_float64_arrays_only():
    with pytest.raises(TypeError, match="float64"):
        _render.perlin1(np.zeros(3, np.float32))
