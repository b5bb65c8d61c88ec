"""DeiT-style augmentation: batched on the training device for rendered data, timm's per-image pipeline for real data.

Synthetic batches (:class:`DeviceAugment`) arrive as uint8 ``(B, C, H, W)`` on the device and leave as normalised
float32 ``(B, 3, S, S)``. The training path is timm's order of operations: random resized crop, flips, RandAugment,
normalisation, random erasing. Crop, resize and both flips are ONE ``grid_sample`` call with a per-sample affine grid
(flips are a sign of the grid's scale); RandAugment is timm's, batched (:mod:`fdsl_app.data.randaugment`: one call
per op and layer on the samples that drew it, geometric ops as one ``grid_sample`` per layer); random erasing draws its
boxes and noise for the batch at once and writes them box by box. No other step loops over the samples in Python.

Determinism. Every random choice of a batch is drawn from generators seeded by one integer (``forward(seed=...)``):
crop boxes, flips, RandAugment's ops, on/off draws, magnitudes and signs, and the erasing boxes come from one CPU
generator, in that order (then moved to the device); the erasing noise comes from a generator on the batch's device
seeded from it. The same seed, input and device give the same output, torch's global generators are never touched,
and without a seed the module's own generator (seeded at construction) advances from call to call. The DataModule
passes a hash of (run seed, epoch, batch index, rank), so a batch's augmentation does not depend on the worker count.
"""

from __future__ import annotations

import ctypes
import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from torch import Tensor
from torchvision.transforms import Compose

from fdsl_app.config import AugmentCfg
from fdsl_app.data.randaugment import (
    RandAugmentSpec,
    apply_rand_augment,
    parse_rand_augment,
    sample_rand_augment_params,
)
from fdsl_app.render.formula_space import ATTEMPTS, resized_crop_boxes

__all__ = [
    "AugmentParams",
    "DeviceAugment",
    "RandAugmentSpec",
    "parse_rand_augment",
    "random_erase",
    "real_transforms",
]

_RATIO = (3 / 4, 4 / 3)  # random resized crop aspect ratios (torchvision, timm, DeiT)
_ERASE_ATTEMPTS = 10  # timm's RandomErasing tries 10 boxes per image
_ERASE_AREA = (0.02, 1 / 3)  # timm RandomErasing defaults (DeiT)
_ERASE_LOG_ASPECT = (math.log(0.3), math.log(1 / 0.3))


@dataclass
class AugmentParams:
    """The random parameters of one batch (image coordinates of the input, before any resizing).

    Attributes:
        boxes: float ``(B, 4)`` crop boxes ``(left, top, width, height)`` in input pixels.
        hflip: bool ``(B,)`` horizontal flips.
        vflip: bool ``(B,)`` vertical flips.
    """

    boxes: Tensor
    hflip: Tensor
    vflip: Tensor


