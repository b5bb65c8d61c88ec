"""The published FractalDB renderer restated in plain numpy and Python: the oracle of reference mode, and the
baseline of ``fdsl_app bench render``.

It follows ``fractal_renderer/ifs_function.py`` step by step: a Python float chain with map choices from numpy's
legacy seed, the NaN rule, shift-and-scale per axis, the ``np.uint16`` cast, the 3x3 patch paste, the final
top-bottom flip. It adds only the rules fdsl_app defines where the reference is undefined (points non-finite after
the NaN rule are dropped, a zero-span axis maps to its middle pixel, a point outside the image is dropped) and the
raster variants the C++ renderer offers besides FractalDB's. Patch masks are an argument: the reference draws them
from an unseeded ``random``. Slow by design (about 1 us per point): it exists to be obviously the reference.
"""

from __future__ import annotations

import math

import numpy as np

from fdsl_app.render import RASTERS, REFERENCE_SEED

GRAY = 127
_CELL_ROW = np.arange(9) // 3
_CELL_COL = np.arange(9) % 3
_BIT = 8 - np.arange(9)  # mask bit of each patch cell, row-major, MSB top-left


def chain(system: np.ndarray, n_points: int, seed: int = REFERENCE_SEED) -> tuple[np.ndarray, np.ndarray]:
    """The reference chain of an ``(N, 7)`` system: origin kept as point 0, ``u <= cumsum(p)`` with ``u`` from
    ``np.random.seed(seed); np.random.random(n_points)``, the previous point kept when no map matches.

    Returns:
        x and y, ``n_points`` each.
    """
    maps = [tuple(float(v) for v in row[:6]) for row in system]
    bounds = np.cumsum(system[:, 6]).tolist()
    np.random.seed(seed)
    # Python floats rather than indexing numpy arrays per step: the same arithmetic, a fair (faster) baseline.
    rand = np.random.random(n_points).tolist()
    xs, ys = [0.0] * n_points, [0.0] * n_points
    x = y = 0.0
    for i in range(1, n_points):
        u = rand[i - 1]
        for bound, (a, b, c, d, e, f) in zip(bounds, maps, strict=True):
            if u <= bound:
                x, y = a * x + b * y + e, c * x + d * y + f
                break
        xs[i], ys[i] = x, y
    return np.array(xs), np.array(ys)


