"""The chaos game in PyTorch: a whole batch of IFS images rendered at once on one device (the GPU when there is one).

:func:`render_ifs_torch` is the tensor twin of :func:`fdsl_app.render.render_ifs` in fast mode, gray only. It runs
``B x chains`` float32 chains in lockstep, one batch of tensor operations per step, and follows the C++ fast mode
step for step, so that with a chain count the C++ accepts (a multiple of 8 up to 256) it gives the same bytes:

- Randomness is counter-based, a pure function of (seed, chain, step): chain ``c`` of an image has the 32-bit key
  ``splitmix64(splitmix64(seed) ^ c * 0xD6E8FEB86659FD93) mod 2**32`` (computed on the host in numpy, like the
  C++ ``stream_key``), and at step ``s`` draws ``r = fmix32(key ^ (s * 0x9E3779B9 mod 2**32)) >> 8``, a 24-bit
  uniform (``fmix32`` is murmur3's 32-bit finaliser). The map is the number of cumulative probabilities, rounded
  onto the 2**24 grid, that are <= r. Tensors hold the 32-bit values in int64; a product modulo 2**32 is split at
  bit 16 of the constant so that no intermediate exceeds 2**49 (int64 overflow is never relied on).
- Each chain starts at the origin (or map 0's fixed point), discards ``burn_in`` steps, then keeps one point per
  step; point ``i = (step - burn_in) * chains + chain`` for ``i < n_points``. A chain leaving ``|x|, |y| <= 1e8``
  (divergence, NaN, inf) restarts at its start point, so divergent systems draw their start region and terminate.
- The per-image bbox of the kept points maps them into ``[pad, size - pad]`` per axis (or with one scale,
  ``keep_aspect``) with the C++ float32 formula, truncation and clamping; y points up (the reference's top-bottom
  flip) and ``flips`` (0 none, 1 top-bottom, 2 left-right, 3 both) picks the variant, as in the C++ renderer.

Rasters: ``"point"`` (gray 127), ``"union_patch"`` (one 3x3 mask per image, union), ``"full_patch"`` (all 9 cells)
and ``"density"`` (hit counts scaled so the peak is 255, a hit pixel never black) are order-independent and exact.
``"patch"`` (FractalDB: a fresh mask in 1..511 per point pasted with its zeros at offset (+1, +1), last point
wins) is also exact, without any ordering in the scatter: the pixels a point stamps lie 1..3 rows and 1..3
columns after its own pixel (before orientation), so the last writer of a pixel is the highest point index among
the 9 point pixels that can reach it. One scatter keeps the highest point index per point pixel (``amax``,
order-independent), and a 3x3 pass over the image picks, per pixel, the neighbour with the highest index and that
point's mask bit. Union and full patches are the same pass as a dilation of the point image. Every raster thus
costs one scatter per point; the rest is per pixel.

Memory: the chains run once and every kept point stays on the device (``B x n_points x 8`` bytes of float32 x, y;
256 images of 100k points: 205 MB; 32 images: 26 MB), because the bbox is needed before any point is mapped. The
alternative, running the chains twice from the same counters (bbox, then pixels), would keep memory small but
doubles the step loop, which is the part bound by kernel launches on a GPU. Temporaries are bounded: map choices
are drawn and points mapped in chunks of ``2**21`` values on a GPU (``2**18`` on a CPU, for its cache), and the
per-pixel passes hold a few ``B x (size + 3)**2`` images of at most 8 bytes a pixel (the patch pass hashes in
int64 over slices of images of about as many pixels).

Determinism: integer hashing, elementwise float32 arithmetic (no fused multiply-add, no reductions but min/max)
and order-independent scatters (a constant fill, ``amax``, integer sums): the same seeds give the same bytes on one
device whatever the thread count, and CPU and GPU agree unless the device's float32 arithmetic differs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from fdsl_app import render
from fdsl_app.render import Raster
from fdsl_app.render.args import float_array, int_arg, per_sample
from fdsl_app.render.keys import splitmix64

MAX_CHAINS = 1 << 20
MAX_BURN_IN = 1_000_000

_GRAY = 127
_LIMIT = 1e8  # divergence guard of the C++ fast mode
_M32 = 0xFFFFFFFF
_WEYL = 0x9E3779B9  # 2**32 / golden ratio: the step counter's Weyl increment
_STREAM = np.uint64(0xD6E8FEB86659FD93)  # stream multiplier of the C++ stream_key
_GRID = 1 << 24  # map choices compare 24-bit uniforms with thresholds on this grid
# Values per working chunk (map choices, pixel mapping): a GPU wants few large launches, a CPU wants its cache.
_WORK = {"cuda": 1 << 21}
_WORK_CPU = 1 << 18
_PROB_TOLERANCE = 1e-4
_CELLS = [(dr, dc) for dr in range(3) for dc in range(3)]  # patch cell k = 3 dr + dc is mask bit 8 - k


def stream_keys(seeds: np.ndarray, streams: np.ndarray) -> np.ndarray:
    """The C++ ``uint32(stream_key(seed, stream))`` for every (seed, stream) pair: ``(len(seeds), len(streams))``."""
    with np.errstate(over="ignore"):
        mixed = splitmix64(seeds.astype(np.uint64))[:, None] ^ (streams.astype(np.uint64) * _STREAM)[None, :]
        return (splitmix64(mixed) & np.uint64(_M32)).astype(np.int64)


def _work(device: torch.device) -> int:
    return _WORK.get(device.type, _WORK_CPU)


def _mul32(h: torch.Tensor, c: int, *, inplace: bool = False) -> torch.Tensor:
    """``h * c mod 2**32`` for int64 ``h`` in [0, 2**32): c is split at bit 16 so no product passes 2**48.

    In-place operations (and `inplace`, which overwrites `h`) spare allocations, which a CPU pays in page faults.
    """
    high = h * (c >> 16)
    high &= 0xFFFF
    high <<= 16
    low = h.mul_(c & 0xFFFF) if inplace else h * (c & 0xFFFF)
    low += high
    return low.bitwise_and_(_M32)


def mix32(h: torch.Tensor) -> torch.Tensor:
    """murmur3's 32-bit finaliser (a bijection with full avalanche) of int64 values in [0, 2**32)."""
    h = h ^ (h >> 16)  # a new tensor: the caller's is never written
    h = _mul32(h, 0x85EBCA6B, inplace=True)
    h ^= h >> 13
    h = _mul32(h, 0xC2B2AE35, inplace=True)
    h ^= h >> 16
    return h


