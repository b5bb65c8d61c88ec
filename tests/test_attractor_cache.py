"""Mode cached: the patch draw has the distribution of the reference's per-point paste, the cache file is built once
per node and shared, and the device draw gives the loader's images."""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest
import torch

from fdsl_app import render
from fdsl_app.data.datamodule import FamilyDataModule
from fdsl_app.data.synthetic import FormulaDataset
from fdsl_app.families import cache, create_family
from fdsl_app.render.keys import sample_keys

SIDE, POINTS, DRAWS = 96, 20_000, 600


@pytest.fixture(scope="module")
def onepfrac():
    family = create_family("onepfrac", classes=4, image_size=SIDE, n_points=POINTS)
    return family, family.generate(0)


def _renders(family, params, mode: str, count: int) -> np.ndarray:
    """`count` renders of class 0 (epoch e, one per key), in `mode`."""
    fam = create_family("onepfrac", classes=4, image_size=SIDE, n_points=POINTS, mode=mode)
    keys = sample_keys(5, 0, np.arange(count))
    zeros = np.zeros(count, np.int64)
    return fam.render(params, zeros, zeros, keys, fam.new_batch(count)) > 0


def test_patch_draws_have_the_distribution_of_the_per_point_paste(onepfrac):
    """Against reference renders (a 3x3 mask in 1..511 per point, last writer wins): the same support, every
    covered pixel lit with probability 256/511, the same lit share per image and no correlation between neighbours
    that the paste would have and the draw not (the paste's is -0.002 at most)."""
    family, params = onepfrac
    exact, drawn = _renders(family, params, "reference", DRAWS), _renders(family, params, "cached", DRAWS)
    support = render.render_ifs(params.arrays["params"][:1], np.empty((1, SIDE, SIDE), np.uint8), n_points=POINTS,
                                raster="full_patch")[0] > 0  # fmt: skip
    for images in (exact, drawn):
        assert not images[:, ~support].any() and images.any(axis=0)[support].all()
    sigma = np.sqrt(0.25 / DRAWS)  # of a per-pixel rate
    rate_exact, rate_drawn = exact[:, support].mean(0), drawn[:, support].mean(0)
    assert abs(rate_exact.mean() - 256 / 511) < 5 * sigma / np.sqrt(support.sum())
    assert abs(rate_drawn.mean() - 256 / 511) < 5 * sigma / np.sqrt(support.sum())
    assert np.abs(rate_exact - rate_drawn).mean() < 1.2 * np.sqrt(2 / np.pi) * np.sqrt(2) * sigma  # E|N(0, 2s^2)|
    share_exact, share_drawn = exact[:, support].mean(1), drawn[:, support].mean(1)
    assert abs(share_exact.mean() - share_drawn.mean()) < 5 * share_exact.std() / np.sqrt(DRAWS)
    assert 0.8 < share_drawn.std() / share_exact.std() < 1.25
    pairs = support[:, :-1] & support[:, 1:]
    for images in (exact, drawn):
        left, right = images[:, :, :-1][:, pairs].astype(float), images[:, :, 1:][:, pairs].astype(float)
        assert abs(np.corrcoef(left.ravel(), right.ravel())[0, 1]) < 0.01


def test_fixed_masks_repeat_every_epoch_fresh_masks_do_not(onepfrac):
    family, params = onepfrac
    zeros = np.zeros(4, np.int64)
    for fixed in (False, True):
        fam = create_family("onepfrac", classes=4, image_size=SIDE, n_points=POINTS, fixed_masks=fixed)
        epoch0 = fam.render(params, np.arange(4), zeros, sample_keys(1, 0, np.arange(4)), fam.new_batch(4))
        epoch1 = fam.render(params, np.arange(4), zeros, sample_keys(1, 1, np.arange(4)), fam.new_batch(4))
        assert np.array_equal(epoch0, epoch1) == fixed


def test_the_loader_draws_the_same_images_with_any_number_of_workers(onepfrac):
    family, params = onepfrac
    family.prepare(params)
    data = FormulaDataset(family, params, seed=3, samples_per_epoch=16)
    alone = data.render_batch(range(16))[0]
    from torch.utils.data import DataLoader

    from fdsl_app.data.synthetic import collate_samples

    loader = DataLoader(data, batch_size=8, num_workers=2, collate_fn=collate_samples)
    assert torch.equal(torch.cat([images for images, _ in loader]), alone)


