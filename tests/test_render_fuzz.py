"""Property-based fuzzing of the renderer's Python face (hypothesis): any mix of valid and hostile arguments either
renders or is refused with a one-line TypeError/ValueError naming the problem; never another exception, a crash, or
pybind's multi-line "incompatible function arguments" text."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fdsl_app import render

pytestmark = pytest.mark.slow

HOSTILE = st.one_of(
    st.none(), st.booleans(), st.text(max_size=5), st.sampled_from([float("nan"), float("inf"), -1.5, 1e300]),
    st.integers(min_value=-(2**70), max_value=2**70), st.lists(st.integers(-3, 3), max_size=3),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
    st.sampled_from([np.zeros((2, 3), np.float32), np.zeros(0), np.array(["a"]), np.zeros((1, 8, 8), np.int16)]),
)  # fmt: skip


def _ifs(batch: int) -> np.ndarray:
    """`batch` copies of a 2-map contractive system."""
    maps = [[0.5, 0.0, 0.0, 0.5, 0.0, 0.0, 0.5], [0.5, 0.0, 0.0, 0.5, 0.5, 0.5, 0.5]]
    return np.tile(np.array([maps]), (batch, 1, 1))


def _contour(batch: int) -> np.ndarray:
    row = [40, 10, 1.0, 0.05, 30.0, 1.2, 1.1, 256.0, 256.0, 2, 3]
    return np.tile(np.array([row], np.float64), (batch, 1))


def _valid(batch: int, size: int) -> dict[str, dict[str, object]]:
    out = np.zeros((batch, size, size), np.uint8)
    cache = render.build_attractor_cache(_ifs(1), size=size, n_points=500, pad=2, dilate=False, threads=1)
    return {
        "render_ifs": dict(params=_ifs(batch), out=out, seeds=3, n_points=500, mode="fast", raster="patch", flips=1,
                           pad=2, threads=1, chains=4, burn_in=5),
        "fill_rate": dict(params=_ifs(batch), n_points=500, size=size, pad=2, threads=1),
        "render_contours": dict(params=_contour(batch), out=out, seeds=1, style="rcdb", canvas_size=512.0, threads=1),
        "draw_cached": dict(cache=cache, out=out, index=0, patch_seeds=7, raster="patch", flips=2, threads=1),
    }  # fmt: skip


def _call(name: str, kwargs: dict[str, object]) -> None:
    try:
        getattr(render, name)(**kwargs)
    except (TypeError, ValueError) as err:
        text = str(err)
        assert "incompatible function arguments" not in text, text
        assert text and "\n" not in text, f"{type(err).__name__} of more than one line: {text!r}"


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(["render_ifs", "fill_rate", "render_contours", "draw_cached"]),
    batch=st.integers(1, 3),
    size=st.integers(8, 24),
    data=st.data(),
)
def test_any_argument_renders_or_is_refused_in_one_line(name, batch, size, data):
    kwargs = _valid(batch, size)[name]
    for key in data.draw(st.sets(st.sampled_from(sorted(kwargs)), max_size=3), label="hostile keys"):
        kwargs[key] = data.draw(HOSTILE, label=key)
    _call(name, kwargs)


@settings(max_examples=300, deadline=None)
@given(row=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=11, max_size=11))
def test_any_contour_geometry_renders_or_is_refused_in_one_line(row):
    out = np.zeros((1, 16, 16), np.uint8)
    _call("render_contours", dict(params=np.array([row]), out=out, seeds=0, threads=1))


@settings(max_examples=300, deadline=None)
@given(maps=st.lists(st.lists(st.floats(-1e3, 1e3), min_size=7, max_size=7), min_size=1, max_size=9))
def test_any_ifs_system_renders_or_is_refused_in_one_line(maps):
    out = np.zeros((1, 16, 16), np.uint8)
    for mode in ("reference", "fast"):
        _call("render_ifs", dict(params=np.array([maps]), out=out, n_points=300, mode=mode, pad=2, threads=1))
