"""timm's RandAugment as batched tensor operations: per-sample random parameters, no Python loop over the samples.

The semantics are those of ``timm.data.auto_augment.rand_augment_transform`` (``rand-m9-mstd0.5-inc1`` for DeiT):
each sample runs ``n`` layers; each layer picks one op uniformly from the 15 ops of timm's transform set (with
replacement across layers), applies it with probability ``p``, at magnitude ``m + N(0, mstd)`` (uniform in ``[0, m]``
when ``mstd`` is infinite) clipped to ``[0, mmax]`` (``mmax`` 10 by default), with the argument of timm's
level-to-argument function of that op and its random sign (50 %) where timm negates. Drawing and applying are
separate steps: :func:`sample_rand_augment_params` draws a batch's parameters on the CPU from a ``torch.Generator``
(deterministic for its seed); :func:`apply_rand_augment` applies them on the images' device. Per layer, the samples
that drew a geometric op go through one ``grid_sample`` call, those that drew a per-channel op (every colour op but
Color and Sharpness) through one ``gather`` of per-sample lookup tables, Color and Sharpness through one call each.

Pixel arithmetic follows PIL on uint8 images: values are rounded to integers in ``0..255`` on entry and after every
op (held in float32). The enhance ops blend like ``PIL.Image.blend`` (float32 factor, truncating), grayscale is
PIL's ``L`` conversion (ITU-R 601-2 in 16-bit fixed point), Sharpness smooths with PIL's ``SMOOTH`` kernel
``[[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13`` (rounded, border pixels unfiltered), AutoContrast and Equalize build
PIL's per-channel lookup tables from per-sample 256-bin histograms. The colour ops reproduce timm's PIL ops exactly.
The geometric ops (Rotate, ShearX/Y, TranslateX/YRel) use PIL's affine maps (pixel centres at ``+0.5``, rotation
about ``(w / 2, h / 2)``), its bilinear interpolation with clamped neighbours, its truncation and its fill outside the
image: they match PIL's bilinear output but for one gray level at a fraction of a percent of the pixels (float32
here, double there, at exact-integer ties).

Differences from timm, all deliberate:
    - Geometric ops resample bilinearly; timm uses PIL bicubic when its ``interpolation`` hparam is set (as
      ``create_transform`` does for the real-data path) and a random choice of bilinear or bicubic otherwise.
    - The fill of geometric ops is the caller's ``fill`` (``DeviceAugment`` passes ``round(255 * mean)``, which is
      timm's ``img_mean`` under ``create_transform``; timm's bare default is gray 128).
    - timm draws a layer's magnitude and sign only when the layer applies; here they are drawn for every layer (the
      distribution of the applied ones is the same).
    - Posterize keeps ``0..8`` bits, 0 making the image black: timm's intent, and what older Pillow did. Pillow 13
      raises for 0 bits, which ``PosterizeIncreasing`` reaches at magnitude 10 (see ``augment.real_transforms``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

LEVEL_DENOM = 10.0  # timm's _LEVEL_DENOM: magnitude m maps to the fraction m / 10 of each op's range
_TRANSLATE_PCT = 0.45  # timm's default translate_pct of TranslateX/YRel

# timm's _RAND_INCREASING_TRANSFORMS and _RAND_TRANSFORMS, in timm's order: entry k is the same kind of op in both,
# only the level-to-argument mapping differs.
RAND_INCREASING_OPS = (
    "AutoContrast",
    "Equalize",
    "Invert",
    "Rotate",
    "PosterizeIncreasing",
    "SolarizeIncreasing",
    "SolarizeAdd",
    "ColorIncreasing",
    "ContrastIncreasing",
    "BrightnessIncreasing",
    "SharpnessIncreasing",
    "ShearX",
    "ShearY",
    "TranslateXRel",
    "TranslateYRel",
)
RAND_OPS = tuple(name.removesuffix("Increasing") for name in RAND_INCREASING_OPS)
GEOMETRIC_OPS = frozenset({"Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel"})


@dataclass(frozen=True)
class RandAugmentSpec:
    """A parsed timm RandAugment string (``rand-m9-mstd0.5-inc1``)."""

    magnitude: float = LEVEL_DENOM  # m: 0..10 (timm's default 10 when the string has no m)
    num_ops: int = 2  # n: layers per image
    prob: float = 0.5  # p: chance of each layer
    magnitude_std: float = 0.0  # mstd: Gaussian noise on the magnitude per layer (inf: uniform in [0, m])
    magnitude_max: float = LEVEL_DENOM  # mmax: upper clip of the noisy magnitude
    increasing: bool = False  # inc: timm's "increasing" op set (severity grows with m for every op)


def parse_rand_augment(spec: str) -> RandAugmentSpec:
    """Parse timm's RandAugment string: ``rand`` then dash-separated ``m``, ``n``, ``p``, ``mstd``, ``mmax``, ``inc``.

    Raises:
        ValueError: the string does not start with ``rand``, or has a key this implementation does not support
            (``t`` transform sets among them).
    """
    parts = spec.strip().split("-")
    if parts[0] != "rand":
        raise ValueError(f"RandAugment spec must start with 'rand' (e.g. 'rand-m9-mstd0.5-inc1'), got {spec!r}")
    fields: dict[str, float] = {}
    for part in parts[1:]:
        match = re.fullmatch(r"(mstd|mmax|inc|m|n|p)(\d+(?:\.\d*)?)", part)
        if match is None:
            raise ValueError(
                f"RandAugment spec {spec!r}: unsupported part {part!r} (supported: m, n, p, mstd, mmax, inc)"
            )
        fields[match.group(1)] = float(match.group(2))
    mstd = fields.get("mstd", 0.0)
    return RandAugmentSpec(
        magnitude=fields.get("m", LEVEL_DENOM),
        num_ops=int(fields.get("n", 2)),
        prob=min(1.0, fields.get("p", 0.5)),
        magnitude_std=math.inf if mstd > 100 else mstd,  # timm's convention for uniform sampling
        magnitude_max=fields.get("mmax", LEVEL_DENOM) or LEVEL_DENOM,  # timm: mmax0 falls back to 10
        increasing=bool(fields.get("inc", 0)),
    )


def rand_augment_ops(increasing: bool) -> tuple[str, ...]:
    """timm's op names of the transform set: entry k is op index k of :class:`RandAugmentParams`."""
    return RAND_INCREASING_OPS if increasing else RAND_OPS


