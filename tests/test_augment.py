"""DeviceAugment (batched crop, flips, RandAugment, erasing on the device) and the timm transform of real data."""

from __future__ import annotations

import functools
import math
import random
from collections import Counter

import numpy as np
import pytest
import timm.data.auto_augment as timm_aa
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms import RandomResizedCrop

from fdsl_app.config import AugmentCfg
from fdsl_app.data.augment import (
    AugmentParams,
    DeviceAugment,
    RandAugmentSpec,
    _crop_resize,
    _posterize_any_bits,
    _sample_erase_boxes,
    parse_rand_augment,
    random_erase,
    real_transforms,
)
from fdsl_app.data.randaugment import (
    GEOMETRIC_OPS,
    RAND_INCREASING_OPS,
    RandAugmentParams,
    apply_rand_augment,
    rand_augment_level_args,
    rand_augment_ops,
    sample_rand_augment_params,
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


def test_parse_rand_augment() -> None:
    spec = parse_rand_augment("rand-m9-mstd0.5-inc1")
    assert spec == RandAugmentSpec(magnitude=9, num_ops=2, prob=0.5, magnitude_std=0.5, increasing=True)
    assert parse_rand_augment("rand-n3-m5-p1").num_ops == 3
    assert math.isinf(parse_rand_augment("rand-m9-mstd101").magnitude_std)
    assert parse_rand_augment("rand-m9-mmax15").magnitude_max == 15
    assert parse_rand_augment("rand").magnitude == 10 and not parse_rand_augment("rand").increasing  # timm defaults
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


DEIT_RA = "rand-m9-mstd0.5-inc1"


def _within(observed: float, expected: float, sigma: float, z: float = 4.5) -> bool:
    return abs(observed - expected) <= z * sigma + 1e-12


def _record(calls: list[tuple[str, tuple[float, ...]]], name: str, image: Image.Image, *args: float, **_: object):
    calls.append((name, args))
    return image


def _timm_draws(spec: str, images: int, seed: int = 0) -> list[tuple[str, tuple[float, ...]]]:
    """The (op name, level arguments) of every layer timm's RandAugment applies to `images` images.

    timm's own op choice, on/off draw, magnitude noise and sign run unchanged; only the pixel work is replaced by a
    recorder (so no image is needed). Python's and NumPy's global generators are restored afterwards.
    """
    states = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed)
    try:
        transform = timm_aa.rand_augment_transform(spec, {"translate_const": 100, "img_mean": (128, 128, 128)})
        calls: list[tuple[str, tuple[float, ...]]] = []
        for op in transform.ops:
            op.aug_fn = functools.partial(_record, calls, op.name)
        image = Image.new("RGB", (1, 1))
        for _ in range(images):
            transform(image)
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
    return calls


def _our_draws(spec: str, batch: int, seed: int = 0) -> tuple[RandAugmentParams, list[str], torch.Tensor]:
    parsed = parse_rand_augment(spec)
    params = sample_rand_augment_params(batch, torch.Generator().manual_seed(seed), parsed)
    return params, list(rand_augment_ops(parsed.increasing)), rand_augment_level_args(params, parsed.increasing)


@pytest.mark.parametrize("spec", [DEIT_RA, "rand-m7-n3-p0.8"])
def test_op_choice_and_apply_probability_match_timm(spec: str) -> None:
    parsed = parse_rand_augment(spec)
    params, names, _ = _our_draws(spec, 20_000)
    draws = params.op.numel()
    counts = torch.bincount(params.op.flatten(), minlength=len(names)).double() / draws
    p = 1 / len(names)
    assert all(_within(c, p, math.sqrt(p * (1 - p) / draws)) for c in counts.tolist()), counts
    q = parsed.prob
    assert _within(params.applied.double().mean().item(), q, math.sqrt(q * (1 - q) / draws))
    assert _within(params.negate.double().mean().item(), 0.5, math.sqrt(0.25 / draws))
    # Against timm's own draws: the rate at which each op is applied, per layer of an image.
    images = 6000
    timm_counts = Counter(name for name, _ in _timm_draws(spec, images))
    ours = Counter(names[k] for k in params.op[params.applied].tolist())
    timm_layers, our_layers = images * parsed.num_ops, draws
    for name in names:
        rate = q * p
        sigma = math.sqrt(rate * (1 - rate) * (1 / timm_layers + 1 / our_layers))
        assert _within(timm_counts[name] / timm_layers, ours[name] / our_layers, sigma), name


