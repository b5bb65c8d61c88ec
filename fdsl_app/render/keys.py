"""Per-sample random keys: a counter-based hash of (run seed, epoch, index), vectorised in numpy.

Every random choice of a sample derives from its key, never from worker, thread or process state, so the same
(seed, epoch, index) gives the same image with any number of workers, processes or nodes, and after a resume.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser (a bijection of uint64) of `x + golden`, elementwise."""
    with np.errstate(over="ignore"):
        z = np.asarray(x, dtype=np.uint64) + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def sample_keys(seed: int, epoch: int, indices: np.ndarray) -> np.ndarray:
    """One 64-bit key per sample index: splitmix64 chained over (seed, epoch, index)."""
    for name, value in (("seed", seed), ("epoch", epoch)):
        if not 0 <= int(value) < 2**64:
            raise ValueError(f"{name} must be in [0, 2**64), got {value}")
    indices = np.asarray(indices)
    if indices.size and indices.min() < 0:
        raise ValueError(f"sample indices must be >= 0, got {indices.min()}")
    base = splitmix64(splitmix64(np.uint64(seed)) ^ np.uint64(epoch))
    return splitmix64(base ^ splitmix64(indices.astype(np.uint64)))


def derive(keys: np.ndarray, stream: int | np.ndarray) -> np.ndarray:
    """Independent sub-keys of each key for the `stream`-th kind of random choice (patch masks, geometry, ...);
    keys and streams broadcast."""
    return splitmix64(np.asarray(keys, np.uint64) ^ splitmix64(np.asarray(stream, np.uint64) + np.uint64(1)))


def uniforms(keys: np.ndarray, streams: Iterable[int]) -> np.ndarray:
    """Uniform doubles in [0, 1), one per key and sub-key stream: ``(B, len(streams))``, 53 bits each."""
    streams = np.fromiter(streams, np.uint64)
    # derive() for every (key, stream) pair at once: one pass over a (B, streams) array, not one per stream.
    columns = derive(np.asarray(keys, np.uint64)[:, None], streams[None, :])
    return (columns >> np.uint64(11)).astype(np.float64) * 2.0**-53