def _drop_nan_run(key: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The reference's NaN rule on one axis: drop every NaN and the 100 points before the first."""
    nan_index = np.flatnonzero(np.isnan(key))
    if nan_index.size == 0:
        return key, other
    # The reference's range(first - 100, first); numpy wraps negative indices to the end, where every point is
    # NaN already (NaN propagates through the chain), so clamping at 0 removes the same points.
    rows = np.append(np.arange(max(0, nan_index[0] - 100), nan_index[0]), nan_index)
    return np.delete(key, rows), np.delete(other, rows)


def _axis(v: np.ndarray, size: int, pad: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel index per point and whether the point stays, for one axis."""
    if np.min(v) < 0.0:
        v = v - np.min(v)
    span = np.max(v) - np.min(v)
    if span == 0.0:
        return np.full(v.shape, size // 2, dtype=np.int64), np.ones(v.shape, dtype=bool)
    p = v / span * float(size - 2 * pad) + float(pad)
    keep = (p >= 0) & (p < size)
    return np.where(keep, p, 0).astype(np.uint16).astype(np.int64), keep


def pixels(xs: np.ndarray, ys: np.ndarray, width: int, height: int, pad: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """The reference rescale: ``(columns, rows)`` of the drawn points, in chain order."""
    with np.errstate(all="ignore"):
        xs, ys = _drop_nan_run(xs, ys)
        ys, xs = _drop_nan_run(ys, xs)
        finite = np.isfinite(xs) & np.isfinite(ys)
        xs, ys = xs[finite], ys[finite]
        if xs.size == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        cols, keep_x = _axis(xs, width, pad)
        rows, keep_y = _axis(ys, height, pad)
    keep = keep_x & keep_y
    return cols[keep], rows[keep]


def convert_color(index: int, n_div: int = 128) -> tuple[int, int, int]:
    """The reference's colour wheel (``convert_color``), in the tuple order it returns."""
    s = 0.75
    h_angle = 2.0 * math.pi * (float(index % n_div) / float(n_div))
    if h_angle >= 2.0 * math.pi:
        h_angle -= 2.0 * math.pi
    h = math.floor((3.0 / math.pi) * h_angle)
    i = 0.75
    p = i * (1.0 - s)
    q = i * (1.0 - s * ((3.0 / math.pi) * h_angle - h))
    t = i * (1.0 - s * ((1.0 - (3.0 / math.pi) * h_angle) + h))
    i, p, q, t = (int(np.uint8(v * 255.0)) for v in (i, p, q, t))
    return [(p, t, i), (p, i, q), (t, i, p), (i, q, p), (i, p, t), (q, p, i)][h]


_COLOURS = np.array([convert_color(i) for i in range(128)], np.uint8)


def draw(
    cols: np.ndarray,
    rows: np.ndarray,
    width: int,
    height: int,
    *,
    raster: str = "point",
    masks: np.ndarray | int | None = None,
    color: bool = False,
    flip: int = 0,
) -> np.ndarray:
    """Draw points as the reference saves them: gray ``(H, W)``, or ``(H, W, 3)`` with FractalDB's colour wheel.

    Args:
        cols, rows: pixels of the points, in chain order (later points are drawn over earlier ones).
        raster: ``point``; ``patch`` (a 3x3 patch per point at (+1, +1), its zero cells pasted too, as PIL's
            paste); ``union_patch`` (one mask for every point, only its set cells drawn); ``full_patch``; or
            ``density`` (hit counts, the peak 255, any hit at least 1; gray only).
        masks: 9-bit patch masks (row-major, MSB top-left): one per point for ``patch``, one for ``union_patch``.
        color: colour point ``i`` by ``convert_color(i)`` instead of gray 127.
        flip: the saved variant: 0 none, 1 top-bottom, 2 left-right, 3 both (after the reference's own
            top-bottom flip).
    """
    if raster not in RASTERS:
        raise ValueError(f"raster must be one of {', '.join(RASTERS)}, got {raster!r}")
    image = np.zeros((height, width, 3 if color else 1), np.uint8)
    value = _COLOURS[np.arange(len(cols)) % len(_COLOURS)] if color else np.full((len(cols), 1), GRAY, np.uint8)
    if raster == "density":
        counts = np.bincount(rows * width + cols, minlength=height * width).reshape(height, width)
        peak = int(counts.max(initial=0))
        if peak:
            scaled = np.maximum(1.0, counts * (255.0 / peak) + 0.5).astype(np.uint8)
            image[..., 0] = np.where(counts > 0, scaled, 0)
    elif raster == "point":
        image[rows, cols] = value  # numpy assigns in order: the last point on a pixel wins, as the reference
    else:
        mask = np.asarray(511 if raster == "full_patch" else masks, np.int64)
        on = ((mask[..., None] >> _BIT) & 1).astype(bool)  # (n, 9), or (9,) for one mask
        r, c = rows[:, None] + 1 + _CELL_ROW, cols[:, None] + 1 + _CELL_COL
        keep = (r < height) & (c < width) & (on | (raster == "patch"))
        cells = np.broadcast_to(on[..., None], (*r.shape, 1)) * value[:, None, :]
        image[r[keep], c[keep]] = cells[keep]  # point-major: a later patch (zeros too) wins, as PIL's paste
    image = np.flipud(image)  # the reference's final FLIP_TOP_BOTTOM
    if flip in (1, 3):
        image = np.flipud(image)
    if flip in (2, 3):
        image = np.fliplr(image)
    image = np.ascontiguousarray(image)
    return image if color else image[..., 0]