class DeviceAugment(torch.nn.Module):
    """Batch augmentation of uint8 ``(B, C, H, W)`` images (``C`` 1 or 3) into normalised float ``(B, 3, S, S)``.

    Args:
        augment: the augmentation config (scale, flips, RandAugment spec, erasing probability, mean and std).
        image_size: S, the output side.
        train: the training pipeline (crop, flips, RandAugment, erasing); else the evaluation one (centre square,
            resize to S, normalise).
        seed: seed of the module's own generator, used by calls without a seed.
    """

    def __init__(self, augment: AugmentCfg, image_size: int, *, train: bool = True, seed: int = 0) -> None:
        super().__init__()
        if image_size < 1:
            raise ValueError(f"image_size must be >= 1, got {image_size}")
        self.image_size = int(image_size)
        self.train_mode = train
        self.scale = (float(augment.scale[0]), float(augment.scale[1]))
        self.hflip_prob = float(augment.hflip)
        self.vflip_prob = float(augment.vflip)
        self.re_prob = float(augment.re_prob)
        self.rand_augment: RandAugmentSpec | None = (
            parse_rand_augment(augment.rand_augment) if augment.rand_augment else None
        )
        mean = torch.tensor(augment.mean, dtype=torch.float32).expand(3).clone()  # one entry broadcasts to RGB
        std = torch.tensor(augment.std, dtype=torch.float32).expand(3).clone()
        self.register_buffer("mean", mean.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", std.view(1, 3, 1, 1), persistent=False)
        # timm's img_mean under create_transform: the fill of RandAugment's geometric ops.
        self._fill = [float(min(255, round(255 * float(m)))) for m in mean]
        # With a gray fill, a gray batch stays one channel until normalisation: the same bytes as replicating it to
        # RGB first (every crop, flip and RandAugment op treats equal channels alike), a third of the work.
        self._gray_exact = len(set(self._fill)) == 1
        self._generator = torch.Generator().manual_seed(seed)

    def extra_repr(self) -> str:
        if not self.train_mode:
            return f"eval, size={self.image_size}"
        return (
            f"train, size={self.image_size}, scale={self.scale}, hflip={self.hflip_prob}, vflip={self.vflip_prob}, "
            f"rand_augment={self.rand_augment}, re_prob={self.re_prob}"
        )

    @torch.no_grad()
    def forward(self, images: Tensor, seed: int | None = None) -> Tensor:
        """Augment (or, in eval mode, resize) a batch.

        Args:
            images: uint8 ``(B, C, H, W)``, ``C`` 1 (gray, replicated to RGB) or 3, on any device.
            seed: seed of every random choice of this call; None draws it from the module's generator.

        Returns:
            float32 ``(B, 3, S, S)`` on the input's device, ``(x / 255 - mean) / std``.
        """
        _check_images(images)
        if images.device.type == "cpu":
            recycle_batch_memory()
        if not self.train_mode:
            return self._normalise(_expand_rgb(_resize_center(images.float(), self.image_size)))
        if seed is None:
            seed = int(torch.randint(0, 2**62, (), generator=self._generator))
        generator = torch.Generator().manual_seed(seed)
        batch, _, height, width = images.shape
        params = self.sample_params(batch, height, width, generator)
        if self._is_identity_geometry(height, width):  # crops and flips already done in formula space
            out = images.float()
        else:
            out = _crop_resize(images.float(), params, self.image_size)
        if not self._gray_exact:  # see __init__
            out = _expand_rgb(out)
        if self.rand_augment is not None:
            out = self._rand_augment(out, generator)
        out = self._normalise(out)
        if self.re_prob > 0:
            out = random_erase(out, self.re_prob, generator)
        return out

    def sample_params(self, batch: int, height: int, width: int, generator: torch.Generator) -> AugmentParams:
        """Crop boxes (torchvision's RandomResizedCrop, vectorised) and flips of a batch, drawn on the CPU."""
        return AugmentParams(
            boxes=_sample_boxes(batch, height, width, self.scale, generator),
            hflip=torch.rand(batch, generator=generator) < self.hflip_prob,
            vflip=torch.rand(batch, generator=generator) < self.vflip_prob,
        )

    def _is_identity_geometry(self, height: int, width: int) -> bool:
        """Whether the crop is always the whole image at its own size and nothing flips."""
        whole = tuple(self.scale) == (1.0, 1.0) and self.hflip_prob == 0 and self.vflip_prob == 0
        return whole and height == width == self.image_size

    def _normalise(self, images: Tensor) -> Tensor:
        mean = self.mean.to(images.device)
        std = self.std.to(images.device)
        if images.is_contiguous() and images.dtype.is_floating_point:  # in place: every caller hands its own buffer
            if images.shape[1] == 3:
                return images.div_(255.0).sub_(mean).div_(std)
            return images.div_(255.0).sub(mean).div_(std)  # gray: the subtraction makes the RGB batch
        return (images / 255.0 - mean) / std

    def _rand_augment(self, images: Tensor, generator: torch.Generator) -> Tensor:
        """timm's RandAugment on the whole batch (0..255 floats in, integer-valued 0..255 floats out)."""
        spec = self.rand_augment
        assert spec is not None
        params = sample_rand_augment_params(images.shape[0], generator, spec)
        # In place: `images` is this call's own crop output (an expanded gray view is copied by the callee).
        return apply_rand_augment(images, params, spec.increasing, self._fill, inplace=True)


def random_erase(images: Tensor, prob: float, generator: torch.Generator) -> Tensor:
    """timm's RandomErasing (mode "pixel", one box, 10 attempts) of a float batch, in place: per-pixel N(0, 1) noise
    in each box.

    The boxes are drawn for the whole batch at once from `generator` (CPU); the noise (one draw for all boxes, in
    image, channel, row order, from a generator on the batch's device seeded from `generator`) is written box by
    box: a slice per erased image beats a batch-wide mask several-fold on the CPU.
    """
    batch, channels, height, width = images.shape
    boxes = _sample_erase_boxes(batch, height, width, prob, generator)  # (B, 4) top, left, h, w
    erased = torch.nonzero(boxes[:, 2] > 0).flatten().tolist()
    if not erased:
        return images
    noise_generator = torch.Generator(device=images.device)
    noise_generator.manual_seed(int(torch.randint(0, 2**62, (), generator=generator)))
    chosen = boxes[erased].tolist()
    sizes = [channels * h * w for _, _, h, w in chosen]
    noise = torch.randn(sum(sizes), generator=noise_generator, device=images.device, dtype=images.dtype)
    for i, (top, left, h, w), chunk in zip(erased, chosen, noise.split(sizes), strict=True):
        images[i, :, top : top + h, left : left + w] = chunk.view(channels, h, w)
    return images


@functools.cache
def recycle_batch_memory() -> bool:
    """Let glibc keep freed batch-sized buffers for reuse instead of handing them back to the OS; once per process.

    glibc serves blocks above its mmap threshold (which never grows past 32 MiB) with fresh mappings and unmaps them
    when freed, so every float batch of 64 x 3 x 224 x 224 (38 MiB) would be page-faulted in anew on each step: about
    40 % of the CPU augmentation's time. Raising the mmap and trim thresholds keeps that memory in the process (the
    batches' peak stays resident). Returns whether it applied (False without glibc).
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
    return bool(mallopt(m_mmap_threshold, 1 << 30)) and bool(mallopt(m_trim_threshold, (1 << 31) - 1))


def real_transforms(augment: AugmentCfg, image_size: int, train: bool) -> Compose:
    """timm/DeiT transform of PIL images into normalised float ``(3, S, S)`` tensors (real data, CPU workers).

    Training: timm ``create_transform`` with random resized crop (``augment.scale``, bicubic), flips, RandAugment
    (``augment.rand_augment``), normalisation and random erasing (``augment.re_prob``, mode "pixel" as DeiT).
    Colour jitter is off (timm disables it next to RandAugment anyway; off without RandAugment too, so real and
    rendered data get the same set of augmentations). RandAugment's Posterize accepts 0 bits again (see
    :func:`_allow_zero_bit_posterize`). Evaluation: for ``S >= 64`` resize the short side to
    ``S / 0.875`` and centre-crop S (DeiT); below 64 px (CIFAR-style 32 px) resize straight to ``S x S``, since a
    crop would cut into 32 px images that carry no margin.
    """
    mean = tuple(float(m) for m in augment.mean)
    std = tuple(float(s) for s in augment.std)
    # Deferred import: timm's data package is heavy and the on-the-fly path never needs it.
    from timm.data import create_transform

    if train:
        transform = create_transform(
            input_size=image_size,
            is_training=True,
            auto_augment=augment.rand_augment,
            re_prob=augment.re_prob,
            re_mode="pixel",
            hflip=augment.hflip,
            vflip=augment.vflip,
            scale=(float(augment.scale[0]), float(augment.scale[1])),
            color_jitter=0.0,
            interpolation="bicubic",
            mean=mean,
            std=std,
        )
        _allow_zero_bit_posterize(transform)
        return transform
    if image_size >= 64:
        return create_transform(
            input_size=image_size, is_training=False, crop_pct=0.875, interpolation="bicubic", mean=mean, std=std
        )
    return create_transform(
        input_size=image_size,
        is_training=False,
        crop_pct=1.0,
        crop_mode="squash",
        interpolation="bicubic",
        mean=mean,
        std=std,
    )


def _allow_zero_bit_posterize(transform: Compose) -> None:
    """Give timm's Posterize ops a 0-bit case: black, as timm means it and as older Pillow did.

    ``PosterizeIncreasing`` keeps ``4 - int(0.4 * m)`` bits, 0 at magnitude 10, which ``rand-m9-mstd0.5`` reaches
    whenever its noisy magnitude clips at 10 (2.3 % of the draws). Pillow 13 raises ``ValueError`` for fewer than
    1 bit, which killed training on real data after about two thousand images.
    """
    from timm.data.auto_augment import RandAugment

    for step in transform.transforms:
        if isinstance(step, RandAugment):
            for op in step.ops:
                if op.name.startswith("Posterize"):
                    op.aug_fn = _posterize_any_bits


def _posterize_any_bits(image: Image.Image, bits_to_keep: int, **_: object) -> Image.Image:
    """timm's ``posterize`` for every bit count: 8 or more keeps the image, 0 or fewer makes it black."""
    if bits_to_keep >= 8:
        return image
    if bits_to_keep <= 0:
        return Image.new(image.mode, image.size)
    return ImageOps.posterize(image, bits_to_keep)


