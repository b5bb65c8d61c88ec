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

#: Boxes torchvision's RandomResizedCrop tries before its centre-crop fallback.
ATTEMPTS = 10
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


def resized_crop_boxes(
    u_area: np.ndarray,
    u_aspect: np.ndarray,
    u_position: np.ndarray,
    height: int,
    width: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> np.ndarray:
    """torchvision's ``RandomResizedCrop.get_params`` for a batch, from uniform draws in [0, 1): ``(B, 4)`` boxes
    ``left, top, width, height`` in pixels of a `height` x `width` image.

    Up to :data:`ATTEMPTS` boxes per sample (columns of `u_area` and `u_aspect`): area ``U(scale)`` of the image,
    aspect ``exp(U(log ratio))``, sides rounded to pixels; the first that fits wins, placed by `u_position`
    ``(B, 2)`` as ``randint(0, side - crop + 1)``; when none fits, the centre crop of the whole image with its aspect
    clamped to `ratio`. The one crop rule of fdsl_app: formula-space crops and the device augmentation draw their
    uniforms differently (per-sample keys, a batch generator) and share this.
    """
    area = height * width * (scale[0] + (scale[1] - scale[0]) * u_area)
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = np.exp(log_lo + (log_hi - log_lo) * u_aspect)
    w, h = np.round(np.sqrt(area * aspect)), np.round(np.sqrt(area / aspect))
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = np.argmax(fits, axis=1)  # the first attempt that fits (0 if none: replaced below)
    rows = np.arange(len(fits))
    w, h = w[rows, first], h[rows, first]
    none = ~fits.any(axis=1)
    in_ratio = width / height
    if in_ratio < min(ratio):
        fw, fh = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        fw, fh = round(height * max(ratio)), height
    else:
        fw, fh = width, height
    w, h = np.where(none, fw, w), np.where(none, fh, h)
    left = np.where(none, (width - w) // 2, np.floor(u_position[:, 0] * (width - w + 1)))
    top = np.where(none, (height - h) // 2, np.floor(u_position[:, 1] * (height - h + 1)))
    return np.stack([left, top, w, h], axis=1).astype(np.float64)


def sample_crops(
    keys: np.ndarray,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    full_size: int = 224,
) -> np.ndarray:
    """Random resized crops, ``(B, 4)`` = left, top, width, height in fractions of the full image, one per key.

    The rule is torchvision's on a ``full_size`` x ``full_size`` image, pixel rounding included
    (:func:`resized_crop_boxes`), so the crops have exactly the distribution the pixel-space transform gives on the
    full render.
    """
    keys = np.asarray(keys, np.uint64)
    u_area, u_aspect = _uniforms(keys, 0, ATTEMPTS), _uniforms(keys, 1, ATTEMPTS)
    boxes = resized_crop_boxes(u_area, u_aspect, _uniforms(keys, 2, 2), full_size, full_size, scale, ratio)
    return boxes / full_size


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
