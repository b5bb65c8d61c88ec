"""Typed face of the C++ renderer (`fdsl_app.render._render`).

Every function fills a caller-allocated uint8 array in place (``(B, H, W)`` gray or ``(B, H, W, 3)``), renders the
batch on internal threads with the GIL released, and validates its arguments first: a bad argument raises
``TypeError`` or ``ValueError`` naming it. Randomness is a pure function of the per-sample seeds, so the same seeds
give the same bytes whatever the thread count.

IFS modes (``mode=``):

- ``"reference"``: the published FractalDB renderer exactly. Map choices from numpy's legacy
  ``np.random.seed(seed); np.random.random(n)`` (FractalDB re-seeds with 100 for every image), ``u <= cumsum(p)``,
  a float64 chain from (0, 0) with the origin kept, the reference's NaN rule (drop the 100 points before the first
  NaN and every NaN), per-axis rescale into ``[pad, size - pad]`` truncated like its ``np.uint16`` cast, and its
  final top-bottom flip. Where the reference is undefined we define: points still non-finite after the NaN rule are
  dropped, an axis of zero span puts all points on its middle pixel, and points mapped outside the image are dropped.
- ``"fast"``: for training. ``chains`` independent float32 chains interleaved (SIMD), each discarding ``burn_in``
  steps, map choices from a counter-based hash of (seed, chain, step); optional start at map 0's fixed point and
  aspect-preserving rescale. A chain leaving ``|x|, |y| <= 1e8`` (divergence, NaN) restarts at its start point,
  so divergent systems draw their start region rather than hang or crash.

Raster variants (``raster=``): ``"point"`` (one pixel, gray 127), ``"patch"`` (FractalDB: a fresh random 3x3 mask
in 1..511 per point, pasted over with its zeros at offset (+1, +1)), ``"union_patch"`` (Anderson: one mask per image,
stamped as a union), ``"full_patch"`` (all 9 cells) and ``"density"`` (hit counts scaled so the peak is 255, gray
only). ``color=True`` (needs ``(B, H, W, 3)``) colours points by FractalDB's wheel of point index mod 128; gray
otherwise. ``flips`` picks the reference's 4 saved variants: 0 none, 1 top-bottom, 2 left-right, 3 both.

Attractor cache (:func:`build_attractor_cache`, :func:`draw_cached`): FractalDB, OFDB and 1p-frac seed every
reference chain with 100, so a system's pixels never change; the cache holds them once, one bit per pixel, and each
sample is drawn from it (its patch masks, random resized crop with an antialiased bilinear resize, flips) without
running the chain.
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from typing import Literal

import numpy as np

from fdsl_app.render import _render
from fdsl_app.render.args import call_native, float_array, int_arg, int_rows, per_sample, threads_arg
from fdsl_app.render.args import cpu_count as cpu_count  # re-exported: the default thread count

Mode = Literal["reference", "fast"]
Raster = Literal["point", "patch", "union_patch", "full_patch", "density"]
MODES: tuple[Mode, ...] = typing.get_args(Mode)
RASTERS: tuple[Raster, ...] = typing.get_args(Raster)
ContourStyle = Literal["rcdb", "visualatom"]
CacheRaster = Literal["point", "full_patch", "patch", "union_patch"]
CACHE_RASTERS: tuple[CacheRaster, ...] = typing.get_args(CacheRaster)

#: numpy legacy seed that FractalDB's ``calculate()`` uses for every image.
REFERENCE_SEED = 100
MAX_MAPS = 8
#: Largest image side the C++ core draws (its kMaxSide, csrc/core/raster.hpp).
MAX_SIDE = 8192
#: Most points per image (the C++ core's limit).
MAX_POINTS = 10_000_000
CONTOUR_FIELDS = (
    "n_vertices", "n_contours", "perlin_amp", "line_width", "radius",
    "oval_x", "oval_y", "center_x", "center_y", "freq1", "freq2",
)  # fmt: skip


def pack_systems(systems: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Stack systems of different map counts into ``(params[B, K, 7], n_maps[B])`` for :func:`render_ifs`.

    Each system is an ``(N, 7)`` array of rows ``a b c d e f p`` (``x' = a x + b y + e``, ``y' = c x + d y + f``).
    """
    arrays = [float_array(s, f"systems[{i}]") for i, s in enumerate(systems)]
    for i, a in enumerate(arrays):
        if a.ndim != 2 or a.shape[1] != 7:
            raise ValueError(f"systems[{i}] must have shape (maps, 7) with rows `a b c d e f p`, got {a.shape}")
    k = max((a.shape[0] for a in arrays), default=2)
    params = np.zeros((len(arrays), max(k, 2), 7))
    for i, a in enumerate(arrays):
        params[i, : a.shape[0]] = a
    return params, np.array([a.shape[0] for a in arrays], dtype=np.int32)


