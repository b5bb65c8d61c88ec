"""Formula-space geometric augmentation: the crop distribution equals torchvision's RandomResizedCrop, and a crop
drawn on the points matches the crop of a full render."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.transforms import RandomResizedCrop

from fdsl_app import render
from fdsl_app.data.datamodule import FamilyDataModule
from fdsl_app.render.formula_space import resized_crop_boxes, sample_crops, sample_flips
from fdsl_app.render.keys import sample_keys

SIERPINSKI = np.array(
    [[[0.5, 0, 0, 0.5, 0, 0, 1 / 3], [0.5, 0, 0, 0.5, 0.5, 0, 1 / 3], [0.5, 0, 0, 0.5, 0.25, 0.5, 1 / 3]]]
)


def _ks(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic."""
    grid = np.sort(np.concatenate([a, b]))
    return float(
        np.max(np.abs(np.searchsorted(np.sort(a), grid) / len(a) - np.searchsorted(np.sort(b), grid) / len(b)))
    )


@pytest.mark.parametrize("scale", [(0.08, 1.0), (0.35, 1.0), (0.9, 1.0)])
def test_crop_distribution_equals_torchvisions_random_resized_crop(scale):
    n, side = 20_000, 1000
    ours = sample_crops(sample_keys(1, 0, np.arange(n)), scale, full_size=side)
    torch.manual_seed(0)
    image = torch.empty(1, side, side)
    theirs = np.array([RandomResizedCrop.get_params(image, list(scale), [3 / 4, 4 / 3]) for _ in range(n)], float)
    top, left, h, w = (theirs[:, k] / side for k in range(4))  # torchvision: (i, j, h, w) in pixels
    for name, a, b in [("area", ours[:, 2] * ours[:, 3], w * h), ("aspect", ours[:, 2] / ours[:, 3], w / h),
                       ("left", ours[:, 0], left), ("top", ours[:, 1], top)]:  # fmt: skip
        assert _ks(a, b) < 0.03, name
    assert (ours[:, 0] >= 0).all() and (ours[:, 0] + ours[:, 2] <= 1 + 1e-12).all()


@pytest.mark.parametrize(("height", "width"), [(10, 100), (100, 10), (50, 50)])
def test_no_fitting_box_falls_back_as_torchvision_does(height, width):
    """Boxes that cannot fit (90% of a 1:10 image at aspects 3/4..4/3): the centre crop with the aspect clamped."""
    u = np.random.default_rng(0).random((8, 22))
    ours = resized_crop_boxes(u[:, :10], u[:, 10:20], u[:, 20:], height, width, scale=(0.9, 1.0))
    torch.manual_seed(0)
    image = torch.empty(1, height, width)
    top, left, h, w = RandomResizedCrop.get_params(image, [0.9, 1.0], [3 / 4, 4 / 3])
    if height == width:  # everything fits a square: no fallback, but the boxes still lie inside the image
        assert (ours[:, 0] + ours[:, 2] <= width).all() and (ours[:, 1] + ours[:, 3] <= height).all()
    else:
        assert (ours == [left, top, w, h]).all()


def test_flip_probabilities_and_determinism():
    keys = sample_keys(2, 0, np.arange(20_000))
    flips = sample_flips(keys, hflip=0.5, vflip=0.25)
    assert abs((flips & 2 > 0).mean() - 0.5) < 0.015 and abs((flips & 1 > 0).mean() - 0.25) < 0.015
    assert np.array_equal(flips, sample_flips(keys, 0.5, 0.25))
    assert not sample_flips(keys, 0.0, 0.0).any()


def _downsample_any(image: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    """Pixel-space crop of `image` to `box` (fractions) and nearest block resize: lit if any source pixel is."""
    full = image.shape[0]
    left, top, w, h = box
    out = np.zeros((size, size), bool)
    rows, cols = np.nonzero(image)
    r = np.floor((rows / full - top) / h * size).astype(int)
    c = np.floor((cols / full - left) / w * size).astype(int)
    keep = (r >= 0) & (r < size) & (c >= 0) & (c < size)
    out[r[keep], c[keep]] = True
    return out


@pytest.mark.parametrize("box", [[0.0, 0.0, 1.0, 1.0], [0.1, 0.3, 0.5, 0.4], [0.45, 0.05, 0.5, 0.6]])
def test_a_crop_drawn_on_the_points_equals_the_crop_of_the_full_render(box):
    full_size, size = 1024, 64
    kw = dict(mode="fast", n_points=200_000, seeds=5, raster="point")
    full = render.render_ifs(SIERPINSKI, np.empty((1, full_size, full_size), np.uint8), **kw)[0]
    cropped = render.render_ifs(SIERPINSKI, np.empty((1, size, size), np.uint8), crops=[box],
                                crop_pad_fraction=6 / full_size, **kw)[0]  # fmt: skip
    expected = _downsample_any(full, np.array(box), size)
    got = cropped > 0
    iou = (got & expected).sum() / (got | expected).sum()
    assert iou > 0.9, iou


def test_crops_need_fast_mode_and_valid_boxes():
    out = np.empty((1, 32, 32), np.uint8)
    with pytest.raises(ValueError, match="need mode='fast'"):
        render.render_ifs(SIERPINSKI, out, crops=[[0, 0, 1, 1]])
    with pytest.raises(ValueError, match="must lie inside the unit square"):
        render.render_ifs(SIERPINSKI, out, mode="fast", crops=[[0.6, 0, 0.5, 1]])
    with pytest.raises(ValueError, match=r"crops must have shape \(1, 4\)"):
        render.render_ifs(SIERPINSKI, out, mode="fast", crops=[[0, 0, 1]])


@pytest.mark.parametrize("family, settings, path", [
    ("onepfrac", {}, "attractor cache, each sample's patch masks (fresh every epoch), crop and flips drawn in the "
                     "loader (C++)"),
    ("onepfrac", {"fixed_masks": True}, "attractor cache, each sample's patch masks (fixed per (class, instance))"),
    ("onepfrac", {"mode": "fast"}, "formula-space crop + device photometric augmentation"),
    ("onepfrac", {"mode": "reference"}, "device augmentation"),
    ("rcdb", {}, "device augmentation"),
])  # fmt: skip
def test_the_datamodule_picks_the_fastest_path_and_says_which(family, settings, path):
    settings = {"classes": 4, "image_size": 48, **({"n_points": 3000} if family == "onepfrac" else {})} | settings
    dm = FamilyDataModule(family, settings, image_size=32, batch_size=8, samples_per_epoch=16)
    assert dm.path.startswith(path)
    dm.setup("fit")
    images, labels = next(iter(dm.train_dataloader()))
    side = 48 if path.endswith("device augmentation") else 32
    assert images.shape == (8, 1, side, side) and images.dtype == torch.uint8