@dataclass
class RandAugmentParams:
    """The RandAugment draws of one batch, on the CPU, each ``(B, n)`` for ``n`` layers.

    Attributes:
        op: int64 op index into :func:`rand_augment_ops`.
        applied: bool, whether the layer applies (probability ``p``).
        magnitude: float64 noisy magnitude, clipped to ``[0, mmax]``.
        negate: bool, the sign of ops that timm negates at random (ignored by the others).
    """

    op: Tensor
    applied: Tensor
    magnitude: Tensor
    negate: Tensor


def sample_rand_augment_params(batch: int, generator: torch.Generator, spec: RandAugmentSpec) -> RandAugmentParams:
    """Draw the per-sample, per-layer RandAugment parameters of a batch from `generator` (a CPU generator)."""
    shape = (batch, spec.num_ops)
    num_ops = len(RAND_INCREASING_OPS)
    op = torch.randint(0, num_ops, shape, generator=generator)  # timm: np.random.choice, uniform, with replacement
    applied = torch.rand(shape, generator=generator, dtype=torch.float64) < spec.prob
    magnitude = torch.full(shape, float(spec.magnitude), dtype=torch.float64)
    if math.isinf(spec.magnitude_std):
        magnitude = magnitude * torch.rand(shape, generator=generator, dtype=torch.float64)
    elif spec.magnitude_std > 0:
        magnitude = magnitude + spec.magnitude_std * torch.randn(shape, generator=generator, dtype=torch.float64)
    magnitude = magnitude.clamp(0.0, spec.magnitude_max)  # timm clips even without noise
    negate = torch.rand(shape, generator=generator, dtype=torch.float64) < 0.5
    return RandAugmentParams(op=op, applied=applied, magnitude=magnitude, negate=negate)


