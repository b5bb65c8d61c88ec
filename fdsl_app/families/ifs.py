"""What every IFS family shares: its render settings and :class:`IfsFamily`, which renders one system per sample.

A subclass says which system variant (e.g. FractalDB's weight row) and which of the reference's 4 flips each
(class, instance) draws (:meth:`IfsFamily.instance_layout`, :meth:`IfsFamily.variant_systems`); rendering,
formula-space augmentation, the attractor cache and the render-setting checks live here once.

Modes: ``cached`` (the default) runs each system's reference chain once into an attractor cache
(:mod:`fdsl_app.families.cache`) and draws each sample from it in C++: patch masks (each covered pixel lit with the
reference's probability 256/511), flips, and with formula-space augmentation the random resized crop and bilinear
resize; ``reference`` renders every sample with the published algorithm (per-point masks); ``fast`` runs
interleaved chains per sample; ``torch`` is fast mode's chaos game in PyTorch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fdsl_app import render
from fdsl_app.families.base import ClassParams, Family
from fdsl_app.families.cache import AttractorCache, open_cache
from fdsl_app.render.formula_space import FormulaAugment
from fdsl_app.render.keys import derive, splitmix64

MODES = ("cached", *render.MODES, "torch")
#: Rasters a cache draws (gray only): patch and full_patch from the dilated supports, point and union_patch from
#: the point sets.
CACHED_RASTERS = ("patch", "full_patch", "point", "union_patch")
PAD = 6  # the renderer's default border, in pixels of the full render
RASTERS = render.RASTERS


@dataclass
class IfsRenderSettings:
    """Render settings of an IFS family (they never change its class parameters)."""

    image_size: int = 362
    """Side in px of a rendered sample."""
    n_points: int = 200_000
    """Points per rendered sample."""
    mode: str = "cached"
    """Renderer mode: "cached" (reference chains run once per system, samples drawn from the cache; gray), "reference"
    (the published renderer for every sample), "fast" (interleaved chains) or "torch" (the fast-mode chaos game in
    PyTorch, on the GPU when there is one; gray only)."""
    raster: str = "patch"
    """Raster variant: point, patch (FractalDB), union_patch, full_patch or density."""
    color: bool = False
    """Colour points by FractalDB's colour wheel instead of gray."""
    fixed_masks: bool = False
    """Patch masks fixed per (class, instance), drawn from the parameter seed, as the published fixed datasets
    (1p-frac, OFDB: 1,000 images); False draws fresh masks every epoch from the sample key."""


@dataclass(frozen=True)
class DrawPlan:
    """Per-sample inputs of a draw from the attractor cache (:func:`fdsl_app.render.draw_cached`)."""

    index: np.ndarray  # int64 system in the cache
    patch_seeds: np.ndarray  # uint64
    crops: np.ndarray | None  # int32 (B, 4) left, top, width, height in the flip-0 frame; None: the whole image
    flips: np.ndarray  # uint8 flip of the output

    def pack(self, side: int) -> np.ndarray:
        """``(B, 7)`` int64 rows ``index, patch seed (bits), left, top, width, height, flip`` (a whole image without
        crops): what a loader hands a device draw."""
        crops = np.tile(np.array([0, 0, side, side]), (len(self.index), 1)) if self.crops is None else self.crops
        return np.column_stack([self.index, self.patch_seeds.view(np.int64), crops, self.flips]).astype(np.int64)

    @classmethod
    def unpack(cls, rows: np.ndarray) -> DrawPlan:
        rows = np.asarray(rows, np.int64)
        return cls(rows[:, 0], rows[:, 1].view(np.uint64), rows[:, 2:6].astype(np.int32), rows[:, 6].astype(np.uint8))


