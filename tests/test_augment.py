"""DeviceAugment (batched crop, flips, RandAugment, erasing on the device) and the timm transform of real data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms import RandomResizedCrop

from fdsl_app.config import AugmentCfg
from fdsl_app.data.augment import (
    AugmentParams,
    DeviceAugment,
    _crop_resize,
    _magnitude_bins,
    _sample_erase_boxes,
    parse_rand_augment,
    real_transforms,
)

PLAIN = {"rand_augment": None, "re_prob": 0.0, "hflip": 0.0, "vflip": 0.0}


def _cfg(**overrides: object) -> AugmentCfg:
    return AugmentCfg(**{**PLAIN, **overrides})  # type: ignore[arg-type]


def _images(batch: int, channels: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(
        0, 256, (batch, channels, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)
    )


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("train", [True, False])
def test_output_shape_dtype_and_normalisation(channels: int, train: bool) -> None:
    augment = DeviceAugment(_cfg(mean=[0.2, 0.4, 0.6], std=[0.5, 0.25, 0.1]), 24, train=train)
    images = torch.full((5, channels, 40, 40), 153, dtype=torch.uint8)  # constant: every crop and resize keeps 153
    out = augment(images)
    assert out.shape == (5, 3, 24, 24) and out.dtype == torch.float32
    expected = (153 / 255 - torch.tensor([0.2, 0.4, 0.6])) / torch.tensor([0.5, 0.25, 0.1])
    torch.testing.assert_close(out, expected.view(1, 3, 1, 1).expand_as(out), atol=1e-5, rtol=0)


def test_gray_input_gives_three_equal_channels() -> None:
    out = DeviceAugment(_cfg(hflip=0.5), 16)(_images(4, 1, 32), seed=3)
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])


def test_rejects_wrong_input() -> None:
    with pytest.raises(ValueError, match="uint8"):
        DeviceAugment(_cfg(), 16)(torch.zeros(2, 3, 16, 16))
    with pytest.raises(ValueError, match="C 1 or 3"):
        DeviceAugment(_cfg(), 16)(torch.zeros(2, 2, 16, 16, dtype=torch.uint8))


@pytest.mark.parametrize("scale", [(0.08, 1.0), (0.4, 0.9)])
def test_crop_areas_follow_torchvision_random_resized_crop(scale: tuple[float, float]) -> None:
    n, side = 3000, 256
    augment = DeviceAugment(_cfg(scale=list(scale)), 32)
    params = augment.sample_params(n, side, side, torch.Generator().manual_seed(0))
    left, top, w, h = params.boxes.double().unbind(1)
    assert bool((left >= 0).all() and (top >= 0).all() and (left + w <= side).all() and (top + h <= side).all())
    ours = (w * h / side**2).numpy()
    slack = 2.5 / side  # sides are rounded to pixels, as torchvision does
    assert ours.min() >= scale[0] - slack and ours.max() <= scale[1] + slack
    assert np.all((w / h).numpy() >= 0.75 - 4 / side) and np.all((w / h).numpy() <= 4 / 3 + 4 / side)

    torch.manual_seed(0)
    image = torch.zeros(3, side, side)
    reference = np.array(
        [
            bh * bw / side**2
            for _, _, bh, bw in (RandomResizedCrop.get_params(image, list(scale), [3 / 4, 4 / 3]) for _ in range(n))
        ]
    )
    # Uniform in area (up to the rejection of boxes that do not fit, which both share): the same quantiles.
    for q in (0.1, 0.25, 0.5, 0.75, 0.9):
        assert abs(np.quantile(ours, q) - np.quantile(reference, q)) < 0.035, q
    width = scale[1] - scale[0]
    uniform_mean = scale[0] + width / 2
    assert abs(ours.mean() - reference.mean()) < 0.02 and abs(ours.mean() - uniform_mean) < 0.06


def test_crop_resize_takes_the_box_and_flips() -> None:
    images = torch.arange(64 * 64, dtype=torch.float32).view(1, 1, 64, 64)
    box = torch.tensor([[8.0, 4.0, 16.0, 16.0]])  # left, top, width, height: a 1:1 resample of the box
    plain = AugmentParams(boxes=box, hflip=torch.tensor([False]), vflip=torch.tensor([False]))
    torch.testing.assert_close(_crop_resize(images, plain, 16), images[..., 4:20, 8:24])
    both = AugmentParams(boxes=box, hflip=torch.tensor([True]), vflip=torch.tensor([True]))
    torch.testing.assert_close(_crop_resize(images, both, 16), images[..., 4:20, 8:24].flip(-1, -2))


@pytest.mark.parametrize(("hflip", "vflip"), [(0.5, 0.0), (0.3, 0.7)])
def test_flips_happen_with_the_configured_probability(hflip: float, vflip: float) -> None:
    n = 2000
    # Scale 1 on a square image: the box is the whole image, so only the flips change it.
    augment = DeviceAugment(_cfg(scale=[1.0, 1.0], hflip=hflip, vflip=vflip), 16)
    images = torch.zeros(n, 1, 16, 16, dtype=torch.uint8)
    images[:, :, :8, :4] = 255  # a bright block in the top-left corner
    out = augment(images, seed=11)[:, 0]
    right = (out[:, :8, 12:].mean((1, 2)) > out[:, :8, :4].mean((1, 2))) | (
        out[:, 8:, 12:].mean((1, 2)) > out[:, 8:, :4].mean((1, 2))
    )
    bottom = out[:, 8:].mean((1, 2)) > out[:, :8].mean((1, 2))
    for observed, p in ((right.float().mean().item(), hflip), (bottom.float().mean().item(), vflip)):
        sigma = math.sqrt(p * (1 - p) / n)
        assert abs(observed - p) <= 4 * sigma + 1e-9, (observed, p)


def test_eval_path_is_deterministic_and_a_plain_resize() -> None:
    augment = DeviceAugment(AugmentCfg(), 32, train=False)  # full training config: eval must ignore all of it
    images = _images(6, 3, 64)
    first, second = augment(images), augment(images, seed=123)
    assert torch.equal(first, second)
    resized = F.interpolate(images.float(), size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
    torch.testing.assert_close(first, (resized / 255 - 0.5) / 0.5)
    # A non-square input is centre-cropped to a square first.
    wide = torch.zeros(1, 1, 32, 48, dtype=torch.uint8)
    wide[..., 8:40] = 255
    assert torch.equal(augment(wide), torch.ones(1, 3, 32, 32))


def test_train_path_is_seeded_and_leaves_the_global_generator_alone() -> None:
    augment = DeviceAugment(AugmentCfg(hflip=0.5, vflip=0.5, re_prob=0.5), 24)  # RandAugment on
    images = _images(8, 3, 48)
    state = torch.get_rng_state()
    first = augment(images, seed=5)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first, augment(images, seed=5))
    assert not torch.equal(first, augment(images, seed=6))
    assert not torch.equal(augment(images), augment(images))  # the module's generator advances


def test_rand_augment_changes_images_beyond_crop_and_flip() -> None:
    images = _images(16, 3, 32)
    plain = DeviceAugment(_cfg(), 32)(images, seed=2)
    augmented = DeviceAugment(_cfg(rand_augment="rand-m9-mstd0.5-inc1"), 32)(images, seed=2)
    assert (plain - augmented).abs().amax((1, 2, 3)).gt(0).sum() >= 8  # p=0.5 per layer, 2 layers: most samples


def test_parse_rand_augment_and_magnitude_mapping() -> None:
    spec = parse_rand_augment("rand-m9-mstd0.5-inc1")
    assert (spec.magnitude, spec.num_ops, spec.prob, spec.magnitude_std, spec.increasing) == (9, 2, 0.5, 0.5, True)
    assert parse_rand_augment("rand-n3-m5-p1").num_ops == 3
    assert math.isinf(parse_rand_augment("rand-m9-mstd101").magnitude_std)
    exact = parse_rand_augment("rand-m9")
    assert _magnitude_bins(exact, (2, 2), torch.Generator()).eq(27).all()  # 9/10 of the range = bin 27 of 0..30
    noisy = _magnitude_bins(spec, (4000, 1), torch.Generator().manual_seed(0)).double()
    assert abs(noisy.mean().item() - 27) < 0.2 and 1.0 < noisy.std().item() < 2.0  # std 0.5 of 10 = 1.5 bins
    for bad in ("augmix-m5", "rand-m9-tweights", "rand-x3"):
        with pytest.raises(ValueError, match="RandAugment spec"):
            parse_rand_augment(bad)


def test_random_erasing_probability_and_box_sizes() -> None:
    n, side = 4000, 32
    boxes = _sample_erase_boxes(n, side, side, 0.25, torch.Generator().manual_seed(0))
    erased = boxes[:, 2] > 0
    assert abs(erased.float().mean().item() - 0.25) < 4 * math.sqrt(0.25 * 0.75 / n)
    top, left, h, w = boxes[erased].unbind(1)
    area = (h * w).double() / side**2
    assert area.min() >= 0.01 and area.max() <= 0.4
    assert bool((top + h <= side).all() and (left + w <= side).all())
    out = DeviceAugment(_cfg(re_prob=1.0), 32)(torch.full((64, 3, 32, 32), 255, dtype=torch.uint8), seed=1)
    changed = (out != 1.0).any(1).float().mean((1, 2))  # erased pixels hold N(0, 1) noise
    assert bool((changed > 0.01).all() and (changed < 0.4).all())


def test_real_transforms_train_and_eval() -> None:
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8))
    out = real_transforms(AugmentCfg(), 32, train=True)(image)
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    small = real_transforms(AugmentCfg(), 32, train=False)
    assert "CenterCrop(size=(32, 32))" in repr(small) and "Resize(size=(32, 32)" in repr(small)
    assert small(image).shape == (3, 32, 32)
    large = real_transforms(AugmentCfg(), 224, train=False)
    assert "Resize(size=256" in repr(large) and large(image).shape == (3, 224, 224)


def test_large_inputs_are_shrunk_without_losing_thin_lines() -> None:
    # A 1 px line in a 256 px render must survive the resize to 16 px: bilinear sampling alone would skip it.
    images = torch.zeros(4, 1, 256, 256, dtype=torch.uint8)
    images[..., 101] = 255
    out = DeviceAugment(_cfg(scale=[1.0, 1.0], mean=[0.0], std=[1.0]), 16)(images, seed=0)
    mass = out[:, 0].sum((1, 2))  # the line's mass, 256 px * 1.0, shrinks with the area by 16**2 / 256**2
    torch.testing.assert_close(mass, torch.full((4,), 1.0), atol=0.1, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_cuda_with_the_same_parameters() -> None:
    augment = DeviceAugment(AugmentCfg(hflip=0.5, vflip=0.5, re_prob=0.5), 32)
    images = _images(16, 1, 96).cuda()
    first = augment(images, seed=4)
    assert first.device.type == "cuda" and first.shape == (16, 3, 32, 32)
    assert torch.equal(first, augment(images, seed=4))
    plain = DeviceAugment(_cfg(hflip=0.5, vflip=0.5), 32)  # no RandAugment or noise: CPU and GPU agree
    torch.testing.assert_close(plain(images, seed=4).cpu(), plain(images.cpu(), seed=4), atol=1e-3, rtol=0)
