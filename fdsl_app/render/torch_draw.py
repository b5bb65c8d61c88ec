"""Per-sample draws from an attractor cache in PyTorch: the twin of the C++ ``render.draw_cached`` for a whole batch
on the training device (one call per step, no loader worker, no host-to-device image copy).

The rules are the C++ ones (``csrc/core/cache.hpp``): lit pixels from the cache bits (patch: each covered pixel lit
when the 32-bit hash of (the sample's patch key, pixel index) is below floor(2^32 * 256 / 511); union_patch: the
point bits dilated by the image's mask), the crop in the flip-0 frame, the antialiased bilinear (triangle) resample
of torchvision/PIL with weights from :func:`resample_weights`, 127 x coverage rounded, then the flips. Integer steps
give the same bits as the C++; the float sums differ in order, so a value can differ by one gray level where
127 x coverage lies within rounding of a half.
"""

from __future__ import annotations

import numpy as np
import torch

from fdsl_app.render.torch_ifs import _mask_of, hash32, stream_keys

#: A covered pixel of a patch render is lit when its hash is below this: floor(2^32 * 256 / 511), the exact
#: marginal (256 of the 511 masks set a given cell) of the reference's last-writer-wins paste.
PATCH_THRESHOLD = (2**32 * 256) // 511
GRAY = 127
KINDS = ("point", "full_patch", "patch", "union_patch")


