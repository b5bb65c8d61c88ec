"""The C++ renderer's patch-mask draws, restated (csrc/core/rng.hpp, raster.cpp), so tests know which masks it drew."""

from __future__ import annotations

import numpy as np

from fdsl_app.render.keys import splitmix64

_STREAM = np.uint64(0xD6E8FEB86659FD93)


def stream_key(seed: int, stream: int) -> int:
    """The core's ``stream_key(seed, stream)``."""
    with np.errstate(over="ignore"):
        return int(splitmix64(splitmix64(np.uint64(seed)) ^ (np.uint64(stream) * _STREAM)))


def patch_masks(patch_seed: int, n: int) -> np.ndarray:
    """The FractalDB patch masks (1..511) of points 0..n-1 of an image with `patch_seed`."""
    key = np.uint32(stream_key(patch_seed, 1) & 0xFFFFFFFF)
    h = (np.arange(n, dtype=np.uint32) * np.uint32(0x9E3779B9)) ^ key
    h ^= h >> np.uint32(16)
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0xC2B2AE35)
    h ^= h >> np.uint32(16)
    return 1 + ((h.astype(np.uint64) * np.uint64(511)) >> np.uint64(32)).astype(np.int64)


def union_mask(patch_seed: int) -> int:
    """The one mask of a ``union_patch`` image."""
    return 1 + (stream_key(patch_seed, 2) & 0xFFFFFFFF) * 511 // 2**32