class IfsFamily(Family):
    """A family of iterated function systems: one system per sample, rendered with the family's render settings.

    Subclasses set ``name`` and ``Settings`` (an :class:`IfsRenderSettings`); a class with several system variants
    (FractalDB's 25 weight rows) overrides :attr:`variants_per_class`, :meth:`instance_layout` and
    :meth:`variant_systems`.
    """

    _cache: tuple[ClassParams, AttractorCache] | None = None

    def check_params(self, params: ClassParams) -> None:
        super().check_params(params)
        self.check_systems(params)

    def check_systems(self, params: ClassParams) -> None:
        """The file's systems: ``params`` (classes, K, 7) with 2 <= K <= 8 and ``n_maps`` (classes,) in [2, K]."""
        systems = self.check_array(params, "params", (params.num_classes, "K", 7))
        n_maps = self.check_array(params, "n_maps", (params.num_classes,))
        k = systems.shape[1]
        if not 2 <= k <= 8 or (n_maps.size and (n_maps.min() < 2 or n_maps.max() > k or (n_maps % 1).any())):
            raise ValueError(f"{self.name} parameter file: systems must have 2 to 8 maps and n_maps integers in "
                             f"[2, {k}], got K={k}, n_maps {n_maps.min()}..{n_maps.max()}")  # fmt: skip

    @property
    def variants_per_class(self) -> int:
        """Distinct systems per class (their attractors are what a cache holds)."""
        return 1

    def instance_layout(self, instances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """System variant and flip (0..3: bit 0 top-bottom, bit 1 left-right) of each instance index."""
        zeros = np.zeros(len(instances), np.int64)
        return zeros, zeros

    def variant_systems(
        self, params: ClassParams, classes: np.ndarray, variants: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(systems (B, K, 7), n_maps (B,))`` of (class, variant) pairs; a copy wherever the family changes it."""
        return params.arrays["params"][classes], params.arrays["n_maps"][classes]

    def systems(
        self, params: ClassParams, classes: np.ndarray, instances: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The system and flip of each sample."""
        variants, flips = self.instance_layout(instances)
        return (*self.variant_systems(params, classes, variants), flips)

    def validate(self) -> None:
        s = self.settings
        self.require(12 < s.image_size <= render.MAX_SIDE, "image_size",
                     f"an int in 13..{render.MAX_SIDE} (the render pads 6 px each side)")
        self.require(1 <= s.n_points <= render.MAX_POINTS, "n_points", f"in 1..{render.MAX_POINTS:_}")
        self.require(s.mode in MODES, "mode", f"one of {', '.join(MODES)}")
        self.require(s.raster in RASTERS, "raster", f"one of {', '.join(RASTERS)}")
        self.require(not (s.color and s.raster == "density"), "color", "False with raster density (gray only)")
        self.require(not (s.color and s.mode in ("torch", "cached")), "color",
                     f"False with mode {s.mode} (gray only); colour renders need mode=reference or fast")
        self.require(s.mode != "cached" or s.raster in CACHED_RASTERS, "raster",
                     f"one of {', '.join(CACHED_RASTERS)} with mode cached (density needs mode=reference or fast)")

    @property
    def formula_augment(self) -> bool:
        return self.settings.mode in ("fast", "cached")

    # --- the attractor cache ---------------------------------------------------------------------------------------

    def prepare(self, params: ClassParams, *, cache_dir: str | Path | None = None, progress: bool = False) -> None:
        """Open (or build) the attractor cache of every system of `params` in mode cached; nothing otherwise."""
        if self.settings.mode != "cached":
            return
        systems, n_maps = self.all_systems(params)
        s = self.settings
        cache = open_cache(systems, n_maps, side=s.image_size, n_points=s.n_points, dilate=self._dilate,
                           cache_dir=cache_dir, progress=progress, name=self.name)  # fmt: skip
        self._cache = (params, cache)

    def all_systems(self, params: ClassParams) -> tuple[np.ndarray, np.ndarray]:
        """Every system of `params`, class-major: system ``class * variants_per_class + variant``."""
        count = self.variants_per_class
        classes = np.repeat(np.arange(params.num_classes, dtype=np.int64), count)
        return self.variant_systems(params, classes, np.tile(np.arange(count, dtype=np.int64), params.num_classes))

    def cache_words(self) -> np.ndarray:
        """The prepared cache's words (read-only map); ValueError before :meth:`prepare`."""
        if self._cache is None:
            raise ValueError(f"{self.name}: no attractor cache prepared; call prepare(params) first")
        return self._cache[1].words

    def describe_cache(self) -> str:
        """One line on the prepared cache: systems, side, size and file."""
        if self._cache is None:
            return "none prepared"
        words = self._cache[1].words
        kind = "3x3 patch supports" if self._dilate else "point sets"
        return (f"{len(words):,} systems' {kind} at {words.shape[1]} px, {words.nbytes / 2**20:,.1f} MiB, "
                f"mapped from {self._cache[1].path} (shared by this node's processes)")

    @property
    def _dilate(self) -> bool:
        return self.settings.raster in ("patch", "full_patch")

    # --- rendering -------------------------------------------------------------------------------------------------

    def render(
        self,
        params: ClassParams,
        classes: np.ndarray,
        instances: np.ndarray,
        keys: np.ndarray,
        out: np.ndarray,
        *,
        threads: int | None = None,
        augment: FormulaAugment | None = None,
    ) -> np.ndarray:
        classes, instances, keys = self.check_batch(params, classes, instances, keys, out)
        if self.settings.mode == "cached":
            return self._draw(params, classes, instances, keys, out, threads, augment)
        systems, n_maps, flips = self.systems(params, classes, instances)
        patch_seeds = self.patch_seeds(params, classes, instances, keys)
        return render_systems(self.settings, systems, n_maps, keys, patch_seeds, out, flips=flips, threads=threads,
                              augment=augment)  # fmt: skip

    def patch_seeds(
        self, params: ClassParams, classes: np.ndarray, instances: np.ndarray, keys: np.ndarray
    ) -> np.ndarray:
        """Per-sample seeds of the patch masks: from the sample key (fresh every epoch), or with ``fixed_masks``
        from (parameter seed, class, instance), the same in every epoch."""
        if not self.settings.fixed_masks:
            return derive(keys, 1)
        ids = classes.astype(np.uint64) * np.uint64(self.instances_per_class) + instances.astype(np.uint64)
        return derive(splitmix64(splitmix64(np.uint64(params.seed)) ^ splitmix64(ids)), 1)

    def draw_plan(
        self, params: ClassParams, classes: np.ndarray, instances: np.ndarray, keys: np.ndarray,
        augment: FormulaAugment | None = None,
    ) -> DrawPlan:  # fmt: skip
        """What mode cached draws for each sample: its system in the cache, patch seed, crop and flip."""
        variants, flips = self.instance_layout(instances)
        crops = None
        if augment is not None:
            crops = flip0_crops(augment.crops, flips, int(self.settings.image_size))
            flips = np.bitwise_xor(flips, augment.flips)
        index = classes * self.variants_per_class + variants
        return DrawPlan(index, self.patch_seeds(params, classes, instances, keys), crops, flips.astype(np.uint8))

    def _draw(
        self, params: ClassParams, classes: np.ndarray, instances: np.ndarray, keys: np.ndarray, out: np.ndarray,
        threads: int | None, augment: FormulaAugment | None,
    ) -> np.ndarray:  # fmt: skip
        """Mode cached: each sample drawn from its system's attractor (see the module)."""
        plan = self.draw_plan(params, classes, instances, keys, augment)
        words, index = self._cache_words(params, plan.index)
        return render.draw_cached(words, out, index=index, patch_seeds=plan.patch_seeds, raster=self.settings.raster,
                                  crops=plan.crops, flips=plan.flips, threads=threads)  # fmt: skip

    def _cache_words(self, params: ClassParams, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The cache words and each sample's row in them: the prepared cache of `params`, else (a preview, an
        export chunk) the attractors of just these systems, built now."""
        if self._cache is not None and self._cache[0] is params:
            return self._cache[1].words, index
        needed, rows = np.unique(index, return_inverse=True)
        count = self.variants_per_class
        systems, n_maps = self.variant_systems(params, needed // count, needed % count)
        s = self.settings
        words = np.empty((len(needed), s.image_size, -(-s.image_size // 64)), np.uint64)
        render.build_attractor_cache(systems, n_maps=n_maps, size=s.image_size, n_points=s.n_points,
                                     dilate=self._dilate, out=words)  # fmt: skip
        return words, rows


def cached_mode(family: Family) -> bool:
    """Whether `family` draws its samples from an attractor cache."""
    return isinstance(family, IfsFamily) and family.settings.mode == "cached"


def flip0_crops(crops: np.ndarray, flips: np.ndarray, side: int) -> np.ndarray:
    """Crop boxes drawn on the instance's image (fractions ``left, top, width, height``, :mod:`fdsl_app.render.
    formula_space`) as int32 pixels of the flip-0 image the cache holds: mirrored by the instance's flips."""
    px = np.rint(np.asarray(crops, np.float64) * side).astype(np.int32)
    left, top, width, height = px.T
    flips = np.broadcast_to(np.asarray(flips, np.uint8), len(px))
    left = np.where(flips & 2, side - left - width, left)
    top = np.where(flips & 1, side - top - height, top)
    return np.ascontiguousarray(np.stack([left, top, width, height], axis=1), np.int32)


def render_systems(
    s: IfsRenderSettings,
    systems: np.ndarray,
    n_maps: np.ndarray,
    keys: np.ndarray,
    patch_seeds: np.ndarray,
    out: np.ndarray,
    *,
    flips: Any = 0,
    threads: int | None = None,
    augment: FormulaAugment | None = None,
) -> np.ndarray:
    """Render one system per sample with the family's render settings, the samples' keys (chains) and patch seeds.

    With `augment` (fast mode), each sample is the crop of its full ``image_size`` render drawn at ``out``'s size,
    and its flips compose with the instance's.
    """
    # FractalDB and 1p-frac re-seed every chain with 100 (reference mode); fast mode draws a chain per sample.
    seeds = render.REFERENCE_SEED if s.mode == "reference" else derive(keys, 0)
    crops = crop_pad = None
    if augment is not None:
        if s.mode != "fast":
            raise ValueError("formula-space augmentation needs mode='fast' (the reference renderer is exact)")
        flips = np.bitwise_xor(np.asarray(flips, np.uint8), augment.flips)
        crops, crop_pad = augment.crops, PAD / s.image_size
    if s.mode == "torch":
        return _render_torch(s, systems, n_maps, seeds, patch_seeds, out, flips)
    return render.render_ifs(
        systems, out, seeds=seeds, patch_seeds=patch_seeds, n_maps=n_maps, n_points=s.n_points, mode=s.mode,
        raster=s.raster, color=s.color, flips=flips, threads=threads, crops=crops, crop_pad_fraction=crop_pad,
    )  # fmt: skip


def _render_torch(
    s: IfsRenderSettings, systems: np.ndarray, n_maps: np.ndarray, seeds: np.ndarray, patch_seeds: np.ndarray,
    out: np.ndarray, flips: Any,
) -> np.ndarray:  # fmt: skip
    """Mode "torch": :func:`fdsl_app.render.torch_ifs.render_ifs_torch` into the numpy `out` (`threads` does not
    apply).

    On a GPU the images are rendered there and copied back to the host; on the CPU the render writes its result
    into `out`. DataLoader workers render on the CPU: CUDA cannot run in a forked worker.
    """
    import torch  # here, so that the C++ modes never pay for importing torch

    from fdsl_app.render.torch_ifs import render_ifs_torch

    on_gpu = torch.cuda.is_available() and torch.utils.data.get_worker_info() is None
    target = None if on_gpu else torch.from_numpy(out)
    images = render_ifs_torch(
        systems, n_maps, size=out.shape[1], n_points=s.n_points, seeds=seeds, patch_seeds=patch_seeds, flips=flips,
        raster=s.raster, device="cuda" if on_gpu else "cpu", out=target,
    )  # fmt: skip
    if on_gpu:
        out[...] = images.cpu().numpy()
    return out
