"""Geometric augmentation in formula space: a random resized crop and flips applied to the points before they are
rasterised, drawing directly at the training resolution.

The crop is drawn with the rule of torchvision's ``RandomResizedCrop.get_params`` on the full image (the family's
render size, pixel rounding included), expressed in fractions of its side: up to 10 attempts of an area
``U(scale) x full area`` and an aspect ratio ``exp(U(log ratio))``, the first that fits is placed uniformly; else
the central crop. Pixel-space augmentation
crops the rendered image and resamples it; here the renderer maps only the crop's points to the output pixels
(``render_ifs(crops=...)``). The distribution of crops is the same (tested against torchvision's sampler), and the
drawing differs only in that points keep a size of one output pixel instead of being resampled from a 1-pixel
point of the full render. Flips are the renderer's flip variants (1 top-bottom, 2 left-right). Every random number
comes from the sample's key, so the augmentation is as reproducible as the rendering.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fdsl_app.render.keys import uniforms

_ATTEMPTS = 10
_STREAM = 100  # sub-key streams 100.. of derive(): apart from the renderer's


@dataclass(frozen=True)
class FormulaAugment:
    """Per-sample crops ``(B, 4)`` (left, top, width, height) and flips ``(B,)`` to pass to the renderer."""

    crops: np.ndarray
    flips: np.ndarray


def _uniforms(keys: np.ndarray, stream: int, count: int) -> np.ndarray:
    """(B, count) uniform doubles in [0, 1) from the keys: streams 64 apart per kind of draw."""
    first = _STREAM + stream * 64
    return uniforms(keys, range(first, first + count))


def sample_crops(
    keys: np.ndarray,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    full_size: int = 224,
) -> np.ndarray:
    """Random resized crops, ``(B, 4)`` = left, top, width, height in fractions of the full image, one per key.

    The rule is torchvision's on a ``full_size`` x ``full_size`` image, pixel rounding included, so the crops have
    exactly the distribution the pixel-space transform gives on the full render.
    """
    keys = np.asarray(keys, np.uint64)
    side = float(full_size)
    area = side * side * (scale[0] + (scale[1] - scale[0]) * _uniforms(keys, 0, _ATTEMPTS))
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = np.exp(log_lo + (log_hi - log_lo) * _uniforms(keys, 1, _ATTEMPTS))
    w, h = np.round(np.sqrt(area * aspect)), np.round(np.sqrt(area / aspect))
    fits = (w > 0) & (w <= side) & (h > 0) & (h <= side)
    first = np.argmax(fits, axis=1)  # the first attempt that fits (0 if none: replaced below)
    rows = np.arange(len(keys))
    w, h = w[rows, first], h[rows, first]
    none = ~fits.any(axis=1)
    # torchvision's fallback: the central crop, the whole image when its ratio (1) lies inside `ratio`.
    if ratio[0] > 1.0:
        fw, fh = side, np.round(side / ratio[0])
    elif ratio[1] < 1.0:
        fw, fh = np.round(side * ratio[1]), side
    else:
        fw = fh = side
    w, h = np.where(none, fw, w), np.where(none, fh, h)
    position = _uniforms(keys, 2, 2)  # randint(0, side - w + 1)
    left = np.where(none, (side - w) // 2, np.floor(position[:, 0] * (side - w + 1)))
    top = np.where(none, (side - h) // 2, np.floor(position[:, 1] * (side - h + 1)))
    return np.stack([left, top, w, h], axis=1) / side


def sample_flips(keys: np.ndarray, hflip: float, vflip: float) -> np.ndarray:
    """Flip variants (bit 0 top-bottom, bit 1 left-right) with the given probabilities, one per key."""
    u = _uniforms(np.asarray(keys, np.uint64), 3, 2)
    return ((u[:, 0] < vflip).astype(np.uint8) | ((u[:, 1] < hflip).astype(np.uint8) << 1)).astype(np.uint8)


def sample_formula_augment(
    keys: np.ndarray,
    scale: tuple[float, float],
    hflip: float,
    vflip: float,
    full_size: int,
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> FormulaAugment:
    """Crops (of a `full_size` render) and flips for a batch of sample keys."""
    return FormulaAugment(sample_crops(keys, scale, ratio, full_size), sample_flips(keys, hflip, vflip))