def rand_augment_level_args(params: RandAugmentParams, increasing: bool) -> Tensor:
    """timm's level-to-argument functions of every drawn op: float64 ``(B, n)`` (0 for ops without an argument).

    Degrees for Rotate, shear factor, translation as a fraction of the side, bits kept for Posterize, threshold for
    Solarize, addend for SolarizeAdd, blend factor for the enhance ops; same float64 arithmetic as timm's.
    """
    names = rand_augment_ops(increasing)
    args = torch.zeros_like(params.magnitude)
    sign = torch.where(params.negate, -1.0, 1.0).to(torch.float64)
    for index, name in enumerate(names):
        chosen = params.op == index
        if bool(chosen.any()):
            args = torch.where(chosen, _level_to_arg(name, params.magnitude, sign), args)
    return args


def _level_to_arg(name: str, level: Tensor, sign: Tensor) -> Tensor:
    frac = level / LEVEL_DENOM
    match name:
        case "Rotate":
            return sign * (frac * 30.0)
        case "ShearX" | "ShearY":
            return sign * (frac * 0.3)
        case "TranslateXRel" | "TranslateYRel":
            return sign * (frac * _TRANSLATE_PCT)
        case "Posterize":
            return torch.floor(frac * 4).clamp(0, 8)
        case "PosterizeIncreasing":
            return (4 - torch.floor(frac * 4)).clamp(0, 8)
        case "Solarize":
            return torch.floor(frac * 256).clamp(max=256)
        case "SolarizeIncreasing":
            return 256 - torch.floor(frac * 256).clamp(max=256)
        case "SolarizeAdd":
            return torch.floor(frac * 110).clamp(max=128)
        case "Color" | "Contrast" | "Brightness" | "Sharpness":
            return frac * 1.8 + 0.1
        case "ColorIncreasing" | "ContrastIncreasing" | "BrightnessIncreasing" | "SharpnessIncreasing":
            return (1.0 + sign * (frac * 0.9)).clamp(min=0.1)
    return torch.zeros_like(level)


@torch.no_grad()
def apply_rand_augment(
    images: Tensor,
    params: RandAugmentParams,
    increasing: bool,
    fill: tuple[float, float, float] | list[float],
    *,
    inplace: bool = False,
) -> Tensor:
    """Apply drawn RandAugment parameters to a batch of RGB images in the 0..255 range.

    Per layer, the samples are split by what their op needs: geometric ops (one ``grid_sample``), per-channel lookup
    tables (every op whose output pixel depends on that pixel's value only, sample statistics aside: one ``gather``),
    Color and Sharpness. No step loops over the samples.

    A gray batch (``C = 1``) gives exactly the first channel of the same gray batch replicated to RGB, at a third of
    the cost, as long as the fill is gray too: every op treats equal channels alike (PIL's luma of a gray pixel is
    that pixel, so Color is the identity, and Contrast's mean is the gray mean).

    Args:
        images: float ``(B, C, H, W)``, ``C`` 3 (RGB) or 1 (gray), in ``0..255`` on any device (rounded to integers
            first, as PIL's uint8).
        params: the batch's draws (:func:`sample_rand_augment_params`), on the CPU.
        increasing: timm's ``inc`` flag (which level-to-argument mapping applies).
        fill: fill of the geometric ops per channel, 0..255: ``C`` values (or 3 equal ones for a gray batch).
        inplace: work in `images` itself (float32 and contiguous, else a copy is made): saves a batch-sized
            allocation, which costs as much as several ops on the CPU.

    Returns:
        `images`' shape, dtype and device, integer values in ``0..255``: `images` itself when `inplace` applied.
    """
    device = images.device
    dtype = images.dtype
    channels = images.shape[1]
    fill = [float(v) for v in fill]
    if channels == 1 and len(set(fill)) == 1:
        fill = fill[:1]
    if channels not in (1, 3) or len(fill) != channels:
        raise ValueError(f"RandAugment takes RGB images, or gray ones with a gray fill; got {channels} channels and "
                         f"the fill {fill}")  # fmt: skip
    if inplace and dtype == torch.float32 and images.is_contiguous():
        out = images
    else:  # float32 throughout: the exact integer arithmetic of the ops needs it
        out = images.to(torch.float32, memory_format=torch.contiguous_format, copy=True)
    out.clamp_(0, 255).round_()  # PIL's ops see uint8 values
    args = rand_augment_level_args(params, increasing)  # float64: geometry in PIL's precision
    fill_t = torch.tensor(fill, dtype=torch.float32, device=device).view(1, channels, 1, 1)
    for layer in range(params.op.shape[1]):
        op, applied, arg = params.op[:, layer], params.applied[:, layer], args[:, layer]
        for members, transform in _GROUPS:
            # Index sets are built on the CPU, so choosing the samples never waits on the device.
            rows = torch.nonzero(applied & members[op]).squeeze(1)
            if rows.numel():
                index = rows.to(device)
                # Advanced indexing, not index_select: several times faster on CPU for whole samples.
                out.index_copy_(0, index, transform(out[index], op[rows], arg[rows], fill_t))
    return out.to(dtype)


