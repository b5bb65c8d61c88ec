"""How IFS families draw their samples: the render settings they share and the one call that renders them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fdsl_app import render
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


def check_render_settings(family: str, s: IfsRenderSettings) -> None:
    """ValueError naming the first render setting out of its range."""
    checks = [
        (s.image_size > 12, "image_size", "an int > 12 (the render pads 6 px each side)"),
        (1 <= s.n_points <= render.MAX_POINTS, "n_points", f"in 1..{render.MAX_POINTS:_}"),
        (s.mode in MODES, "mode", f"one of {', '.join(MODES)}"),
        (s.raster in RASTERS, "raster", f"one of {', '.join(RASTERS)}"),
        (not (s.color and s.raster == "density"), "color", "False with raster density (gray only)"),
        (not (s.color and s.mode == "torch"), "color", "False with mode torch (gray only)"),
    ]
    for ok, setting, allowed in checks:
        if not ok:
            raise ValueError(f"{family} setting {setting}={getattr(s, setting)!r} is not allowed: it must be {allowed}")


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
    """Mode "torch": :func:`fdsl_app.render.torch_ifs.render_ifs_torch` into the numpy `out` (`threads` does not apply).

    On a GPU the images are copied back to the host here; a DataModule that trains on the GPU should rather keep
    the tensor on the device (a later step). DataLoader workers render on the CPU: CUDA cannot run in a forked
    worker.
    """
    import torch  # here, so that the C++ modes never pay for importing torch

    from fdsl_app.render.torch_ifs import render_ifs_torch

    on_gpu = torch.cuda.is_available() and torch.utils.data.get_worker_info() is None
    target = None if on_gpu else torch.from_numpy(out)  # on the CPU the render writes straight into `out`
    images = render_ifs_torch(
        systems, n_maps, size=out.shape[1], n_points=s.n_points, seeds=seeds, patch_seeds=patch_seeds, flips=flips,
        raster=s.raster, device="cuda" if on_gpu else "cpu", out=target,
    )  # fmt: skip
    if on_gpu:
        out[...] = images.cpu().numpy()
    return out