def hash32(key: torch.Tensor, counter: torch.Tensor) -> torch.Tensor:
    """Value ``counter`` (>= 0, < 2**32) of the 32-bit stream ``key``: the C++ ``hash32``."""
    return mix32(_mul32(counter, _WEYL) ^ key)


def _mask_of(hashed: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """A 3x3 mask in 1..511 from a 32-bit hash (multiply-shift, like the C++ ``1 + bounded(h, 511)``)."""
    return 1 + ((hashed * 511) >> 32)


def _check_systems(params: np.ndarray, n_maps: np.ndarray) -> None:
    """ValueError naming the first bad system: the checks of the C++ renderer."""
    batch, k = params.shape[:2]
    if params.ndim != 3 or params.shape[2] != 7:
        raise ValueError(f"params must have shape (batch, maps, 7) with rows `a b c d e f p`, got {params.shape}")
    if not 2 <= k <= render.MAX_MAPS:
        raise ValueError(f"params.shape[1] (maps per system) must be in [2, {render.MAX_MAPS}], got {k}")
    for i in range(batch):
        n = int(n_maps[i])
        if not 2 <= n <= k:
            raise ValueError(f"n_maps[{i}] must be between 2 and {k} (at most {render.MAX_MAPS}), got {n}")
        rows = params[i, :n]
        if not np.isfinite(rows).all():
            raise ValueError(f"params[{i}] has a non-finite value; every parameter and probability must be finite")
        if (rows[:, 6] < 0).any():
            raise ValueError(f"params[{i}, :, 6] (probabilities) must be >= 0, got {rows[:, 6]}")
        total = np.cumsum(rows[:, 6])[-1]
        if abs(total - 1.0) > _PROB_TOLERANCE:
            raise ValueError(
                f"probabilities of system {i} sum to {total}; they must sum to 1 (within {_PROB_TOLERANCE}): "
                "normalise them, e.g. p / p.sum()"
            )


def _thresholds(params: np.ndarray, n_maps: np.ndarray) -> np.ndarray:
    """Cumulative probabilities on the 2**24 grid, ``(B, K - 1)`` int64; unused slots at 2**24 (never reached)."""
    k = params.shape[1]
    used = np.arange(k)[None, :] < n_maps[:, None]
    p = np.where(used, params[:, :, 6], 0.0)
    total = np.cumsum(p, axis=1)[:, -1:]  # sequential sums in map order, as the C++ loop adds them
    scaled = np.cumsum(p / total, axis=1)[:, :-1] * float(_GRID)
    whole = np.trunc(scaled)
    rounded = whole + (scaled - whole >= 0.5)  # std::lround: halves away from zero (np.round rounds to even)
    return np.where(np.arange(k - 1)[None, :] < n_maps[:, None] - 1, rounded, _GRID).astype(np.int64)


def _fixed_points(params: np.ndarray) -> np.ndarray:
    """Fixed point of each system's map 0, ``(B, 2)``; the origin where it is ill-defined (as the C++ does)."""
    a, b, c, d, e, f = (params[:, 0, q] for q in range(6))
    det = (1.0 - a) * (1.0 - d) - b * c
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        fx = ((1.0 - d) * e + b * f) / det
        fy = (c * e + (1.0 - a) * f) / det
    ok = (np.abs(det) >= 1e-9) & np.isfinite(fx) & np.isfinite(fy) & (np.abs(fx) < 1e8) & (np.abs(fy) < 1e8)
    return np.where(ok[:, None], np.stack([fx, fy], axis=1), 0.0)


def _choose_maps(keys: torch.Tensor, thresholds: torch.Tensor, s0: int, s1: int) -> torch.Tensor:
    """Map index of every chain at steps [s0, s1): ``(B, steps, chains)`` int64."""
    weyl = (torch.arange(s0, s1, device=keys.device, dtype=torch.int64) * _WEYL) & _M32
    r = mix32(keys[:, None, :] ^ weyl[None, :, None])
    r >>= 8
    return torch.searchsorted(thresholds, r.view(r.shape[0], -1), right=True).view_as(r)


def _run_chains(
    coef: torch.Tensor, thresholds: torch.Tensor, start: torch.Tensor, keys: torch.Tensor, n_points: int, burn_in: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the chains; return the kept points' x and y, ``(B, n_points)`` float32 (point = step * chains + chain).

    Args:
        coef: ``(6, B * K)`` float32 rows a..f of every map of every system.
        thresholds: ``(B, K - 1)`` int64 cumulative probabilities on the 2**24 grid.
        start: ``(2, B, 1)`` float32 start point (and restart point) of each image's chains.
        keys: ``(B, chains)`` int64 32-bit chain keys.
    """
    batch, chains = keys.shape
    steps = -(-n_points // chains)
    xs = torch.empty(batch, steps, chains, dtype=torch.float32, device=keys.device)
    ys = torch.empty_like(xs)
    x, y = start[0].expand(batch, chains), start[1].expand(batch, chains)
    base = (torch.arange(batch, device=keys.device) * (coef.shape[1] // batch))[:, None, None]
    per_chunk = max(1, _work(keys.device) // (batch * chains))
    for s0 in range(0, burn_in + steps, per_chunk):
        s1 = min(burn_in + steps, s0 + per_chunk)
        # Taking with the (steps, B, chains) view gives each step's coefficients as contiguous (B, chains) rows;
        # one take per coefficient is about twice as fast on a CPU as a (6, ...) advanced index.
        index = (_choose_maps(keys, thresholds, s0, s1) + base).transpose(0, 1)
        g = [torch.take(row, index) for row in coef]
        for s in range(s0, s1):
            a, b, c, d, e, f = (table[s - s0] for table in g)
            nx = x * a  # (x a + y b) + e in float32, one rounding per operation like the C++ (no FMA)
            nx += y * b
            nx += e
            ny = x * c
            ny += y * d
            ny += f
            ok = nx.abs() <= _LIMIT  # false for NaN and inf too
            ok &= ny.abs() <= _LIMIT
            kept = s >= burn_in
            x = torch.where(ok, nx, start[0], out=xs[:, s - burn_in] if kept else None)
            y = torch.where(ok, ny, start[1], out=ys[:, s - burn_in] if kept else None)
    return xs.view(batch, -1)[:, :n_points], ys.view(batch, -1)[:, :n_points]


def _axis_transform(lo: torch.Tensor, hi: torch.Tensor, room: int) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 span and scale of one axis, the C++ formula (axis_scale): scale 0 for a zero span, and for a span so
    small that room / span is not a finite float (both then draw the middle)."""
    span = hi - lo
    room_t = torch.full_like(span, float(room))
    scale = torch.where(span > 0, room_t / span, torch.zeros_like(span))
    return span, torch.where(torch.isfinite(scale), scale, torch.zeros_like(scale))


def _pixel_transforms(
    xs: torch.Tensor, ys: torch.Tensor, size: int, pad: int, keep_aspect: bool
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Per image and axis (x, y): origin, scale and offset, ``(B, 1)`` float32, of ``(v - origin) * scale + offset``."""
    room = size - 2 * pad
    (lo_x, hi_x), (lo_y, hi_y) = torch.aminmax(xs, dim=1), torch.aminmax(ys, dim=1)
    span_x, sx = _axis_transform(lo_x, hi_x, room)
    span_y, sy = _axis_transform(lo_y, hi_y, room)
    if keep_aspect:
        sx = sy = torch.where((sx > 0) & (sy > 0), torch.minimum(sx, sy), torch.maximum(sx, sy))
    room_t = torch.full_like(span_x, float(room))
    # Offsets centre the drawing in its room (exactly pad when the axis fills it; the middle for a zero span).
    ox = float(pad) + 0.5 * (room_t - sx * span_x)
    oy = float(pad) + 0.5 * (room_t - sy * span_y)
    return [(lo[:, None], s[:, None], o[:, None]) for lo, s, o in ((lo_x, sx, ox), (lo_y, sy, oy))]


def _scatter_points(
    xs: torch.Tensor, ys: torch.Tensor, size: int, pad: int, keep_aspect: bool, raster: str
) -> torch.Tensor:
    """One scatter of all points into an unflipped canvas ``(B, size + 3, size + 3)`` with 3 empty leading rows and
    columns (so the 3x3 pass never clips): hits (uint8), counts (density, int32) or the highest point index (patch,
    int32, -1 where none)."""
    batch, n = xs.shape
    side = size + 3
    if raster == "patch":
        canvas = torch.full((batch * side * side,), -1, dtype=torch.int32, device=xs.device)
    else:
        canvas = torch.zeros(batch * side * side, dtype=torch.int32 if raster == "density" else torch.uint8,
                             device=xs.device)  # fmt: skip
    (x0, sx, ox), (y0, sy, oy) = _pixel_transforms(xs, ys, size, pad, keep_aspect)
    image_base = (torch.arange(batch, device=xs.device) * (side * side) + 3 * side + 3)[:, None]
    per_chunk = max(1, _work(xs.device) // max(batch, 1))
    for p0 in range(0, n, per_chunk):
        p1 = min(n, p0 + per_chunk)
        # (v - origin) * scale + offset in float32, truncated toward zero and clamped, as the C++ maps pixels.
        col = (xs[:, p0:p1] - x0).mul_(sx).add_(ox).to(torch.int64).clamp_(0, size - 1)
        row = (ys[:, p0:p1] - y0).mul_(sy).add_(oy).to(torch.int64).clamp_(0, size - 1)
        pixel = row.mul_(side).add_(col).add_(image_base).view(-1)
        if raster == "patch":
            index = torch.arange(p0, p1, dtype=torch.int32, device=xs.device).expand(batch, -1).reshape(-1)
            canvas.scatter_reduce_(0, pixel, index, reduce="amax")
        elif raster == "density":
            canvas.index_put_((pixel,), torch.ones((), dtype=torch.int32, device=xs.device), accumulate=True)
        else:
            canvas.index_fill_(0, pixel, 1)
    return canvas.view(batch, side, side)


def _cell(canvas: torch.Tensor, k: int) -> torch.Tensor:
    """For every output pixel, the point pixel whose patch cell k lands on it: a shifted ``(B, H, W)`` view."""
    dr, dc = _CELLS[k]
    size = canvas.shape[1] - 3
    return canvas[:, 2 - dr : 2 - dr + size, 2 - dc : 2 - dc + size]


def _stamp_patches(last: torch.Tensor, patch_keys: torch.Tensor) -> torch.Tensor:
    """FractalDB patches, last point wins: per pixel, the reaching point of highest index and its mask bit."""
    batch, side = last.shape[:2]
    out = torch.empty((batch, side - 3, side - 3), dtype=torch.uint8, device=last.device)
    per_slice = max(1, _work(last.device) // (side * side))  # images at a time: the int64 hashes are the peak
    for i0 in range(0, batch, per_slice):
        i1 = min(batch, i0 + per_slice)
        out[i0:i1] = _stamp_patch_slice(last[i0:i1], patch_keys[i0:i1])
    return out


def _stamp_patch_slice(last: torch.Tensor, patch_keys: torch.Tensor) -> torch.Tensor:
    # Point indices are unique, so the highest of the 9 reaching point pixels is the last writer, and the cell it
    # reaches through is the bit of that point's mask that lands here.
    winner = _cell(last, 0).clone()
    cell = torch.zeros(winner.shape, dtype=torch.int64, device=last.device)
    for k in range(1, 9):
        candidate = _cell(last, k)
        cell.masked_fill_(candidate > winner, k)
        torch.maximum(winner, candidate, out=winner)
    masks = _mask_of(hash32(patch_keys[:, None, None], winner.clamp(min=0).to(torch.int64)))
    on = ((masks >> (8 - cell)) & 1).to(torch.uint8)
    return torch.where(winner >= 0, on * _GRAY, 0).to(torch.uint8)


def _dilate(hits: torch.Tensor, masks: torch.Tensor | None) -> torch.Tensor:
    """Union of 3x3 stamps: the hits shifted by every cell that is set in the image's mask (all 9 if None)."""
    out = torch.zeros_like(_cell(hits, 0))
    for k in range(9):
        shifted = _cell(hits, k)
        out |= shifted if masks is None else shifted * ((masks >> (8 - k)) & 1).to(torch.uint8)
    return out * _GRAY


def _scale_density(counts: torch.Tensor) -> torch.Tensor:
    """round(255 * count / peak) per image in float64 like the C++, except that a hit pixel never rounds to black."""
    peak = counts.flatten(1).amax(1).to(torch.float64)[:, None, None]
    # A true division: `255.0 / tensor` is computed as 255 * (1 / tensor), which rounds differently.
    scale = torch.full_like(peak, 255.0) / peak
    scaled = (counts.to(torch.float64) * scale + 0.5).clamp_(min=1.0)
    return torch.where(counts > 0, scaled, 0.0).to(torch.uint8)


def _orient(images: torch.Tensor, flips: np.ndarray) -> torch.Tensor:
    """The reference's top-bottom flip (undone by flips 1 and 3), then left-right for flips 2 and 3."""
    top_bottom = torch.as_tensor((flips & 1) == 0, device=images.device)[:, None, None]
    left_right = torch.as_tensor((flips & 2) != 0, device=images.device)[:, None, None]
    images = torch.where(top_bottom, images.flip(1), images)
    return torch.where(left_right, images.flip(2), images)


def _raster(
    xs: torch.Tensor, ys: torch.Tensor, patch_seeds: np.ndarray, *, size: int, pad: int, keep_aspect: bool, raster: str
) -> torch.Tensor:
    """Unflipped ``(B, size, size)`` uint8 images of the kept points."""
    canvas = _scatter_points(xs, ys, size, pad, keep_aspect, raster)
    device = canvas.device
    if raster == "point":
        return canvas[:, 3:, 3:] * _GRAY
    if raster == "density":
        return _scale_density(canvas[:, 3:, 3:])
    if raster == "full_patch":
        return _dilate(canvas, None)
    keys = stream_keys(patch_seeds, np.array([1, 2]))
    if raster == "union_patch":
        return _dilate(canvas, torch.as_tensor(_mask_of(keys[:, 1]), device=device)[:, None, None])
    return _stamp_patches(canvas, torch.as_tensor(keys[:, 0], device=device))


def _host(value: object) -> object:
    """Tensors (on any device) as numpy arrays for the argument checks; everything else unchanged."""
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value


def _in_range(value: int, name: str, lo: int, hi: int) -> int:
    value = int_arg(value, name)
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value}")
    return value


def _resolve_device(device: str | torch.device | None, out: torch.Tensor | None) -> torch.device:
    """The device to render on: `device`, else `out`'s, else the GPU when there is one."""
    if device is None:
        return (
            out.device
            if isinstance(out, torch.Tensor)
            else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        )
    if not isinstance(device, str | torch.device):
        raise TypeError(f"device must be a str, a torch.device or None, got {type(device).__name__}")
    try:
        return torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"device {device!r} is not a torch device: {err}") from None


def _check_out(out: object, batch: int, size: int, device: torch.device) -> None:
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"out must be a torch.Tensor (uint8, (B, size, size)) or None, got {type(out).__name__}")
    if out.dtype != torch.uint8:
        raise TypeError(f"out must have dtype torch.uint8, got {out.dtype}")
    if tuple(out.shape) != (batch, size, size):
        raise ValueError(f"out must have shape ({batch}, {size}, {size}), got {tuple(out.shape)}")
    if out.device.type != device.type or (device.index is not None and out.device.index != device.index):
        raise ValueError(f"out is on {out.device} but the render runs on {device}")