def _affine(images: Tensor, kinds: Tensor, args: Tensor, fill: Tensor) -> Tensor:
    """PIL's affine ops (``Image.transform(AFFINE)``, ``Image.rotate``) with per-sample matrices: one grid_sample.

    Args:
        images: float ``(B, C, H, W)``.
        kinds: int64 ``(B,)`` op index (CPU), each a geometric op.
        args: float64 ``(B,)`` the ops' arguments (CPU).
        fill: ``(1, C, 1, 1)`` fill outside the source image.
    """
    height, width = images.shape[-2:]
    theta = _normalised_theta(_pixel_affine(kinds, args, height, width), height, width)
    theta = theta.to(images.device, torch.float32).view(-1, 2, 3, 1, 1)
    # affine_grid's output coordinates (align_corners=False: pixel centres), then each sample's map, built by
    # broadcasting: on the CPU a batched matmul over every pixel costs as much as the sampling itself.
    xs = (torch.arange(width, device=images.device, dtype=torch.float32) * 2 + 1) / width - 1
    ys = ((torch.arange(height, device=images.device, dtype=torch.float32) * 2 + 1) / height - 1).view(-1, 1)
    gx = theta[:, 0, 0] * xs + theta[:, 0, 1] * ys + theta[:, 0, 2]
    gy = theta[:, 1, 0] * xs + theta[:, 1, 1] * ys + theta[:, 1, 2]
    # PIL fills where the source point leaves [0, W) x [0, H) and clamps the neighbours of points inside: border
    # padding plus a fill mask reproduces both (zero padding would darken a half-pixel rim).
    inside = ((gx >= -1) & (gx < 1) & (gy >= -1) & (gy < 1)).unsqueeze(1)
    grid = torch.stack([gx, gy], -1)
    sampled = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    # PIL truncates its double-precision interpolation to uint8; the nudge absorbs float32 error at exact integers.
    return torch.where(inside, sampled + 1e-3, fill).floor_().clamp_(0, 255)


def _pixel_affine(kinds: Tensor, args: Tensor, height: int, width: int) -> Tensor:
    """``(B, 2, 3)`` maps from output to input pixel coordinates (PIL's AFFINE data ``a, b, c, d, e, f``).

    Rotation is PIL's ``rotate``: counter-clockwise by the argument in degrees about the centre ``(w / 2, h / 2)``.
    """

    def where(name: str, value: Tensor, other: Tensor | float) -> Tensor:
        return torch.where(kinds == RAND_OPS.index(name), value, other)

    angle = torch.deg2rad(args)
    cos, sin = torch.cos(angle), torch.sin(angle)
    cx, cy = width / 2, height / 2
    zero = torch.zeros_like(args)
    rows = (
        (
            where("Rotate", cos, 1.0),
            where("Rotate", -sin, where("ShearX", args, zero)),
            where("Rotate", cx - cos * cx + sin * cy, where("TranslateXRel", args * width, zero)),
        ),
        (
            where("Rotate", sin, where("ShearY", args, zero)),
            where("Rotate", cos, 1.0),
            where("Rotate", cy - sin * cx - cos * cy, where("TranslateYRel", args * height, zero)),
        ),
    )
    return torch.stack([torch.stack(row, 1) for row in rows], 1)


