"""What every IFS family shares: its render settings and :class:`IfsFamily`, which renders one system per sample.

A subclass says which system (and which of the reference's 4 flips) each (class, instance) draws, in
:meth:`IfsFamily.systems`; rendering, formula-space augmentation and the render-setting checks live here once.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np

from fdsl_app import render
from fdsl_app.families.base import ClassParams, Family
from fdsl_app.render.formula_space import FormulaAugment
from fdsl_app.render.keys import derive

MODES = (*render.MODES, "torch")
PAD = 6  # the renderer's default border, in pixels of the full render
RASTERS = render.RASTERS


@dataclass
class IfsRenderSettings:
    """Render settings of an IFS family (they never change its class parameters)."""

    image_size: int = 362
    """Side in px of a rendered sample."""
    n_points: int = 200_000
    """Points per rendered sample."""
    mode: str = "reference"
    """Renderer mode: "reference" (the published renderer exactly), "fast" (interleaved chains) or "torch" (the
    fast-mode chaos game in PyTorch, on the GPU when there is one; gray only)."""
    raster: str = "patch"
    """Raster variant: point, patch (FractalDB), union_patch, full_patch or density."""
    color: bool = False
    """Colour points by FractalDB's colour wheel instead of gray."""


class IfsFamily(Family):
    """A family of iterated function systems: one system per sample, rendered with the family's render settings.

    Subclasses set ``name`` and ``Settings`` (an :class:`IfsRenderSettings`) and implement :meth:`systems`.
    """

    @abstractmethod
    def systems(
        self, params: ClassParams, classes: np.ndarray, instances: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | int]:
        """The system of each sample: ``(params (B, K, 7), n_maps (B,), flips (B,) or a scalar)``; `params` must be a
        copy where the family changes it (the class parameters are shared)."""

    def validate(self) -> None:
        s = self.settings
        self.require(12 < s.image_size <= render.MAX_SIDE, "image_size",
                     f"an int in 13..{render.MAX_SIDE} (the render pads 6 px each side)")
        self.require(1 <= s.n_points <= render.MAX_POINTS, "n_points", f"in 1..{render.MAX_POINTS:_}")
        self.require(s.mode in MODES, "mode", f"one of {', '.join(MODES)}")
        self.require(s.raster in RASTERS, "raster", f"one of {', '.join(RASTERS)}")
        self.require(not (s.color and s.raster == "density"), "color", "False with raster density (gray only)")
        self.require(not (s.color and s.mode == "torch"), "color", "False with mode torch (gray only)")

    @property
    def formula_augment(self) -> bool:
        return self.settings.mode == "fast"

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
        systems, n_maps, flips = self.systems(params, classes, instances)
        return render_systems(self.settings, systems, n_maps, keys, out, flips=flips, threads=threads, augment=augment)


def render_systems(
    s: IfsRenderSettings,
    systems: np.ndarray,
    n_maps: np.ndarray,
    keys: np.ndarray,
    out: np.ndarray,
    *,
    flips: Any = 0,
    threads: int | None = None,
    augment: FormulaAugment | None = None,
) -> np.ndarray:
    """Render one system per sample with the family's render settings and the samples' keys.

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
        return _render_torch(s, systems, n_maps, seeds, derive(keys, 1), out, flips)
    return render.render_ifs(
        systems, out, seeds=seeds, patch_seeds=derive(keys, 1), n_maps=n_maps, n_points=s.n_points, mode=s.mode,
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