def _check_options(size: int, n_points: int, chains: int, burn_in: int, pad: int, raster: str) -> None:
    _in_range(size, "size", 1, render.MAX_SIDE)
    _in_range(n_points, "n_points", 1, render.MAX_POINTS)
    _in_range(chains, "chains", 1, MAX_CHAINS)
    _in_range(burn_in, "burn_in", 0, MAX_BURN_IN)
    _in_range(pad, "pad", 0, render.MAX_SIDE)
    if size <= 2 * pad:
        raise ValueError(f"size ({size}) must be larger than twice pad ({pad})")
    if not isinstance(raster, str) or raster not in render.RASTERS:
        raise ValueError(f"raster must be one of {', '.join(render.RASTERS)}, got {raster!r}")


def render_ifs_torch(
    params: torch.Tensor | np.ndarray,
    n_maps: torch.Tensor | Sequence[int] | np.ndarray | None,
    *,
    size: int,
    n_points: int,
    seeds: int | Sequence[int] | np.ndarray | torch.Tensor,
    patch_seeds: int | Sequence[int] | np.ndarray | torch.Tensor | None = None,
    flips: int | Sequence[int] | np.ndarray | torch.Tensor = 0,
    raster: Raster = "point",
    chains: int = 1024,
    burn_in: int = 20,
    pad: int = 6,
    keep_aspect: bool = False,
    start_at_fixed_point: bool = False,
    device: str | torch.device | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Render B iterated function systems on one device with the chaos game and return ``(B, size, size)`` uint8.

    See the module docstring for the chains, the hash, the rasters and the memory used. With ``chains`` a multiple
    of 8 up to 256 the bytes equal :func:`fdsl_app.render.render_ifs` in fast mode with the same arguments.

    Args:
        params: ``(B, K, 7)`` rows ``a b c d e f p``, K <= 8 (see :func:`fdsl_app.render.pack_systems`); read on
            the host (it is small), so a tensor on the GPU is copied back once.
        n_maps: maps used per system (2..K), ``(B,)``; None means K for every system.
        size: side of the square images in pixels (> 2 * pad).
        n_points: kept points per image (1..10,000,000); memory grows as ``B x n_points x 8`` bytes.
        seeds: per-sample (or one) 64-bit seed of the chains.
        patch_seeds: per-sample seed of the patch masks; defaults to ``seeds``.
        flips: per-sample (or one) variant: 0 none, 1 top-bottom, 2 left-right, 3 both.
        raster: ``"point"``, ``"patch"``, ``"union_patch"``, ``"full_patch"`` or ``"density"``.
        chains: parallel chains per image (1..2**20); each runs ``ceil(n_points / chains)`` kept steps.
        burn_in: steps each chain runs before it keeps points.
        pad: border in pixels on each side.
        keep_aspect: one scale for both axes (the larger span fills its room) instead of a per-axis stretch.
        start_at_fixed_point: start (and restart) the chains at map 0's fixed point instead of the origin.
        device: where to render; default: `out`'s device, else ``"cuda"`` when available, else ``"cpu"``.
        out: optional uint8 ``(B, size, size)`` tensor on `device` to write into (and return).

    Raises:
        TypeError: an argument of the wrong type (named in the message).
        ValueError: an argument out of its range (named in the message).
    """
    params = float_array(_host(params), "params")
    if params.ndim != 3:
        raise ValueError(f"params must have shape (batch, maps, 7), got shape {params.shape}")
    batch = params.shape[0]
    n_maps = np.full(batch, params.shape[1]) if n_maps is None else _host(n_maps)
    n_maps = per_sample(n_maps, "n_maps", batch, np.int32)
    _check_systems(params, n_maps)
    _check_options(size, n_points, chains, burn_in, pad, raster)
    seeds = per_sample(_host(seeds), "seeds", batch, np.uint64)
    patch_seeds = seeds if patch_seeds is None else per_sample(_host(patch_seeds), "patch_seeds", batch, np.uint64)
    flips = per_sample(_host(flips), "flips", batch, np.uint8)
    if flips.size and flips.max() > 3:
        raise ValueError(f"flips must be in 0..3 (0 none, 1 top-bottom, 2 left-right, 3 both), got {flips.max()}")
    device = _resolve_device(device, out)
    if out is not None:
        _check_out(out, batch, size, device)
    with torch.no_grad():
        images = _render(params, n_maps, seeds, patch_seeds, flips, device, size=size, n_points=n_points,
                         raster=raster, chains=chains, burn_in=burn_in, pad=pad, keep_aspect=bool(keep_aspect),
                         start_at_fixed_point=bool(start_at_fixed_point))  # fmt: skip
        return images if out is None else out.copy_(images)


def _render(
    params: np.ndarray,
    n_maps: np.ndarray,
    seeds: np.ndarray,
    patch_seeds: np.ndarray,
    flips: np.ndarray,
    device: torch.device,
    *,
    size: int,
    n_points: int,
    raster: str,
    chains: int,
    burn_in: int,
    pad: int,
    keep_aspect: bool,
    start_at_fixed_point: bool,
) -> torch.Tensor:
    """The checked render: tables to the device, chains, raster, orientation."""
    batch = params.shape[0]
    if batch == 0:
        return torch.zeros((0, size, size), dtype=torch.uint8, device=device)
    # float32 coefficients rounded from float64 once, as the C++ tables are.
    coef = torch.as_tensor(params[:, :, :6].reshape(-1, 6).T.astype(np.float32), device=device).contiguous()
    thresholds = torch.as_tensor(_thresholds(params, n_maps), device=device)
    start = _fixed_points(params) if start_at_fixed_point else np.zeros((batch, 2))
    start = torch.as_tensor(start.T.astype(np.float32)[:, :, None].copy(), device=device)
    keys = torch.as_tensor(stream_keys(seeds, np.arange(chains)), device=device)
    xs, ys = _run_chains(coef, thresholds, start, keys, n_points, burn_in)
    images = _raster(xs, ys, patch_seeds, size=size, pad=pad, keep_aspect=keep_aspect, raster=raster)
    return _orient(images, flips)