def _normalised_theta(matrix: Tensor, height: int, width: int) -> Tensor:
    """Pixel-space maps as ``affine_grid``'s theta: ``g = 2 p / side - 1`` with ``align_corners=False``."""
    half = torch.tensor([width / 2, height / 2], dtype=torch.float64)
    linear = matrix[:, :, :2] * half.view(1, 1, 2) / half.view(1, 2, 1)  # D^-1 A D, D = diag(W / 2, H / 2)
    shift = (matrix[:, :, :2] @ half + matrix[:, :, 2] - half) / half
    return torch.cat([linear, shift.unsqueeze(2)], 2)


def _lookup(images: Tensor, kinds: Tensor, args: Tensor, _: Tensor) -> Tensor:
    """The per-channel ops as lookup tables ``(B, C, 256)`` built per op kind, applied in one ``gather``.

    The pointwise formulas run on the 256 levels instead of the pixels (same float32 arithmetic, same values);
    Contrast, AutoContrast and Equalize first take their statistics from their samples.
    """
    device = images.device
    batch, channels = images.shape[:2]
    luts = torch.empty(batch, channels, 256, device=device)
    levels = torch.arange(256, dtype=torch.float32, device=device).expand(1, channels, 1, 256)
    for kind in kinds.unique().tolist():  # a loop over ops, each on all its samples
        rows = torch.nonzero(kinds == kind).squeeze(1)
        index = rows.to(device)
        factor = _factor(args[rows], device)
        name = RAND_OPS[kind]
        if name in _POINTWISE:
            lut = _POINTWISE[name](levels, factor).squeeze(2)
        else:
            lut = _STATISTIC_LUTS[name](images[index], factor)
        luts.index_copy_(0, index, lut.expand(len(rows), channels, 256))
    return luts.gather(2, images.reshape(batch, channels, -1).long()).view_as(images)


def _factor(args: Tensor, device: torch.device) -> Tensor:
    """Per-sample arguments as float32 ``(B, 1, 1, 1)``: PIL's blend takes its factor as a C float."""
    return args.to(device, torch.float32).view(-1, 1, 1, 1)


def _blend(degenerate: Tensor, images: Tensor, factor: Tensor) -> Tensor:
    """``PIL.Image.blend(degenerate, images, factor)``: linear inter- or extrapolation, clipped and truncated.

    PIL computes ``degenerate + factor * (images - degenerate)`` in float32; the in-place order below rounds the
    same (the sum and product commute).
    """
    out = (images - degenerate) * factor  # not in place: the factor may broadcast the shape
    return out.add_(degenerate).clamp_(0, 255).floor_()


def _luma(images: Tensor) -> Tensor:
    """PIL's RGB to L conversion: ``(19595 R + 38470 G + 7471 B + 0x8000) >> 16``, ``(B, 1, H, W)``.

    Every partial sum is an integer below 2**24, so float32 computes it exactly in any order; 1 / 65536 is exact.
    The weights sum to 65536, so a gray image (one channel) is its own luma.
    """
    if images.shape[1] == 1:
        return images
    weight = images.new_tensor([19595.0, 38470.0, 7471.0]).view(1, 3, 1, 1)
    return F.conv2d(images, weight).add_(32768).mul_(1 / 65536).floor_()


def _color(images: Tensor, kinds: Tensor, args: Tensor, _: Tensor) -> Tensor:
    if images.shape[1] == 1:  # gray is its own luma: the blend is the identity
        return images
    return _blend(_luma(images), images, _factor(args, images.device))


def _sharpness(images: Tensor, kinds: Tensor, args: Tensor, _: Tensor) -> Tensor:
    """Blend with PIL's SMOOTH filter of the image; PIL leaves the one-pixel border unfiltered."""
    height, width = images.shape[-2:]
    smooth = images.clone()
    if height >= 3 and width >= 3:
        # The kernel is a 3x3 box plus 4 times the centre: separable sums of shifted views, several times faster
        # on CPU than a depthwise conv2d. Integer sums below 13 * 255: exact in float32.
        rows = images[..., :-2, :] + images[..., 1:-1, :]
        rows += images[..., 2:, :]
        total = rows[..., :-2] + rows[..., 1:-1]
        total += rows[..., 2:]
        total.add_(images[..., 1:-1, 1:-1], alpha=4)
        smooth[..., 1:-1, 1:-1] = total.add_(6).div_(13).floor_()  # round(total / 13); no ties with 13 odd
    return _blend(smooth, images, _factor(args, images.device))


