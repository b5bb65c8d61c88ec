"""The PyTorch chaos game (CPU here): bytes and occupancy against the C++ fast mode, determinism, rasters, flips,
divergence, argument errors, and the "torch" mode of an IFS family."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fdsl_app import render
from fdsl_app.families import create_family
from fdsl_app.render import RASTERS, torch_ifs
from fdsl_app.render.keys import sample_keys
from fdsl_app.render.torch_ifs import render_ifs_torch

SIERPINSKI = np.array(
    [[0.5, 0, 0, 0.5, 0, 0, 1 / 3], [0.5, 0, 0, 0.5, 0.5, 0, 1 / 3], [0.5, 0, 0, 0.5, 0.25, 0.5, 1 / 3]]
)
# Both maps expand: every chain leaves |x|, |y| <= 1e8 within a few dozen steps and restarts.
DIVERGENT = np.array([[2.0, 0.3, 0, 2.0, 1.0, 1.0, 0.5], [-3.0, 0, 0.2, 1.5, 0, 0, 0.5]])


def contractive_systems(count: int, seed: int, maps: int = 3) -> np.ndarray:
    """Random systems whose maps all have spectral norm < 0.8, probabilities proportional to |det|."""
    rng = np.random.default_rng(seed)
    systems = []
    while len(systems) < count:
        s = rng.uniform(-1, 1, (maps, 7))
        if all(np.linalg.norm(s[k, :4].reshape(2, 2), 2) < 0.8 for k in range(maps)):
            det = np.abs(s[:, 0] * s[:, 3] - s[:, 1] * s[:, 2])
            s[:, 6] = det / det.sum()
            systems.append(s)
    return np.stack(systems)


def _cpp(params: np.ndarray, size: int, n_maps: np.ndarray | None = None, **kw) -> np.ndarray:
    out = np.empty((len(params), size, size), np.uint8)
    return render.render_ifs(params, out, mode="fast", n_maps=n_maps, threads=1, **kw)


def _torch(params: np.ndarray, size: int, n_maps: np.ndarray | None = None, **kw) -> np.ndarray:
    return render_ifs_torch(params, n_maps, size=size, device="cpu", **kw).numpy()


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return float((a & b).sum() / (a | b).sum())


@pytest.mark.parametrize("raster", RASTERS)
def test_same_bytes_as_the_cpp_fast_mode_with_the_same_chains(raster: str) -> None:
    # Mixed map counts, a divergent system, a point count that leaves the last step partial, all 4 flips: the hash,
    # the float32 steps, the bbox, the pixel formula and every raster follow the C++ exactly.
    params, n_maps = render.pack_systems([SIERPINSKI, *contractive_systems(2, 1, maps=4), DIVERGENT])
    for chains, keep_aspect, fixed_point in [(16, False, False), (64, True, True)]:
        kw = dict(n_points=20_011, seeds=[3, 1, 4, 1], patch_seeds=[9, 2, 6, 5], flips=[0, 1, 2, 3], raster=raster)
        kw.update(chains=chains, burn_in=7, keep_aspect=keep_aspect, start_at_fixed_point=fixed_point)
        np.testing.assert_array_equal(_torch(params, 80, n_maps, **kw), _cpp(params, 80, n_maps, **kw))


@pytest.mark.parametrize("tiny", [1e-39, 1e-38])
def test_a_span_too_small_for_a_float_scale_draws_the_middle_as_in_cpp(tiny: float) -> None:
    """Maps to (tiny, tiny): a subnormal or near-subnormal span whose scale overflows; both draw the middle pixel."""
    params = np.array([[[0, 0, 0, 0, tiny, tiny, 0.5], [0, 0, 0, 0, 0, 0, 0.5]]])
    ours, theirs = _torch(params, 32, n_points=500, seeds=1), _cpp(params, 32, n_points=500, seeds=1)
    np.testing.assert_array_equal(ours, theirs)
    assert np.argwhere(ours[0] > 0).tolist() == [[15, 16]]


def test_occupancy_overlaps_the_cpp_fast_mode_at_a_high_point_count() -> None:
    params = np.concatenate([SIERPINSKI[None], contractive_systems(3, 2)])
    kw = dict(n_points=300_000, raster="point")
    ours = _torch(params, 128, seeds=[11, 12, 13, 14], **kw)  # 1024 chains of ~300 steps
    cpp_a = _cpp(params, 128, seeds=[1, 2, 3, 4], **kw)  # 16 chains of ~19k steps
    cpp_b = _cpp(params, 128, seeds=[5, 6, 7, 8], **kw)
    for i in range(len(params)):
        # The yardstick: two C++ renders of other seeds differ too where the attractor is sparse.
        noise = _iou(cpp_a[i], cpp_b[i])
        overlap = _iou(ours[i], cpp_a[i])
        assert overlap > 0.6 and overlap >= noise - 0.05, (i, overlap, noise)


def test_deterministic_seed_dependent_and_independent_of_threads() -> None:
    params = contractive_systems(3, 3)
    kw = dict(n_points=30_000, raster="patch", chains=256)
    first = _torch(params, 64, seeds=[1, 2, 3], **kw)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one_thread = _torch(params, 64, seeds=[1, 2, 3], **kw)
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_array_equal(first, one_thread)
    np.testing.assert_array_equal(first, _torch(params, 64, seeds=[1, 2, 3], **kw))
    other = _torch(params, 64, seeds=[4, 5, 6], **kw)
    assert all(not np.array_equal(first[i], other[i]) for i in range(3))


def test_shape_dtype_and_out() -> None:
    params = contractive_systems(2, 4)
    images = render_ifs_torch(params, None, size=48, n_points=5000, seeds=7, device="cpu")
    assert images.shape == (2, 48, 48) and images.dtype == torch.uint8 and images.device.type == "cpu"
    assert set(np.unique(images.numpy())) == {0, 127}
    out = torch.full((2, 48, 48), 3, dtype=torch.uint8)
    returned = render_ifs_torch(params, [3, 3], size=48, n_points=5000, seeds=7, out=out)
    assert returned is out and torch.equal(out, images)
    empty = render_ifs_torch(np.zeros((0, 2, 7)), None, size=48, n_points=10, seeds=[], device="cpu")
    assert empty.shape == (0, 48, 48)


def test_density_peaks_at_255_on_the_point_lit_set() -> None:
    params = np.concatenate([SIERPINSKI[None], contractive_systems(2, 5)])
    kw = dict(n_points=50_000, seeds=[1, 2, 3])
    density = _torch(params, 64, raster="density", **kw)
    points = _torch(params, 64, raster="point", **kw)
    assert (density.reshape(3, -1).max(axis=1) == 255).all()
    np.testing.assert_array_equal(density > 0, points > 0)


@pytest.mark.parametrize("raster", ["point", "patch"])
def test_flips_are_the_mirrors_of_flip_0(raster: str) -> None:
    params = np.repeat(contractive_systems(1, 6), 4, axis=0)
    images = _torch(params, 64, n_points=20_000, seeds=5, raster=raster, flips=[0, 1, 2, 3])
    np.testing.assert_array_equal(images[2], np.fliplr(images[0]))
    np.testing.assert_array_equal(images[1], np.flipud(images[0]))
    np.testing.assert_array_equal(images[3], np.flipud(np.fliplr(images[0])))


def test_patch_variants_cover_the_point_pixels() -> None:
    params = contractive_systems(2, 7)
    kw = dict(n_points=20_000, seeds=[1, 2])
    points, full = _torch(params, 64, raster="point", **kw), _torch(params, 64, raster="full_patch", **kw)
    union = _torch(params, 64, raster="union_patch", **kw)
    assert (full[(union > 0)] > 0).all() and (full > 0).sum() > (points > 0).sum()
    # A full patch at offset (+1, +1) covers the pixel one row and one column further on than its point; y points
    # up, so a row further on is one row higher in the image.
    shifted = np.zeros_like(points)
    shifted[:, :-1, 1:] = points[:, 1:, :-1]
    assert (full[shifted > 0] > 0).all()


def test_divergent_system_terminates_and_draws_its_start_region() -> None:
    images = _torch(DIVERGENT[None], 64, n_points=50_000, seeds=1, chains=64)
    assert (images > 0).sum() > 0


@pytest.mark.parametrize(
    "kwargs, error, named",
    [
        (dict(params=np.zeros((2, 7))), ValueError, "params"),
        (dict(params=np.zeros((1, 9, 7))), ValueError, "maps per system"),
        (dict(n_maps=[5]), ValueError, "n_maps"),
        (dict(params=SIERPINSKI[None] * [1, 1, 1, 1, 1, 1, 2]), ValueError, "probabilities"),
        (dict(params=SIERPINSKI[None] * [np.nan, 1, 1, 1, 1, 1, 1]), ValueError, "finite"),
        (dict(params="abc"), TypeError, "params"),
        (dict(size=12), ValueError, "pad"),
        (dict(size=32.0), TypeError, "size"),
        (dict(n_points=0), ValueError, "n_points"),
        (dict(chains=0), ValueError, "chains"),
        (dict(burn_in=-1), ValueError, "burn_in"),
        (dict(raster="splat"), ValueError, "raster"),
        (dict(flips=4), ValueError, "flips"),
        (dict(seeds=-1), ValueError, "seeds"),
        (dict(seeds=1.5), TypeError, "seeds"),
        (dict(seeds=[1, 2]), ValueError, "seeds"),
        (dict(patch_seeds=[1, 2]), ValueError, "patch_seeds"),
        (dict(device="nowhere"), ValueError, "device"),
        (dict(out=torch.zeros((1, 32, 32), dtype=torch.int32)), TypeError, "out"),
        (dict(out=torch.zeros((1, 16, 16), dtype=torch.uint8)), ValueError, "out"),
        (dict(out=np.zeros((1, 32, 32), np.uint8)), TypeError, "out"),
    ],
)
def test_bad_arguments_raise_naming_them(kwargs: dict, error: type, named: str) -> None:
    args = dict(params=SIERPINSKI[None], n_maps=None, size=32, n_points=100, seeds=1, device="cpu") | kwargs
    if "out" in kwargs:
        args.pop("device")  # the render runs on out's device
    with pytest.raises(error, match=named):
        render_ifs_torch(args.pop("params"), args.pop("n_maps"), **args)


def test_torch_mode_of_a_family_renders() -> None:
    fam = create_family("onepfrac", classes=4, mode="torch", image_size=64, n_points=20_000)
    params = fam.generate(0)
    classes = np.arange(4, dtype=np.int64)
    keys = sample_keys(0, 0, classes)
    images = fam.render(params, classes, np.zeros(4, np.int64), keys, fam.new_batch(4))
    assert images.shape == (4, 64, 64) and images.dtype == np.uint8
    assert (images > 0).any(axis=(1, 2)).all()
    again = fam.render(params, classes, np.zeros(4, np.int64), keys, fam.new_batch(4))
    np.testing.assert_array_equal(images, again)
    with pytest.raises(ValueError, match="color"):
        create_family("onepfrac", classes=4, mode="torch", color=True)


@pytest.mark.parametrize("raster", ["patch", "density"])
def test_working_chunks_do_not_change_the_bytes(raster: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Small chunks split the map choices, the pixel mapping and the patch pass (several images per slice, not all).
    params = contractive_systems(5, 8)
    kw = dict(n_points=20_000, seeds=[1, 2, 3, 4, 5], raster=raster, chains=64)
    whole = _torch(params, 40, **kw)
    monkeypatch.setattr(torch_ifs, "_WORK_CPU", 5000)
    np.testing.assert_array_equal(_torch(params, 40, **kw), whole)