def _check_images(images: Tensor) -> None:
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(
            f"DeviceAugment takes uint8 images (B, C, H, W) with C 1 or 3, got {images.dtype} {tuple(images.shape)}"
        )


def _expand_rgb(images: Tensor) -> Tensor:
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


def _resize_center(images: Tensor, size: int) -> Tensor:
    """The centre square of each image, resized to ``size x size`` (antialiased bilinear)."""
    height, width = images.shape[-2:]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = images[..., top : top + side, left : left + side]
    if side == size:
        return square.contiguous()
    return F.interpolate(square, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def _sample_boxes(
    batch: int, height: int, width: int, scale: tuple[float, float], generator: torch.Generator
) -> Tensor:
    """torchvision's RandomResizedCrop.get_params for a whole batch (:func:`~fdsl_app.render.formula_space.
    resized_crop_boxes`): ``(left, top, width, height)`` float ``(B, 4)``, from `generator`'s uniforms."""
    shape = (batch, ATTEMPTS)
    u_area = torch.rand(shape, generator=generator, dtype=torch.float64)
    u_aspect = torch.rand(shape, generator=generator, dtype=torch.float64)
    u_left = torch.rand(batch, generator=generator, dtype=torch.float64)
    u_top = torch.rand(batch, generator=generator, dtype=torch.float64)
    u_position = torch.stack([u_left, u_top], 1)
    boxes = resized_crop_boxes(u_area.numpy(), u_aspect.numpy(), u_position.numpy(), height, width, scale, _RATIO)
    return torch.from_numpy(boxes).float()


def _crop_resize(images: Tensor, params: AugmentParams, size: int) -> Tensor:
    """Crop each sample's box, flip it and resize it to ``size x size``: one bilinear ``grid_sample`` call.

    Bilinear sampling that shrinks by more than 2x skips pixels (thin fractal points vanish), so inputs larger than
    twice the output are first shrunk as a batch with an antialiased resize to twice the output; boxes are
    fractions of the image and stay valid.
    """
    batch, _, height, width = images.shape
    if min(height, width) > 2 * size:
        factor = 2 * size / min(height, width)
        target = (max(1, round(height * factor)), max(1, round(width * factor)))
        images = F.interpolate(images, size=target, mode="bilinear", antialias=True, align_corners=False)
    boxes = params.boxes.to(torch.float32)
    left, top, w, h = boxes.unbind(1)
    # affine_grid maps output coordinates in [-1, 1] to input ones: x_in = sx * x_out + tx, with the box's
    # width fraction as scale and its centre as shift; a negative scale mirrors the box (the flip).
    sx = (w / width) * torch.where(params.hflip, -1.0, 1.0)
    sy = (h / height) * torch.where(params.vflip, -1.0, 1.0)
    tx = (2 * left + w) / width - 1
    ty = (2 * top + h) / height - 1
    zero = torch.zeros_like(sx)
    theta = torch.stack([torch.stack([sx, zero, tx], 1), torch.stack([zero, sy, ty], 1)], 1)
    theta = theta.to(images.device)
    grid = F.affine_grid(theta, [batch, images.shape[1], size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _sample_erase_boxes(batch: int, height: int, width: int, prob: float, generator: torch.Generator) -> Tensor:
    """timm RandomErasing boxes ``(top, left, h, w)`` int ``(B, 4)``; ``h = w = 0`` where nothing is erased."""
    shape = (batch, _ERASE_ATTEMPTS)
    erase = torch.rand(batch, generator=generator) < prob
    area = (
        height * width * (_ERASE_AREA[0] + (_ERASE_AREA[1] - _ERASE_AREA[0]) * torch.rand(shape, generator=generator))
    )
    lo, hi = _ERASE_LOG_ASPECT
    aspect = torch.exp(lo + (hi - lo) * torch.rand(shape, generator=generator))
    h = torch.sqrt(area * aspect).round()
    w = torch.sqrt(area / aspect).round()
    fits = (w < width) & (h < height)  # timm's strict test: the box never covers a whole side
    first = fits.float().argmax(1, keepdim=True)
    erase &= fits.any(1)
    h = torch.where(erase, h.gather(1, first).squeeze(1), 0.0)
    w = torch.where(erase, w.gather(1, first).squeeze(1), 0.0)
    top = torch.floor(torch.rand(batch, generator=generator) * (height - h + 1))
    left = torch.floor(torch.rand(batch, generator=generator) * (width - w + 1))
    return torch.stack([top, left, h, w], 1).long()