def _contrast_lut(images: Tensor, factor: Tensor) -> Tensor:
    """PIL's Contrast blends with the rounded mean of the L image (a float64 sum keeps that mean exact)."""
    pixels = images.shape[-2] * images.shape[-1]
    mean = torch.floor(_luma(images).sum((1, 2, 3), keepdim=True, dtype=torch.float64) / pixels + 0.5).float()
    levels = torch.arange(256, dtype=torch.float32, device=images.device).expand(1, images.shape[1], 1, 256)
    return _blend(mean, levels, factor).squeeze(2)


def _auto_contrast_lut(images: Tensor, _: Tensor) -> Tensor:
    """``ImageOps.autocontrast`` (cutoff 0): per-sample, per-channel min/max stretched to 0..255, truncated."""
    low = images.amin((2, 3)).double().unsqueeze(2)
    high = images.amax((2, 3)).double().unsqueeze(2)
    levels = torch.arange(256, dtype=torch.float64, device=images.device)
    # Tensor by tensor: ``255.0 / tensor`` multiplies by a reciprocal, one ulp off PIL's quotient and its LUT.
    scale = torch.full_like(low, 255.0) / (high - low).clamp(min=1)
    lut = torch.floor(levels * scale + (-low * scale)).clamp(0, 255)  # PIL's float64 formula, term by term
    return torch.where(high > low, lut, levels).float()  # a flat channel stays as it is


def _equalize_lut(images: Tensor, _: Tensor) -> Tensor:
    """``ImageOps.equalize``: PIL's per-channel lookup table from each sample's 256-bin histograms."""
    batch, channels = images.shape[:2]
    rows = batch * channels
    values = images.reshape(rows, -1).long()
    # Row-wise scatter_add: a few times faster on CPU than one offset bincount, and deterministic on CUDA.
    counts = torch.zeros(rows, 256, dtype=torch.long, device=images.device)
    counts.scatter_add_(1, values, torch.ones_like(values))
    levels = torch.arange(256, device=images.device)
    highest = torch.where(counts > 0, levels, -1).amax(1, keepdim=True)
    # PIL: step = (pixels - count of the highest level) // 255; identity when that is 0 (one level, or few pixels).
    step = (values.shape[1] - counts.gather(1, highest)) // 255
    before = counts.cumsum(1) - counts
    lut = ((step // 2 + before) // step.clamp(min=1)).clamp(max=255)
    return torch.where(step > 0, lut, levels).view(batch, channels, 256).float()


_POINTWISE: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "Invert": lambda levels, _: 255 - levels,
    # Keep the top `bits` bits: floor to a multiple of 2**(8 - bits).
    "Posterize": lambda levels, bits: torch.floor(levels / torch.exp2(8 - bits)) * torch.exp2(8 - bits),
    "Solarize": lambda levels, threshold: torch.where(levels >= threshold, 255 - levels, levels),
    "SolarizeAdd": lambda levels, add: torch.where(levels < 128, (levels + add).clamp(max=255), levels),  # timm: 128
    "Brightness": lambda levels, factor: _blend(torch.zeros_like(levels), levels, factor),
}
_STATISTIC_LUTS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "Contrast": _contrast_lut,
    "AutoContrast": _auto_contrast_lut,
    "Equalize": _equalize_lut,
}


def _members(names: set[str] | frozenset[str]) -> Tensor:
    """Boolean ``(15,)`` membership of the op indices in a group of op kinds."""
    return torch.tensor([name in names for name in RAND_OPS])


# Each group: its op kinds (by op index) and one batched transform (images, op indices, arguments, fill).
_GROUPS: tuple[tuple[Tensor, Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]], ...] = (
    (_members(GEOMETRIC_OPS), _affine),
    (_members(_POINTWISE.keys() | _STATISTIC_LUTS.keys()), _lookup),
    (_members({"Color"}), _color),
    (_members({"Sharpness"}), _sharpness),
)