def test_magnitude_noise_matches_timms_rule() -> None:
    params, _, _ = _our_draws(DEIT_RA, 20_000)
    ours = params.magnitude.flatten().numpy()
    reference = np.clip(np.random.default_rng(0).normal(9.0, 0.5, 400_000), 0, 10)  # timm: gauss, clip [0, 10]
    n = ours.size
    assert _within(ours.mean(), reference.mean(), 0.5 / math.sqrt(n))
    assert abs(ours.std() - reference.std()) < 0.01
    at_max = (reference == 10).mean()
    assert _within((ours == 10).mean(), at_max, math.sqrt(at_max * (1 - at_max) / n))
    uniform, _, _ = _our_draws("rand-m7-mstd101", 20_000)  # mstd > 100: uniform in [0, m]
    values = uniform.magnitude.numpy()
    assert values.min() >= 0 and values.max() <= 7 and abs(values.mean() - 3.5) < 0.05
    assert abs(values.std() - 7 / math.sqrt(12)) < 0.05
    fixed, _, _ = _our_draws("rand-m12", 10)  # no noise: still clipped to mmax = 10 as timm does
    assert bool((fixed.magnitude == 10).all())


@pytest.mark.parametrize("spec", [DEIT_RA, "rand-m5-mstd1"])
def test_level_arguments_match_timms_distribution(spec: str) -> None:
    """Per op, the argument timm passes to its PIL op (degrees, factors, bits, thresholds), ours against timm's: mean
    and share of negative ones (4.5 standard errors) and the whole distribution (Kolmogorov-Smirnov)."""
    params, names, args = _our_draws(spec, 20_000)
    timm_args: dict[str, list[float]] = {name: [] for name in names}
    for name, level_args in _timm_draws(spec, 6000):
        timm_args[name].append(level_args[0] if level_args else 0.0)
    for k, name in enumerate(names):
        ours = args[params.applied & (params.op == k)].numpy()
        theirs = np.array(timm_args[name])
        assert len(theirs) > 100 and len(ours) > 1000, name
        sigma = math.sqrt(ours.var() / len(ours) + theirs.var() / len(theirs))
        assert _within(ours.mean(), theirs.mean(), sigma), (name, ours.mean(), theirs.mean())
        sigma = math.sqrt(0.25 / len(ours) + 0.25 / len(theirs))
        assert _within((ours < 0).mean(), (theirs < 0).mean(), sigma), name
        # Two-sample Kolmogorov-Smirnov at alpha 0.001 (conservative for the discrete arguments).
        assert _ks_statistic(ours, theirs) < 1.95 * math.sqrt(1 / len(ours) + 1 / len(theirs)), name


def _ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """The largest gap between the empirical distribution functions of `a` and `b`."""
    points = np.concatenate([a, b])
    cdf_a = np.searchsorted(np.sort(a), points, side="right") / len(a)
    cdf_b = np.searchsorted(np.sort(b), points, side="right") / len(b)
    return float(np.abs(cdf_a - cdf_b).max())