def resample_weights(lengths: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The antialiased bilinear (triangle) filter of PIL and torchvision's resize, for inputs of `lengths` pixels
    resized to `size`: ``(first, weights)`` with ``first`` ``(B, size)`` the first input tap of each output and
    ``weights`` ``(B, size, taps)`` float32, normalised per output (zero past each output's last tap).

    Per output i: ``scale = n / size``, ``support = max(scale, 1)``, ``center = (i + 0.5) * scale``, taps
    ``j`` in ``[max(0, floor(center - support + 0.5)), min(n, floor(center + support + 0.5)))`` with weight
    ``max(0, 1 - |(j + 0.5 - center) / support|)``, computed in float64, normalised, stored as float32.
    """
    n = np.asarray(lengths, np.float64)[:, None]
    scale = n / size
    support = np.maximum(scale, 1.0)
    center = (np.arange(size) + 0.5)[None, :] * scale
    first = np.maximum(0.0, np.floor(center - support + 0.5))
    last = np.minimum(n, np.floor(center + support + 0.5))
    taps = int(np.ceil(2 * support.max())) + 2
    j = first[..., None] + np.arange(taps)
    weights = np.maximum(0.0, 1.0 - np.abs((j + 0.5 - center[..., None]) / support[..., None]))
    weights = np.where(j < last[..., None], weights, 0.0)
    weights /= weights.sum(axis=-1, keepdims=True)
    return first.astype(np.int64), weights.astype(np.float32)


def _dense_weights(boxes: np.ndarray, side: int, size: int, device: torch.device) -> torch.Tensor:
    """``(B, size, side)`` float32: row i holds output i's weights over the full image axis, zero outside the box
    ``(start, length)`` of each sample."""
    start, length = boxes[:, 0].astype(np.int64), boxes[:, 1].astype(np.int64)
    first, weights = resample_weights(length, size)
    batch, taps = len(boxes), weights.shape[-1]
    columns = (start[:, None, None] + first[..., None] + np.arange(taps)).clip(max=side - 1)
    dense = torch.zeros((batch, size, side), dtype=torch.float32, device=device)
    # Taps past an output's last one have weight 0; clipping them to the image keeps the index valid, and a
    # scatter-add of zeros changes nothing.
    dense.scatter_add_(2, torch.as_tensor(columns, device=device), torch.as_tensor(weights, device=device))
    return dense


def unpack_bits(words: torch.Tensor, side: int) -> torch.Tensor:
    """``(B, S, W)`` int64 cache words (bit c % 64 of word c // 64 is column c) as ``(B, S, S)`` uint8 0/1."""
    shifts = torch.arange(64, device=words.device)
    bits = (words.unsqueeze(-1) >> shifts) & 1
    return bits.flatten(2)[..., :side].to(torch.uint8)


def _lit(bits: torch.Tensor, patch_seeds: np.ndarray, kind: str) -> torch.Tensor:
    if kind in ("point", "full_patch"):
        return bits
    device, side = bits.device, bits.shape[-1]
    keys = stream_keys(np.asarray(patch_seeds, np.uint64), np.array([2, 3]))
    if kind == "patch":
        pixel = torch.arange(side * side, dtype=torch.int64, device=device).view(1, side, side)
        coin = hash32(torch.as_tensor(keys[:, 1], device=device)[:, None, None], pixel) < PATCH_THRESHOLD
        return bits & coin.to(torch.uint8)
    # union_patch: a point at (R, C) of the flip-0 frame lights (R - 1 - dr, C + 1 + dc) for the mask's cells.
    masks = torch.as_tensor(_mask_of(keys[:, 0]), device=device)[:, None, None]
    padded = torch.zeros((len(bits), side + 3, side + 3), dtype=torch.uint8, device=device)
    padded[:, :side, 3:] = bits
    lit = torch.zeros_like(bits)
    for cell in range(9):
        dr, dc = divmod(cell, 3)
        on = ((masks >> (8 - cell)) & 1).to(torch.uint8)
        lit |= padded[:, 1 + dr : 1 + dr + side, 2 - dc : 2 - dc + side] * on
    return lit


def draw_cached_torch(
    cache: torch.Tensor,
    index: torch.Tensor | np.ndarray,
    patch_seeds: np.ndarray,
    *,
    raster: str,
    size: int,
    crops: np.ndarray | None = None,
    flips: np.ndarray | int = 0,
) -> torch.Tensor:
    """Draw a batch from an attractor cache on the cache's device: ``(B, size, size)`` uint8.

    Args:
        cache: ``(K, S, W)`` int64 words (the uint64 cache viewed as int64), on the device to draw on.
        index: ``(B,)`` system of each sample.
        patch_seeds: ``(B,)`` uint64 per-sample patch seeds (the patch key is stream 3, the union mask stream 2).
        raster: ``point`` or ``union_patch`` (a point cache), ``full_patch`` or ``patch`` (a dilated cache).
        size: output side T.
        crops: ``(B, 4)`` ints ``left, top, width, height`` in the flip-0 frame (None: the whole image).
        flips: per-sample (or one) flip of the output: bit 0 top-bottom, bit 1 left-right.
    """
    if raster not in KINDS:
        raise ValueError(f"raster must be one of {', '.join(KINDS)}, got {raster!r}")
    device, side = cache.device, cache.shape[1]
    index = torch.as_tensor(np.asarray(index, np.int64), device=device)
    batch = len(index)
    crops = np.tile([0, 0, side, side], (batch, 1)) if crops is None else np.asarray(crops, np.int64)
    lit = _lit(unpack_bits(cache[index], side), np.asarray(patch_seeds, np.uint64).reshape(batch), raster)
    rows = _dense_weights(crops[:, [1, 3]], side, size, device)  # (B, T, S)
    cols = _dense_weights(crops[:, [0, 2]], side, size, device)
    coverage = torch.bmm(torch.bmm(rows, lit.to(torch.float32)), cols.transpose(1, 2))
    out = torch.floor(coverage * GRAY + 0.5).clamp_(0, GRAY).to(torch.uint8)
    flips = torch.as_tensor(np.broadcast_to(np.asarray(flips, np.uint8), (batch,)).copy(), device=device)
    out = torch.where(((flips & 1) != 0)[:, None, None], out.flip(1), out)
    return torch.where(((flips & 2) != 0)[:, None, None], out.flip(2), out)


def cache_tensor(cache: np.ndarray, device: str | torch.device, chunk: int = 1024) -> torch.Tensor:
    """A uint64 attractor cache (a read-only map, typically) as the int64 tensor :func:`draw_cached_torch` reads,
    on `device`: one copy there, made `chunk` systems at a time so the host never holds a second whole one."""
    out = torch.empty(cache.shape, dtype=torch.int64, device=device)
    for lo in range(0, len(cache), chunk):
        out[lo : lo + chunk] = torch.from_numpy(np.array(cache[lo : lo + chunk]).view(np.int64))
    return out


__all__ = ["GRAY", "KINDS", "PATCH_THRESHOLD", "cache_tensor", "draw_cached_torch", "resample_weights", "unpack_bits"]
