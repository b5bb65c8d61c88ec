"""A slow, literal numpy/PIL re-statement of the published FractalDB renderer, the oracle of reference mode.

It follows fractal_renderer/ifs_function.py step by step (Python float chain, numpy legacy seed, NaN rule,
shift-and-scale, np.uint16 cast, PIL paste, top-bottom flip) and adds only the rules fdsl_app defines where the
reference is undefined: points non-finite after the NaN rule are dropped, a zero-span axis maps to its middle
pixel, and a pixel outside the image drops the point. Patch masks are taken as an argument (the reference draws
them from an unseeded `random`).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

GRAY = 127


def chain(system: np.ndarray, n_points: int, seed: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """The reference chain: origin kept, `u <= cumsum(p)`, previous point kept if no map matches."""
    maps = [tuple(float(v) for v in row) for row in system]
    select, total = [], 0.0
    for row in maps:
        total += row[6]
        select.append(total)
    np.random.seed(seed)
    rand = np.random.random(n_points)
    xs, ys = [0.0], [0.0]
    prev_x = prev_y = 0.0
    for i in range(n_points - 1):
        next_x, next_y = prev_x, prev_y
        for j, bound in enumerate(select):
            if rand[i] <= bound:
                a, b, c, d, e, f, _ = maps[j]
                next_x = prev_x * a + prev_y * b + e
                next_y = prev_x * c + prev_y * d + f
                break
        xs.append(next_x), ys.append(next_y)
        prev_x, prev_y = next_x, next_y
    return np.array(xs), np.array(ys)


def _drop_nan_run(key: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    nan_index = np.where(np.isnan(key))[0]
    if nan_index.size == 0:
        return key, other
    # The reference's range(first - 100, first); numpy wraps negative indices to the end, where every point is
    # NaN already (NaN propagates through the chain), so clamping at 0 removes the same points.
    extend = np.arange(max(0, nan_index[0] - 100), nan_index[0])
    rows = np.append(extend, nan_index)
    return np.delete(key, rows), np.delete(other, rows)


def _axis(v: np.ndarray, size: int, pad: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel index per point and whether the point stays, for one axis."""
    v = v.copy()
    if np.min(v) < 0.0:
        v -= np.min(v)
    span = np.max(v) - np.min(v)
    if span == 0.0:
        return np.full(v.shape, size // 2, dtype=np.int64), np.ones(v.shape, dtype=bool)
    p = v / span * float(size - 2 * pad) + float(pad)
    keep = (p >= 0) & (p < size)
    return np.where(keep, p, 0).astype(np.uint16).astype(np.int64), keep


def pixels(xs: np.ndarray, ys: np.ndarray, width: int, height: int, pad: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Reference rescale: (column, row) per drawn point."""
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
    """The reference's colour wheel, tuple order as it returns it."""
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


def _flip(image: np.ndarray, flip: int) -> np.ndarray:
    image = np.flipud(image)  # the reference's final FLIP_TOP_BOTTOM
    if flip in (1, 3):
        image = np.flipud(image)
    if flip in (2, 3):
        image = np.fliplr(image)
    return np.ascontiguousarray(image)


def draw_point(cols, rows, width: int, height: int, color: bool = False, flip: int = 0) -> np.ndarray:
    image = np.zeros((height, width, 3), np.uint8)
    for i in range(len(cols)):
        image[rows[i], cols[i], :] = convert_color(i) if color else (GRAY, GRAY, GRAY)
    return _flip(image, flip)


def draw_patch(cols, rows, masks, width: int, height: int, color: bool = False, flip: int = 0) -> np.ndarray:
    """PIL paste of a 3x3 patch per point at (x + 1, y + 1); mask bits row-major, MSB top-left."""
    image = Image.new("RGB", (width, height))
    for i in range(len(cols)):
        bits = f"{int(masks[i]):09b}"
        rgb = np.array(convert_color(i) if color else (GRAY, GRAY, GRAY))
        patch = np.zeros((3, 3, 3), np.uint8)
        for r in range(3):
            for c in range(3):
                patch[r, c, :] = rgb * int(bits[r * 3 + c])
        image.paste(Image.fromarray(patch), (int(cols[i]) + 1, int(rows[i]) + 1))
    return _flip(np.array(image), flip)


# --- the counter-based hash of csrc/core/rng.hpp, to know which patch masks the renderer drew ---
M64 = (1 << 64) - 1


def splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def stream_key(seed: int, stream: int) -> int:
    return splitmix64(splitmix64(seed) ^ ((stream * 0xD6E8FEB86659FD93) & M64))


def patch_masks(patch_seed: int, n: int) -> np.ndarray:
    key = np.uint32(stream_key(patch_seed, 1) & 0xFFFFFFFF)
    h = (np.arange(n, dtype=np.uint32) * np.uint32(0x9E3779B9)) ^ key
    h ^= h >> np.uint32(16)
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0xC2B2AE35)
    h ^= h >> np.uint32(16)
    return 1 + ((h.astype(np.uint64) * np.uint64(511)) >> np.uint64(32)).astype(np.int64)


def fractaldb_system(rng: np.random.Generator, n_maps: int, scale: float = 1.0) -> np.ndarray:
    """A FractalDB-style random system: a..f ~ U(-scale, scale), p proportional to |det|."""
    params = rng.uniform(-scale, scale, size=(n_maps, 6))
    det = np.abs(params[:, 0] * params[:, 3] - params[:, 1] * params[:, 2])
    return np.column_stack([params, det / det.sum()])