def _natural_images(batch: int = 4, height: int = 36, width: int = 44, seed: int = 0) -> torch.Tensor:
    """Smooth colour images with texture (0..255 integers): one low-contrast, one gray."""
    generator = torch.Generator().manual_seed(seed)
    low = torch.rand(batch, 3, height // 4, width // 4, generator=generator) * 255
    images = F.interpolate(low, size=(height, width), mode="bicubic", align_corners=False)
    images = images + 20 * torch.randn(batch, 3, height, width, generator=generator)
    images[1] = images[1] * 0.3 + 60
    images[2] = images[2].mean(0, keepdim=True)
    return images.round().clamp(0, 255)


_FILL = (128, 100, 200)


def _timm_reference(images: torch.Tensor, name: str, magnitudes: list[float], negate: list[bool], monkeypatch):
    """timm's op `name` (AugmentOp, p=1, no noise, bilinear, fill _FILL) on each image as a PIL image."""
    hparams = {"img_mean": _FILL, "interpolation": Image.BILINEAR}
    sign = {"negate": False}
    # timm's _randomly_negate negates when random.random() > 0.5: pin the sign per image.
    monkeypatch.setattr(timm_aa.random, "random", lambda: 0.9 if sign["negate"] else 0.1)
    outputs = []
    for image, magnitude, neg in zip(images, magnitudes, negate, strict=True):
        op = timm_aa.AugmentOp(name, prob=1.0, magnitude=magnitude, hparams=hparams)
        if name.startswith("Posterize"):
            op.aug_fn = _posterize_any_bits  # 0 bits at magnitude 10 raises in Pillow 13 (see real_transforms)
        sign["negate"] = neg
        pil = Image.fromarray(image.permute(1, 2, 0).to(torch.uint8).numpy())
        outputs.append(torch.from_numpy(np.array(op(pil))).permute(2, 0, 1).float())
    return torch.stack(outputs)


@pytest.mark.parametrize("increasing", [True, False])
@pytest.mark.parametrize("index", range(len(RAND_INCREASING_OPS)))
def test_each_op_matches_timms_pil_op(increasing: bool, index: int, monkeypatch: pytest.MonkeyPatch) -> None:
    name = rand_augment_ops(increasing)[index]
    images = _natural_images()
    magnitudes, negate = [9.0, 9.0, 4.3, 10.0], [False, True, True, False]
    batch = images.shape[0]
    params = RandAugmentParams(  # layer 0 applies the op; layer 1 is off
        op=torch.tensor([[index, 0]] * batch),
        applied=torch.tensor([[True, False]] * batch),
        magnitude=torch.tensor([[m, 5.0] for m in magnitudes], dtype=torch.float64),
        negate=torch.tensor([[n, False] for n in negate]),
    )
    ours = apply_rand_augment(images, params, increasing, [float(v) for v in _FILL])
    reference = _timm_reference(images, name, magnitudes, negate, monkeypatch)
    diff = (ours - reference).abs()
    print(
        f"{name}: mean |diff| {diff.mean():.4f}, max {diff.max():.0f}, share > 1 level {(diff > 1).float().mean():.4f}"
    )
    assert not torch.equal(reference, images) or name in ("AutoContrast",), name  # the op did something
    if name in GEOMETRIC_OPS:  # same affine map and fill; float32 versus PIL's double at truncation ties
        assert diff.mean() < 0.1 and (diff > 1).float().mean() < 0.002, name
    else:  # PIL's integer arithmetic reproduced
        assert diff.mean() < 0.01 and diff.max() <= 1, name


def test_apply_rand_augment_keeps_the_input_and_its_dtype() -> None:
    images = _natural_images().double() + 0.3  # not integers: rounded first, as PIL's uint8
    before = images.clone()
    params, _, _ = _our_draws(DEIT_RA, images.shape[0], seed=3)
    out = apply_rand_augment(images, params, True, [128.0] * 3)
    assert torch.equal(images, before) and out.dtype == torch.float64 and out.shape == images.shape
    assert torch.equal(out, out.round()) and out.min() >= 0 and out.max() <= 255
    params.applied[:] = False
    torch.testing.assert_close(apply_rand_augment(images, params, True, [128.0] * 3), images.round())
    inplace = images.float()
    assert apply_rand_augment(inplace, params, True, [128.0] * 3, inplace=True).data_ptr() == inplace.data_ptr()


def test_device_augment_with_rand_augment_is_seeded_and_keeps_gray_gray() -> None:
    augment = DeviceAugment(_cfg(rand_augment=DEIT_RA), 24)
    gray = _images(32, 1, 40)
    out = augment(gray, seed=7)
    assert out.shape == (32, 3, 24, 24) and out.dtype == torch.float32
    assert torch.equal(out, augment(gray, seed=7)) and not torch.equal(out, augment(gray, seed=8))
    # Every op treats equal channels alike (luma of gray is gray; the fill is the equal-channel mean).
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])


@pytest.mark.parametrize("size", [24, 40])  # 24: crops and flips in formula space (identity geometry); 40: resized
def test_gray_batches_take_the_one_channel_path_with_the_same_bytes(size: int) -> None:
    """A gray batch stays one channel through crop and RandAugment (a third of the work): the output must equal
    that of the same batch replicated to RGB, bit for bit, erasing noise included."""
    cfg = _cfg(
        rand_augment="rand-m9-mstd0.5-inc1-p1", re_prob=0.5, **({"scale": [1, 1], "hflip": 0} if size == 24 else {})
    )
    augment = DeviceAugment(cfg, 24)
    gray = _images(48, 1, size, seed=3)
    assert augment._gray_exact
    assert torch.equal(augment(gray, seed=11), augment(gray.expand(-1, 3, -1, -1).contiguous(), seed=11))
    # A fill that differs per channel (ImageNet's mean) colours the border of rotated gray images: RGB path.
    colour = DeviceAugment(_cfg(rand_augment="rand-m9-mstd0.5-inc1-p1", mean=[0.485, 0.456, 0.406]), 24)
    assert not colour._gray_exact
    assert torch.equal(colour(gray, seed=11), colour(gray.expand(-1, 3, -1, -1).contiguous(), seed=11))