def test_a_cache_file_is_built_once_and_then_mapped(tmp_path, onepfrac):
    family, params = onepfrac
    systems, n_maps = family.all_systems(params)
    first = cache.open_cache(systems, n_maps, side=SIDE, n_points=POINTS, dilate=True, cache_dir=tmp_path)
    stamp = first.path.stat().st_mtime_ns
    again = cache.open_cache(systems, n_maps, side=SIDE, n_points=POINTS, dilate=True, cache_dir=tmp_path)
    assert again.path == first.path and again.path.stat().st_mtime_ns == stamp
    assert not again.words.flags.writeable and np.array_equal(again.words, first.words)
    want = render.build_attractor_cache(systems, n_maps=n_maps, size=SIDE, n_points=POINTS, dilate=True)
    assert np.array_equal(first.words, want)
    other = cache.open_cache(systems, n_maps, side=SIDE, n_points=POINTS + 1, dilate=True, cache_dir=tmp_path)
    assert other.path != first.path  # other inputs, another file
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".lock", ".lock", ".npy", ".npy"]  # no temporary left


def _open_in_a_process(args):
    systems, n_maps, folder = args
    opened = cache.open_cache(systems, n_maps, side=SIDE, n_points=POINTS, dilate=False, cache_dir=folder)
    return str(opened.path), int(opened.path.stat().st_ino), int(np.asarray(opened.words).sum() % 2**31)


def test_processes_opening_one_cache_together_build_it_once(tmp_path, onepfrac):
    family, params = onepfrac
    systems, n_maps = family.all_systems(params)
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        results = pool.map(_open_in_a_process, [(systems, n_maps, tmp_path)] * 3)
    assert len(set(results)) == 1  # one file (one inode: nobody replaced another's build), the same bits


def test_an_unwritable_cache_folder_says_which(tmp_path, onepfrac):
    family, params = onepfrac
    blocked = tmp_path / "file"
    blocked.write_text("")
    with pytest.raises(ValueError, match="cannot create the attractor cache folder .*data.cache_dir"):
        family.prepare(params, cache_dir=blocked / "caches")


def test_the_device_draw_gives_the_loaders_images():
    """draw=device (here on the CPU): the loader brings draw plans and the module draws them in torch; the images
    are the C++ draws of the same keys, within one gray level."""
    settings = {"classes": 4, "image_size": 64, "n_points": 5000}
    on_cpu = FamilyDataModule("onepfrac", settings, image_size=32, batch_size=8, samples_per_epoch=16, draw="cpu")
    on_device = FamilyDataModule("onepfrac", settings, image_size=32, batch_size=8, samples_per_epoch=16,
                                 draw="device")  # fmt: skip
    for loader in ("train_dataloader", "val_dataloader"):
        images, labels = next(iter(getattr(on_cpu, loader)()))
        plans, same_labels = next(iter(getattr(on_device, loader)()))
        batch = len(labels)  # 8 training samples, the 4 classes' validation renders
        assert plans.shape == (batch, 7) and plans.dtype == torch.int64 and torch.equal(labels, same_labels)
        # The plans stay on the host through the transfer; only the labels move.
        kept, moved = on_device.transfer_batch_to_device((plans, labels), torch.device("cpu"), 0)
        assert kept is plans and torch.equal(moved, labels)
        drawn = on_device.draw_on_device(plans, "cpu")
        assert drawn.shape == images.shape == (batch, 1, 32, 32)
        assert (drawn.int() - images.int()).abs().max() <= 1


def test_bad_draw_settings_are_refused():
    with pytest.raises(ValueError, match="draw must be one of auto, cpu, device"):
        FamilyDataModule("onepfrac", {"classes": 4}, draw="gpu")
    with pytest.raises(ValueError, match="draw=device needs the attractor cache: onepfrac setting mode=cached"):
        FamilyDataModule("onepfrac", {"classes": 4, "mode": "fast"}, draw="device")
    with pytest.raises(ValueError, match="mode cached .gray only"):
        create_family("fractaldb", color=True)
    with pytest.raises(ValueError, match="raster=.density. is not allowed"):
        create_family("onepfrac", raster="density")
