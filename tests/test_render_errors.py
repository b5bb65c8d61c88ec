"""Bad input raises TypeError or ValueError naming the argument; nothing crashes or writes a silent copy."""

from __future__ import annotations

import numpy as np
import pytest

from fdsl_app import render
from fdsl_app.render import _render

GOOD = np.array([[[0.5, 0, 0, 0.5, 0, 0, 0.5], [0.5, 0, 0, 0.5, 0.5, 0.5, 0.5]]])


def out(shape=(1, 32, 32), dtype=np.uint8):
    return np.zeros(shape, dtype)


def call(params=GOOD, o=None, **kw):
    return render.render_ifs(params, out() if o is None else o, n_points=kw.pop("n_points", 500), **kw)


def test_the_good_call_works():
    assert call().any()


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(o=out(dtype=np.float32)), TypeError, "out must have dtype uint8"),
        (dict(o=[[[0] * 32] * 32]), TypeError, "out must be a numpy array"),
        (dict(o=out((1, 32, 32, 4))), ValueError, r"out must be \(B, H, W\) or \(B, H, W, 3\)"),
        (dict(o=out((32, 32))), ValueError, "out must have 3 or 4 dimensions"),
        (dict(o=out((1, 32, 64))[:, :, ::2]), ValueError, "out must be C-contiguous"),
        (dict(o=np.broadcast_to(out(), (1, 32, 32))), ValueError, "out must be writeable"),
        (dict(o=out((2, 32, 32))), ValueError, "out holds 2 images but params holds 1"),
        (dict(params=GOOD[:, :, :6]), ValueError, r"params must have shape \(batch, maps, 7\)"),
        (dict(params=GOOD[0]), ValueError, r"params must have shape \(batch, maps, 7\)"),
        (dict(params=[["a"]]), TypeError, "params must be a numeric array"),
        (dict(params=np.where(np.arange(7) == 2, np.nan, GOOD)), ValueError, r"params\[0, 0, 2\] is nan"),
        (dict(params=np.where(np.arange(7) == 4, np.inf, GOOD)), ValueError, "must be finite"),
        (dict(params=GOOD * [1, 1, 1, 1, 1, 1, 0.8]), ValueError, "probabilities of system 0 sum to 0.8"),
        (dict(params=GOOD * [1, 1, 1, 1, 1, 1, -1]), ValueError, "probability.*must be >= 0"),
        (dict(params=np.zeros((1, 0, 7))), ValueError, r"params.shape\[1\] \(maps per system\)"),
        (dict(params=np.tile(GOOD[:, :1] / [1, 1, 1, 1, 1, 1, 9], (1, 9, 1))), ValueError, "maps per system"),
        (dict(n_maps=[1]), ValueError, r"n_maps\[0\] must be between 2 and 2"),
        (dict(n_maps=[0]), ValueError, r"n_maps\[0\] must be between 2"),
        (dict(n_maps=[2, 2]), ValueError, r"n_maps must be a scalar or have shape \(1,\)"),
        (dict(o=out((1, 12, 40))), ValueError, "larger than twice pad"),
        (dict(pad=-1), ValueError, "pad must be in"),
        (dict(n_points=0), ValueError, "n_points must be in"),
        (dict(n_points=-5), ValueError, "n_points must be in"),
        (dict(n_points=10**12), ValueError, "n_points must be in"),
        (dict(n_points=1.5), TypeError, "n_points must be an int"),
        (dict(threads=-1), ValueError, "threads must be in"),
        (dict(threads=0), ValueError, "threads must be in"),
        (dict(threads=2.5), TypeError, "threads must be a positive int or None"),
        (dict(seeds=-1), ValueError, "seeds must be >= 0"),
        (dict(seeds=2**32), ValueError, r"seeds\[0\] = 4294967296: reference mode"),
        (dict(seeds=0.5), TypeError, "seeds must be an int"),
        (dict(seeds=[1, 2]), ValueError, r"seeds must be a scalar or have shape \(1,\)"),
        (dict(flips=4), ValueError, r"flips\[i\] must be in \[0, 3\]"),
        (dict(mode="exact"), ValueError, "mode must be one of 'reference', 'fast'"),
        (dict(raster="dots"), ValueError, "raster must be one of 'point', 'patch'"),
        (dict(color=True), ValueError, r"color=True needs out of shape \(B, H, W, 3\)"),
        (dict(color=True, raster="density", o=out((1, 32, 32, 3))), ValueError, "density' is gray only"),
        (dict(mode="fast", chains=12), ValueError, "chains must be a multiple of 8"),
        (dict(mode="fast", chains=512), ValueError, "chains must be a multiple of 8"),
        (dict(mode="fast", burn_in=-1), ValueError, "burn_in must be in"),
        (dict(keep_aspect=True), ValueError, "keep_aspect=True is a fast-mode option"),
    ],
)
def test_bad_render_ifs_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        call(**kwargs)


def test_bad_input_leaves_out_untouched():
    o = np.full((1, 32, 32), 9, np.uint8)
    with pytest.raises(ValueError):
        call(o=o, params=GOOD * [1, 1, 1, 1, 1, 1, 3])
    assert (o == 9).all()


def test_the_private_module_checks_too():
    # Direct calls to _render get the same checks: nothing reaches C++ unchecked.
    args = dict(params=GOOD, n_maps=np.array([2], np.int32), out=out(), seeds=np.array([1], np.uint64),
                patch_seeds=np.array([1], np.uint64), flips=np.array([0], np.uint8), n_points=100, mode="reference",
                raster="point", color=False, pad=6, threads=1, chains=16, burn_in=0, start_at_fixed_point=False,
                keep_aspect=False)  # fmt: skip
    _render.render_ifs(**args)
    cases = [
        ("n_maps", np.array([2], np.int64), TypeError),
        ("seeds", np.array([1.0]), TypeError),
        ("params", GOOD.astype(np.float32), TypeError),
        ("flips", np.array([0, 1], np.uint8), ValueError),
        ("params", np.asfortranarray(np.tile(GOOD, (2, 1, 1)))[:1], ValueError),
    ]
    for key, bad, error in cases:
        with pytest.raises(error, match=key):
            _render.render_ifs(**{**args, key: bad})


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(size=12, pad=6), ValueError, "larger than twice pad"),
        (dict(size=0), ValueError, "size must be in"),
        (dict(n_points=0), ValueError, "n_points must be in"),
        (dict(threads=-2), ValueError, "threads must be in"),
        (dict(seeds=2**33), ValueError, r"seeds\[0\]"),
        (dict(params=GOOD[:, :, :5]), ValueError, "params must have shape"),
    ],
)
def test_bad_fill_rate_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        render.fill_rate(kwargs.pop("params", GOOD), **kwargs)


def test_pack_systems_rejects_bad_rows():
    with pytest.raises(ValueError, match=r"systems\[1\] must have shape \(maps, 7\)"):
        render.pack_systems([GOOD[0], np.zeros((2, 6))])


def test_the_side_cap_is_the_python_faces_max_side():
    """render.MAX_SIDE (what families and flags check against) is the side the bindings and the core refuse above."""
    assert call(o=out((1, 16, render.MAX_SIDE))).any()
    with pytest.raises(ValueError, match=str(render.MAX_SIDE)):
        call(o=out((1, 16, render.MAX_SIDE + 1)))