def test_apply_rand_augment_refuses_a_colour_fill_for_gray_images() -> None:
    params = sample_rand_augment_params(2, torch.Generator().manual_seed(0), parse_rand_augment("rand-m9"))
    with pytest.raises(ValueError, match="gray ones with a gray fill"):
        apply_rand_augment(torch.zeros(2, 1, 8, 8), params, True, [124.0, 116.0, 104.0])


def test_random_erasing_noise_is_standard_normal_and_stays_in_its_boxes() -> None:
    images = torch.full((256, 3, 32, 32), 7.0)
    out = random_erase(images.clone(), 1.0, torch.Generator().manual_seed(4))
    changed = out != 7.0
    noise = out[changed].double()
    assert noise.numel() > 50_000
    assert abs(noise.mean().item()) < 0.02 and abs(noise.std().item() - 1) < 0.02
    # Every erased region is one box per image, the same box in all three channels.
    assert torch.equal(changed[:, 0], changed[:, 1]) and torch.equal(changed[:, 1], changed[:, 2])
    for region in changed[:, 0]:
        rows, cols = region.any(1).nonzero().flatten(), region.any(0).nonzero().flatten()
        assert region.sum() == len(rows) * len(cols) == (rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1)
    # Seeded: the same generator state gives the same boxes and noise.
    assert torch.equal(out, random_erase(images.clone(), 1.0, torch.Generator().manual_seed(4)))


def test_real_transforms_posterize_accepts_zero_bits() -> None:
    transform = real_transforms(AugmentCfg(), 32, train=True)
    (rand_augment,) = [step for step in transform.transforms if isinstance(step, timm_aa.RandAugment)]
    (posterize,) = [op for op in rand_augment.ops if op.name == "PosterizeIncreasing"]
    posterize.prob, posterize.magnitude, posterize.magnitude_std = 1.0, 10, 0  # 4 - int(4 * 10 / 10) = 0 bits
    image = Image.fromarray(np.full((8, 8, 3), 200, dtype=np.uint8))
    assert np.array(posterize(image)).max() == 0  # black, where Pillow 13's posterize raises


def test_mixup_and_cutmix_settings_reach_timms_mixup() -> None:
    """Mixup and cutmix stay in the LightningModule, as timm's Mixup with the recipe's settings, one draw per batch
    (DeiT's mode); with both off there is no mixing and the targets stay hard labels."""
    from timm.data import Mixup

    from fdsl_app.models.module import ClassifierModule

    cfg = AugmentCfg(mixup=0.3, cutmix=0.7, mixup_switch_prob=0.25, label_smoothing=0.2)
    mixup = ClassifierModule._make_mixup(cfg, 10)
    assert isinstance(mixup, Mixup) and mixup.mode == "batch" and mixup.num_classes == 10
    assert (mixup.mixup_alpha, mixup.cutmix_alpha, mixup.switch_prob, mixup.label_smoothing) == (0.3, 0.7, 0.25, 0.2)
    assert ClassifierModule._make_mixup(AugmentCfg(mixup=0.0, cutmix=0.0), 10) is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_cuda_with_the_same_parameters() -> None:
    augment = DeviceAugment(AugmentCfg(hflip=0.5, vflip=0.5, re_prob=0.5), 32)
    images = _images(16, 1, 96).cuda()
    first = augment(images, seed=4)
    assert first.device.type == "cuda" and first.shape == (16, 3, 32, 32)
    assert torch.equal(first, augment(images, seed=4))
    plain = DeviceAugment(_cfg(hflip=0.5, vflip=0.5), 32)  # no RandAugment or noise: CPU and GPU agree
    torch.testing.assert_close(plain(images, seed=4).cpu(), plain(images.cpu(), seed=4), atol=1e-3, rtol=0)
