"""Attractor caches: each system's reference chain run once, kept as one bit per pixel, shared by every process of
a node through one memory-mapped file.

FractalDB, OFDB and 1p-frac re-seed the chain with 100 for every image, so a system's point set never changes;
what varies per sample (patch masks, flips, crops) is drawn from the cache (:func:`fdsl_app.render.draw_cached`).
A cache file holds ``(K, S, ceil(S / 64))`` uint64 words (``.npy``), named by a digest of everything that decides
its bits (the systems, side, points, pad, dilation, format), in ``cache_dir``: the first process that needs it
builds it (all cores, a progress bar) under a file lock while the others wait, then every process maps it
read-only, so DataLoader workers and the ranks of a node share one copy in the page cache. A later run finds it
there and skips the build.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from fdsl_app import render
from fdsl_app.files import atomic_path, locked

#: Bumped whenever the bits a cache holds for the same inputs change.
FORMAT = 1
#: Systems built per call (all cores each): small enough for a smooth progress bar.
_BUILD_CHUNK = 64


def default_cache_dir() -> Path:
    """``$FDSL_CACHE_DIR``, else ``fdsl_app-cache`` in the node's temporary folder (shared by its processes)."""
    return Path(os.environ.get("FDSL_CACHE_DIR") or Path(tempfile.gettempdir()) / "fdsl_app-cache")


def cache_bytes(systems: int, side: int) -> int:
    """Size of a cache of `systems` systems at `side` px."""
    return systems * side * (-(-side // 64)) * 8


@dataclass
class AttractorCache:
    """A cache file, mapped read-only on first use in each process (pickling sends the path, not the bits).

    Attributes:
        path: the ``.npy`` file.
        dilate: whether it holds full 3x3 patch supports (patch, full_patch) or point sets (point, union_patch).
    """

    path: Path
    dilate: bool
    _words: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def words(self) -> np.ndarray:
        if self._words is None:
            self._words = np.load(self.path, mmap_mode="r")
        return self._words

    @property
    def side(self) -> int:
        return int(self.words.shape[1])

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "dilate": self.dilate, "_words": None}


def build(systems: np.ndarray, n_maps: np.ndarray, *, side: int, n_points: int, dilate: bool, out: np.ndarray,
          progress: bool = False, desc: str = "attractor cache") -> np.ndarray:  # fmt: skip
    """Fill `out` ``(K, side, W)`` with the systems' supports, `_BUILD_CHUNK` systems per call on all cores."""
    with tqdm(total=len(systems), disable=not progress, unit="system", desc=desc, dynamic_ncols=True) as bar:
        for lo in range(0, len(systems), _BUILD_CHUNK):
            hi = min(lo + _BUILD_CHUNK, len(systems))
            render.build_attractor_cache(systems[lo:hi], n_maps=n_maps[lo:hi], size=side, n_points=n_points,
                                         dilate=dilate, out=out[lo:hi])  # fmt: skip
            bar.update(hi - lo)
    return out


def digest(systems: np.ndarray, n_maps: np.ndarray, *, side: int, n_points: int, dilate: bool) -> str:
    """What decides a cache's bits, hashed: the same inputs name the same file on any machine."""
    h = hashlib.sha256(f"fdsl-attractors/{FORMAT}/{side}/{n_points}/{int(dilate)}/".encode())
    h.update(np.ascontiguousarray(systems, np.float64).tobytes())
    h.update(np.ascontiguousarray(n_maps, np.int32).tobytes())
    return h.hexdigest()[:20]


def open_cache(
    systems: np.ndarray, n_maps: np.ndarray, *, side: int, n_points: int, dilate: bool, cache_dir: str | Path | None,
    progress: bool = False, name: str = "ifs",
) -> AttractorCache:  # fmt: skip
    """The cache of these systems: mapped from `cache_dir` when a process built it already, else built there first.

    Raises:
        ValueError: `cache_dir` cannot be created or written (the message names it and says how to choose another).
    """
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"cannot create the attractor cache folder {folder} ({err.strerror or err}); set "
                         "data.cache_dir (or FDSL_CACHE_DIR) to a writeable folder") from None  # fmt: skip
    key = digest(systems, n_maps, side=side, n_points=n_points, dilate=dilate)
    path = folder / f"{name}-{side}px-{key}.npy"
    with locked(path.with_name(path.name + ".lock")):
        if not path.is_file():
            shape = (len(systems), side, -(-side // 64))
            with atomic_path(path) as tmp:
                words = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint64, shape=shape)
                build(systems, n_maps, side=side, n_points=n_points, dilate=dilate, out=words, progress=progress,
                      desc=f"{name} attractor cache ({cache_bytes(len(systems), side) / 2**20:,.0f} MiB)")  # fmt: skip
                words.flush()
                del words
    return AttractorCache(path, dilate)