def _systems(params: np.ndarray, n_maps: Sequence[int] | np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """``(params (B, K, 7) float64, n_maps (B,) int32)``; n_maps defaults to K for every system."""
    params = float_array(params, "params")
    if params.ndim != 3:
        raise ValueError(f"params must have shape (batch, maps, 7), got shape {params.shape}")
    batch = params.shape[0]
    return params, per_sample(params.shape[1] if n_maps is None else n_maps, "n_maps", batch, np.int32)


def render_ifs(
    params: np.ndarray,
    out: np.ndarray,
    *,
    seeds: int | Sequence[int] | np.ndarray = REFERENCE_SEED,
    patch_seeds: int | Sequence[int] | np.ndarray | None = None,
    n_maps: Sequence[int] | np.ndarray | None = None,
    n_points: int = 100_000,
    mode: Mode = "reference",
    raster: Raster = "point",
    color: bool = False,
    flips: int | Sequence[int] | np.ndarray = 0,
    pad: int = 6,
    threads: int | None = None,
    chains: int = 16,
    burn_in: int = 20,
    start_at_fixed_point: bool = False,
    keep_aspect: bool = False,
    crops: np.ndarray | None = None,
    crop_pad_fraction: float | None = None,
) -> np.ndarray:
    """Render B iterated function systems into ``out`` and return it.

    Args:
        params: ``(B, K, 7)`` rows ``a b c d e f p``, K <= 8 (see :func:`pack_systems` for mixed map counts).
        out: uint8 ``(B, H, W)`` or ``(B, H, W, 3)``, C-contiguous and writeable; every pixel is written.
        seeds: per-sample (or one) seed of the chain: numpy's legacy seed (< 2**32) in reference mode,
            any 64-bit value in fast mode.
        patch_seeds: per-sample seed of the patch masks; defaults to ``seeds``.
        n_maps: maps used per system (2..K); defaults to K for every system.
        n_points: points per image, including the origin in reference mode (1..10,000,000).
        mode, raster, color, flips: see the module docstring.
        pad: border in pixels on each side; the image must be larger than ``2 * pad``.
        threads: worker threads (default: all cores).
        chains, burn_in, start_at_fixed_point, keep_aspect: fast mode only.
        crops: fast mode only: ``(B, 4)`` per-sample ``left, top, width, height`` in fractions of the full image
            (y up, before ``flips``): only that part is drawn, scaled to fill ``out`` -- a random resized crop done
            on the points, at the output resolution, with no resampling of pixels.
        crop_pad_fraction: the full image's border as a fraction of its side (default ``pad / width``: the full
            image at the output size; a family rendering at 362 px with pad 6 passes 6 / 362).
    """
    params, n_maps = _systems(params, n_maps)
    batch = params.shape[0]
    seeds = per_sample(seeds, "seeds", batch, np.uint64)
    patch_seeds = seeds if patch_seeds is None else per_sample(patch_seeds, "patch_seeds", batch, np.uint64)
    return call_native(
        _render.render_ifs, params, n_maps, out, seeds, patch_seeds,
        per_sample(flips, "flips", batch, np.uint8), int_arg(n_points, "n_points"), mode, raster, bool(color),
        int_arg(pad, "pad"), threads_arg(threads), int_arg(chains, "chains"), int_arg(burn_in, "burn_in"),
        bool(start_at_fixed_point), bool(keep_aspect), None if crops is None else float_array(crops, "crops"),
        _crop_pad(crop_pad_fraction, pad, out),
    )  # fmt: skip


def _crop_pad(value: float | None, pad: int, out: np.ndarray) -> float:
    if value is not None:
        return float(value)
    width = out.shape[2] if isinstance(out, np.ndarray) and out.ndim >= 3 else 0
    return pad / width if width else 0.0


def fill_rate(
    params: np.ndarray,
    *,
    n_maps: Sequence[int] | np.ndarray | None = None,
    seeds: int | Sequence[int] | np.ndarray = REFERENCE_SEED,
    n_points: int = 100_000,
    size: int = 512,
    pad: int = 6,
    threads: int | None = None,
) -> np.ndarray:
    """Share of non-zero pixels of a reference-mode point render, per system (FractalDB's category filter).

    The defaults are the published category search: 512 px, 100k points, pad 6.
    """
    params, n_maps = _systems(params, n_maps)
    return call_native(
        _render.fill_rate, params, n_maps, per_sample(seeds, "seeds", params.shape[0], np.uint64),
        int_arg(n_points, "n_points"), int_arg(size, "size"), int_arg(pad, "pad"), threads_arg(threads),
    )  # fmt: skip


class PublishedStream:
    """The published FractalDB category search's one random stream, replayed (``fdsl-spec.md`` 2.1).

    ``param_search/ifs_search.py`` seeds numpy once (``np.random.seed(seed)``) and every candidate draws from that
    stream in turn, accepted or not: ``N = randint(min_maps, max_maps + 1)``, ``uniform(-r, r, 6)`` per map, p from
    ``|det|``, then ``random(n_points)`` for its chain. The candidates come out in order (the C++ generator is
    numpy's legacy MT19937 and its ``randint``/``uniform`` rules); their fill-rate renders run on all cores, each
    from a copy of the stream at its chain's start. With seed 1 and the defaults it yields the published
    FractalDB-1k categories, values bit for bit.
    """

    def __init__(
        self, seed: int = 1, *, min_maps: int = 2, max_maps: int = 7, param_range: float = 1.0, n_points: int = 100_000
    ) -> None:
        self._native = call_native(
            _render.PublishedStream, int_arg(seed, "seed"), int_arg(min_maps, "min_maps"),
            int_arg(max_maps, "max_maps"), float(param_range), int_arg(n_points, "n_points"),
        )  # fmt: skip

    @property
    def consumed(self) -> int:
        """Candidates drawn so far."""
        return int(self._native.consumed)

    def examine(
        self, count: int, *, size: int = 512, pad: int = 6, threads: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The next `count` candidates: params ``(count, max_maps, 7)`` (rows past N zero), ``n_maps``, and the fill
        rate of each one's reference point render at `size` px with `pad` (its chain from the stream)."""
        return call_native(self._native.examine, int_arg(count, "count"), int_arg(size, "size"),
                           int_arg(pad, "pad"), threads_arg(threads))  # fmt: skip

    def skip(self, count: int) -> np.ndarray:
        """Move past `count` candidates without rendering them; returns their map counts."""
        return call_native(self._native.skip, int_arg(count, "count"))


def render_contours(
    params: np.ndarray,
    out: np.ndarray,
    *,
    seeds: int | Sequence[int] | np.ndarray,
    style: ContourStyle = "rcdb",
    canvas_size: float = 512.0,
    threads: int | None = None,
) -> np.ndarray:
    """Render radial-contour images (RCDB or VisualAtom) into ``out`` and return it.

    Args:
        params: ``(B, 11)`` rows in the order of :data:`CONTOUR_FIELDS`; geometry in pixels of a
            ``canvas_size`` canvas (512 in the papers), scaled to ``out``'s size.
        out: uint8 ``(B, H, W)`` or ``(B, H, W, 3)``.
        seeds: per-sample (or one) 64-bit seed of the gray levels and noise.
        style: ``"rcdb"`` (gray lines on white) or ``"visualatom"`` (gray lines on black, sine-modulated).
    """
    params = float_array(params, "params")
    batch = params.shape[0] if params.ndim == 2 else 0
    if isinstance(canvas_size, bool) or not isinstance(canvas_size, int | float | np.integer | np.floating):
        raise TypeError(f"canvas_size must be a number (the reference canvas, 512), got {type(canvas_size).__name__}")
    return call_native(
        _render.render_contours, params, out, per_sample(seeds, "seeds", batch, np.uint64), style, float(canvas_size),
        threads_arg(threads),
    )


def fast_kernel() -> str:
    """The SIMD kernel of fast mode on this CPU: ``"avx2"`` or ``"generic"``."""
    return _render.fast_kernel()


def build_flags() -> str:
    """Compiler and flags the renderer was built with."""
    return _render.build_flags


def cache_words(size: int) -> int:
    """64-bit words per row of an attractor cache of side `size`: ``ceil(size / 64)``."""
    return (int(size) + 63) // 64


def build_attractor_cache(
    params: np.ndarray,
    *,
    n_maps: Sequence[int] | np.ndarray | None = None,
    size: int,
    n_points: int,
    pad: int = 6,
    dilate: bool,
    threads: int | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """The attractor cache of B systems: each one's reference-mode render, one bit per pixel.

    System k's render is ``render_ifs(params[k:k+1], mode="reference", seeds=REFERENCE_SEED, n_points=n_points,
    pad=pad, flips=0)`` at ``size`` x ``size``, with ``raster="point"`` (``dilate=False``) or ``raster="full_patch"``
    (``dilate=True``: every point's 3x3 patch); its pixel (r, c) is set in the cache where that render is not 0, bit
    ``c % 64`` of word ``cache[k, r, c // 64]`` (bits past column ``size - 1`` are 0).

    Args:
        params, n_maps: the systems, as :func:`render_ifs` takes them.
        size: the image side (1..8192, larger than ``2 * pad``).
        n_points, pad: as :func:`render_ifs` (FractalDB: 100,000 or 200,000 points, pad 6).
        dilate: ``True`` for the caches of draw kinds ``"full_patch"`` and ``"patch"``, ``False`` for ``"point"``
            and ``"union_patch"`` (see :func:`draw_cached`).
        threads: worker threads (default: all cores); systems are built in parallel.
        out: where to write, uint64 ``(B, size, cache_words(size))``, C-contiguous and writeable (e.g. a writeable
            ``np.memmap``); default: a new array.

    Returns:
        ``out``, or the new array.
    """
    params, n_maps = _systems(params, n_maps)
    size = int_arg(size, "size")
    if not 1 <= size <= MAX_SIDE:
        raise ValueError(f"size must be in [1, {MAX_SIDE}], got {size}")
    if not isinstance(dilate, bool | np.bool_):
        raise TypeError(f"dilate must be a bool, got {type(dilate).__name__}")
    shape = (params.shape[0], size, cache_words(size))
    if out is None:
        out = np.empty(shape, np.uint64)
    elif isinstance(out, np.ndarray) and out.shape != shape:
        raise ValueError(f"out must have shape {shape} (systems, size, cache_words(size)), got shape {out.shape}")
    return call_native(
        _render.build_cache, params, n_maps, out, int_arg(n_points, "n_points"), int_arg(pad, "pad"), bool(dilate),
        threads_arg(threads),
    )


def draw_cached(
    cache: np.ndarray,
    out: np.ndarray,
    *,
    index: int | Sequence[int] | np.ndarray,
    patch_seeds: int | Sequence[int] | np.ndarray,
    raster: CacheRaster,
    crops: np.ndarray | Sequence[Sequence[int]] | None = None,
    flips: int | Sequence[int] | np.ndarray = 0,
    threads: int | None = None,
) -> np.ndarray:
    """Draw B samples from an attractor cache into ``out`` and return it.

    Sample b takes system ``index[b]`` of ``cache`` (side S), finds its lit pixels, crops ``crops[b]`` out of them,
    resizes the crop to ``out``'s side T and writes it flipped by ``flips[b]``. Pixels are in the flip-0 frame:
    ``(r, c)``, ``pidx = r * S + c``. The kinds (``raster=``) and the cache each needs:

    - ``"point"`` (a ``dilate=False`` cache): the cached pixels; FractalDB's point raster.
    - ``"full_patch"`` (a ``dilate=True`` cache): the cached pixels; the full 3x3 patch raster.
    - ``"patch"`` (a ``dilate=True`` cache): FractalDB's patches, drawn per pixel at their exact marginal: a cached
      pixel is lit where ``hash32(uint32(stream_key(patch_seed, 3)), pidx) < 2151686160`` (probability 256/511,
      that of the reference's last-writer-wins paste of uniform masks in 1..511; not the reference's joint law).
    - ``"union_patch"`` (a ``dilate=False`` cache): Anderson's one 3x3 mask per image, the renderer's own mask
      ``m = 1 + bounded(uint32(stream_key(patch_seed, 2)), 511)``: ``(r, c)`` is lit where some cell ``(dr, dc)``
      (0..2 each) with mask bit ``8 - (3 dr + dc)`` set has a cached pixel at ``(r + 1 + dr, c - 1 - dc)``.

    The resize is PIL's / torchvision's antialiased bilinear resize of the crop, per axis with input length n:
    ``scale = n / T``, ``support = max(scale, 1)``; output i has ``center = (i + 0.5) * scale`` and taps
    ``j in [max(0, floor(center - support + 0.5)), min(n, floor(center + support + 0.5)))`` weighted
    ``max(0, 1 - |(j + 0.5 - center) / support|)`` (float64, divided by their sum, stored as float32); the sums are
    float32, vertical first. The gray is ``min(127, floor(127 * acc + 0.5))`` in float32. A whole-image crop at
    ``T == S`` is the exact render: ``render_ifs(mode="reference", raster=raster, patch_seeds=..., flips=...)`` for
    ``"point"``, ``"full_patch"`` and ``"union_patch"``.

    Args:
        cache: uint64 ``(K, S, cache_words(S))`` from :func:`build_attractor_cache`; may be read-only (e.g. a
            read-only ``np.memmap``).
        out: uint8 ``(B, T, T)``, C-contiguous and writeable; every pixel is written.
        index: per-sample (or one) system of the cache, in ``[0, K)``.
        patch_seeds: per-sample (or one) 64-bit seed of the patch hashes (``"patch"``) or mask (``"union_patch"``).
        raster: one of :data:`CACHE_RASTERS`, above.
        crops: ``(B, 4)`` ints, per-sample ``left, top, width, height`` in pixels of the flip-0 frame (a caller that
            wants a crop in the flipped image mirrors it), inside the S x S image with width, height >= 1;
            ``None``: the whole image.
        flips: per-sample (or one) flip of the result: 0 none, 1 top-bottom, 2 left-right, 3 both.
        threads: worker threads (default: all cores). The bytes do not depend on it.
    """
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy array of dtype uint8, got {type(out).__name__}")
    if raster not in CACHE_RASTERS:
        raise ValueError(f"raster must be one of {', '.join(map(repr, CACHE_RASTERS))}, got {raster!r}")
    batch = out.shape[0] if out.ndim else 0
    return call_native(
        _render.draw_cached, cache, per_sample(index, "index", batch, np.int64),
        per_sample(patch_seeds, "patch_seeds", batch, np.uint64),
        None if crops is None else int_rows(crops, "crops", batch, 4, np.int32),
        per_sample(flips, "flips", batch, np.uint8), out, raster, threads_arg(threads),
    )  # fmt: skip
