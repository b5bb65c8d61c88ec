"""The attractor cache: its build is the packed reference render, a whole-image draw at the cache's side is the
reference render of that raster, and crops, resizes and flips follow the spec restated in numpy here."""

from __future__ import annotations

import math

import numpy as np
import pytest
from kernels import outputs_per_kernel
from mask_streams import stream_key, union_mask

from fdsl_app import render
from fdsl_app.families.sampling import fractaldb_candidates

THRESHOLD = 2151686160  # floor(2**32 * 256 / 511)
GOLDEN = 0x9E3779B9


def _systems(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    params, n_maps = fractaldb_candidates(np.random.default_rng(seed), count, param_range=1.0)
    return render.pack_systems([system[:n] for system, n in zip(params, n_maps, strict=True)])


def pack(bits: np.ndarray) -> np.ndarray:
    """(K, S, S) bool -> the cache layout (K, S, ceil(S / 64)) uint64: bit c % 64 of word c // 64, LSB first."""
    k, side, _ = bits.shape
    padded = np.zeros((k, side, render.cache_words(side) * 64), bool)
    padded[..., :side] = bits
    return np.packbits(padded, axis=-1, bitorder="little").view("<u8")


def unpack(cache: np.ndarray) -> np.ndarray:
    """The cache's (K, S, 64 W) bits, padding columns included."""
    return np.unpackbits(np.ascontiguousarray(cache).view(np.uint8), axis=-1, bitorder="little").astype(bool)


def _mix32(h: np.ndarray) -> np.ndarray:
    h = h.astype(np.uint32)
    h ^= h >> np.uint32(16)
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0xC2B2AE35)
    h ^= h >> np.uint32(16)
    return h


def lit_pixels(bits: np.ndarray, raster: str, patch_seed: int) -> np.ndarray:
    """The spec's lit pixels of one (S, S) cache image, in the flip-0 frame."""
    side = bits.shape[0]
    if raster in ("point", "full_patch"):
        return bits.copy()
    if raster == "patch":
        key = np.uint32(stream_key(patch_seed, 3) & 0xFFFFFFFF)
        pidx = np.arange(side * side, dtype=np.uint32).reshape(side, side)
        with np.errstate(over="ignore"):
            return bits & (_mix32((pidx * np.uint32(GOLDEN)) ^ key) < THRESHOLD)
    mask = union_mask(patch_seed)
    lit = np.zeros_like(bits)
    for dr in range(3):
        for dc in range(3):
            if mask >> (8 - (3 * dr + dc)) & 1:  # (r, c) |= bit(r + 1 + dr, c - 1 - dc)
                lit[: side - 1 - dr, 1 + dc :] |= bits[1 + dr :, : side - 1 - dc]
    return lit


def weights(n: int, out: int) -> tuple[list[int], list[np.ndarray]]:
    """The spec's resample taps of one axis: first tap and float32 weights per output."""
    scale = n / out
    support = max(scale, 1.0)
    firsts, ws = [], []
    for i in range(out):
        center = (i + 0.5) * scale
        lo = max(0, math.floor(center - support + 0.5))
        hi = min(n, math.floor(center + support + 0.5))
        w = np.array([max(0.0, 1.0 - abs((j + 0.5 - center) / support)) for j in range(lo, hi)])
        firsts.append(lo)
        ws.append((w / np.cumsum(w)[-1]).astype(np.float32))  # the sum in order of j
    return firsts, ws


def gray(acc: np.ndarray) -> np.ndarray:
    return np.minimum(np.floor(acc * np.float32(127) + np.float32(0.5)), np.float32(127)).astype(np.uint8)


def flipped(image: np.ndarray, flip: int) -> np.ndarray:
    if flip & 1:
        image = image[::-1]
    if flip & 2:
        image = image[:, ::-1]
    return np.ascontiguousarray(image)


def draw_reference(lit: np.ndarray, crop, flip: int, out: int) -> np.ndarray:
    """Steps 2-5 of the spec in float32, summed as the C++ kernel sums (vertical first, taps in order): exact."""
    left, top, w, h = crop
    region = lit[top : top + h, left : left + w].astype(np.float32)
    (lo_y, wy), (lo_x, wx) = weights(h, out), weights(w, out)
    colsum = np.zeros((out, w), np.float32)
    for i in range(out):
        for t, weight in enumerate(wy[i]):
            colsum[i] += weight * region[lo_y[i] + t]
    acc = np.zeros((out, out), np.float32)
    for x in range(out):
        for k, weight in enumerate(wx[x]):
            acc[:, x] += weight * colsum[:, lo_x[x] + k]
    return flipped(gray(acc), flip)


def draw_reference_float64(lit: np.ndarray, crop, flip: int, out: int) -> np.ndarray:
    """The same resize as matrices in float64, horizontal first (the spec's order): within one gray level."""
    left, top, w, h = crop
    region = lit[top : top + h, left : left + w].astype(np.float64)
    matrices = []
    for n in (h, w):
        m = np.zeros((out, n))
        for i, (lo, wt) in enumerate(zip(*weights(n, out), strict=True)):
            m[i, lo : lo + len(wt)] = wt
        matrices.append(m)
    acc = matrices[0] @ (region @ matrices[1].T)  # horizontal, then vertical
    return flipped(np.minimum(np.floor(127 * acc + 0.5), 127).astype(np.uint8), flip)


def _draw(cache, out_side, **kw):
    batch = max(np.size(kw["index"]), np.size(kw["patch_seeds"]))
    return render.draw_cached(cache, np.empty((batch, out_side, out_side), np.uint8), threads=1, **kw)


@pytest.fixture(scope="module")
def systems():
    return _systems(3, 5)


@pytest.mark.parametrize("side", [64, 90])
@pytest.mark.parametrize("dilate", [False, True])
def test_build_is_the_packed_reference_render(systems, side, dilate):
    params, n_maps = systems
    cache = render.build_attractor_cache(params, n_maps=n_maps, size=side, n_points=20_000, dilate=dilate, threads=2)
    assert cache.shape == (3, side, render.cache_words(side)) and cache.dtype == np.uint64
    images = render.render_ifs(params, np.empty((3, side, side), np.uint8), n_maps=n_maps, n_points=20_000,
                               raster="full_patch" if dilate else "point")  # fmt: skip
    bits = unpack(cache)
    assert np.array_equal(bits[..., :side], images != 0)
    assert not bits[..., side:].any()  # padding columns are 0


@pytest.mark.parametrize("raster", ["point", "full_patch", "union_patch"])
@pytest.mark.parametrize("flip", [0, 1, 2, 3])
def test_whole_image_at_the_cache_side_is_the_reference_render(systems, raster, flip):
    params, n_maps = systems
    side = 100
    cache = render.build_attractor_cache(params, n_maps=n_maps, size=side, n_points=20_000,
                                         dilate=raster == "full_patch")  # fmt: skip
    seeds = [3, 2**40 + 1, 77]
    got = _draw(cache, side, index=[0, 1, 2], patch_seeds=seeds, raster=raster, flips=flip)
    want = render.render_ifs(params, np.empty((3, side, side), np.uint8), n_maps=n_maps, n_points=20_000,
                             raster=raster, patch_seeds=seeds, flips=flip)  # fmt: skip
    assert np.array_equal(got, want)


def test_patch_kind_at_identity(systems):
    params, n_maps = systems
    side = 128
    cache = render.build_attractor_cache(params, n_maps=n_maps, size=side, n_points=20_000, dilate=True)
    support = unpack(cache)[0, :, :side]
    n = 200
    images = _draw(cache, side, index=0, patch_seeds=np.arange(n) * 7919, raster="patch")
    lit = images > 0
    assert set(np.unique(images)) <= {0, 127}
    assert not (lit & ~support).any()  # a subset of the full-patch support
    shares = lit.sum(axis=(1, 2)) / support.sum()
    assert abs(shares.mean() - 256 / 511) < 0.005
    assert len({image.tobytes() for image in images}) == n  # each seed its own pixels
    for b in (0, 1, 17):  # exactly the spec's hash rule
        assert np.array_equal(lit[b], lit_pixels(support, "patch", b * 7919))


@pytest.mark.parametrize("raster", ["point", "full_patch", "patch", "union_patch"])
@pytest.mark.parametrize("out_side", [1, 24, 64])
def test_crop_and_resize_follow_the_spec(raster, out_side):
    rng = np.random.default_rng(out_side)
    side, batch = 100, 12
    bits = rng.random((2, side, side)) < 0.25
    bits[1, 40:60, 10:90] = True  # a solid block: interior values at 127
    cache = pack(bits)
    widths, heights = rng.integers(1, side + 1, batch), rng.integers(1, side + 1, batch)
    heights[:4] = widths[:4]
    crops = np.stack([rng.integers(0, side - widths + 1), rng.integers(0, side - heights + 1), widths, heights], 1)
    crops[0] = (0, 0, side, side)
    index, seeds, flips = np.arange(batch) % 2, rng.integers(0, 2**63, batch), rng.integers(0, 4, batch)
    got = _draw(cache, out_side, index=index, patch_seeds=seeds, raster=raster, crops=crops, flips=flips)
    for b in range(batch):
        lit = lit_pixels(bits[index[b]], raster, int(seeds[b]))
        assert np.array_equal(got[b], draw_reference(lit, crops[b], flips[b], out_side)), f"sample {b}"
        assert np.abs(got[b].astype(int) - draw_reference_float64(lit, crops[b], flips[b], out_side)).max() <= 1


def test_downscale_by_two():
    # 8 -> 4: output 1 reads inputs 1..4 with weights 1/8, 3/8, 3/8, 1/8 (support 2, PIL's antialiased bilinear).
    bits = np.zeros((1, 8, 8), bool)
    bits[0, 2:4, 2:4] = True
    out = _draw(pack(bits), 4, index=0, patch_seeds=0, raster="point")[0]
    assert out[1, 1] == 71  # (3/4)^2 * 127 = 71.4
    bits[0, 1:5, 1:5] = True
    assert _draw(pack(bits), 4, index=0, patch_seeds=0, raster="point")[0][1, 1] == 127


def test_matches_pil_resize_within_one_gray_level():
    from PIL import Image

    rng = np.random.default_rng(9)
    side = 96
    bits = rng.random((1, side, side)) < 0.3
    for crop, out_side in [((0, 0, 96, 96), 40), ((10, 5, 71, 60), 32), ((30, 20, 20, 25), 48)]:
        got = _draw(pack(bits), out_side, index=0, patch_seeds=0, raster="point", crops=[crop])[0]
        left, top, w, h = crop
        image = Image.fromarray((bits[0] * 127).astype(np.uint8)).crop((left, top, left + w, top + h))
        pil = np.asarray(image.resize((out_side, out_side), Image.BILINEAR))
        assert np.abs(got.astype(int) - pil).max() <= 1, crop


def test_matches_torch_antialiased_bilinear_within_one_gray_level():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(10)
    side = 120
    bits = rng.random((1, side, side)) < 0.3
    for crop, out_side in [((0, 0, 120, 120), 56), ((10, 5, 101, 80), 64), ((30, 20, 25, 30), 64)]:
        got = _draw(pack(bits), out_side, index=0, patch_seeds=0, raster="point", crops=[crop])[0]
        left, top, w, h = crop
        region = torch.from_numpy(bits[0, top : top + h, left : left + w].astype(np.float32))[None, None]
        acc = torch.nn.functional.interpolate(region, size=(out_side, out_side), mode="bilinear", antialias=True,
                                              align_corners=False)[0, 0].numpy()  # fmt: skip
        assert np.abs(got.astype(int) - gray(acc.clip(0, None))).max() <= 1, crop


def test_threads_batches_and_scalars(systems):
    params, n_maps = systems
    cache = render.build_attractor_cache(params, n_maps=n_maps, size=80, n_points=10_000, dilate=True)
    rng = np.random.default_rng(0)
    batch = 16
    w = rng.integers(8, 81, batch)
    crops = np.stack([rng.integers(0, 81 - w), rng.integers(0, 81 - w), w, w], 1).astype(np.int32)
    kw = dict(index=rng.integers(0, 3, batch), patch_seeds=rng.integers(0, 2**64, batch, dtype=np.uint64),
              raster="patch", crops=crops, flips=rng.integers(0, 4, batch))  # fmt: skip
    one = render.draw_cached(cache, np.empty((batch, 32, 32), np.uint8), threads=1, **kw)
    two = render.draw_cached(cache, np.empty((batch, 32, 32), np.uint8), threads=2, **kw)
    assert np.array_equal(one, two)
    for b in (0, 5, 15):  # a batch is its samples drawn one by one
        alone = render.draw_cached(cache, np.empty((1, 32, 32), np.uint8), index=int(kw["index"][b]),
                                   patch_seeds=int(kw["patch_seeds"][b]), raster="patch", crops=crops[b : b + 1],
                                   flips=int(kw["flips"][b]))  # fmt: skip
        assert np.array_equal(alone[0], one[b])
    # Scalars broadcast; crops=None is the whole image.
    whole = render.draw_cached(cache, np.empty((2, 80, 80), np.uint8), index=1, patch_seeds=5, raster="full_patch")
    assert np.array_equal(whole[0], whole[1])
    assert np.array_equal(whole[0] > 0, unpack(cache)[1, :, :80])


def test_memmaps(systems, tmp_path):
    params, n_maps = systems
    path = tmp_path / "cache.u64"
    shape = (3, 70, render.cache_words(70))
    writable = np.memmap(path, dtype=np.uint64, mode="w+", shape=shape)
    built = render.build_attractor_cache(params, n_maps=n_maps, size=70, n_points=10_000, dilate=False, out=writable)
    assert built is writable
    writable.flush()
    del writable, built
    cache = np.memmap(path, dtype=np.uint64, mode="r", shape=shape)
    assert not cache.flags.writeable
    in_memory = np.array(cache)
    kw = dict(index=[2, 0], patch_seeds=[1, 2], raster="union_patch", crops=[(3, 4, 50, 60), (0, 0, 70, 70)], flips=3)
    assert np.array_equal(_draw(cache, 48, **kw), _draw(in_memory, 48, **kw))


def test_generic_and_avx2_kernels_give_identical_bytes():
    code = (
        "import numpy as np, hashlib; from fdsl_app import render;"
        "rng = np.random.default_rng(1); cache = rng.integers(0, 2**64, (2, 150, 3), dtype=np.uint64);"
        "w = rng.integers(1, 151, 64); crops = np.stack([150 - w, 150 - w, w, w], 1);"
        "h = hashlib.sha256();"
        "[h.update(render.draw_cached(cache, np.empty((64, t, t), np.uint8), index=np.arange(64) % 2,"
        " patch_seeds=np.arange(64), raster=r, crops=crops, flips=np.arange(64) % 4).tobytes())"
        " for r in render.CACHE_RASTERS for t in (7, 64)];"
        "print(render.fast_kernel(), h.hexdigest())"
    )
    runs = outputs_per_kernel(code)
    assert runs["avx2"] == runs["generic"]


CACHE = pack(np.ones((2, 40, 40), bool))


def _bad_draw(cache=CACHE, out=None, **kw):
    args = dict(index=0, patch_seeds=0, raster="point") | kw
    return render.draw_cached(cache, np.zeros((1, 16, 16), np.uint8) if out is None else out, **args)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(cache=CACHE.astype(np.int64)), TypeError, "cache must have dtype uint64"),
        (dict(cache=CACHE[0]), ValueError, "cache must have 3 dimensions"),
        (dict(cache=CACHE[..., :0]), ValueError, r"cache must have shape \(systems, side, ceil\(side / 64\)\)"),
        (dict(cache=np.zeros((1, 0, 0), np.uint64)), ValueError, r"cache.shape\[1\] \(the image side\) must be in"),
        (dict(cache=CACHE[:, ::2]), ValueError, "cache must be C-contiguous"),
        (dict(out=np.zeros((1, 16, 16), np.float32)), TypeError, "out must have dtype uint8"),
        (dict(out=[[0] * 16] * 16), TypeError, "out must be a numpy array"),
        (dict(out=np.zeros((1, 16, 15), np.uint8)), ValueError, r"out must be \(B, T, T\)"),
        (dict(out=np.broadcast_to(np.zeros((1, 16, 16), np.uint8), (1, 16, 16))), ValueError, "out must be writeable"),
        (dict(index=2), ValueError, r"index\[0\] must be in \[0, 2\)"),
        (dict(index=-1), ValueError, "index must be >= 0"),
        (dict(index=[0, 1]), ValueError, r"index must be a scalar or have shape \(1,\)"),
        (dict(patch_seeds=0.5), TypeError, "patch_seeds must be an int"),
        (dict(crops=[(0.0, 0.0, 4.0, 4.0)]), TypeError, "crops must be an array of ints"),
        (dict(crops=[(0, 0, 4)]), ValueError, r"crops must have shape \(1, 4\)"),
        (dict(crops=[(30, 0, 11, 4)]), ValueError, r"crops\[0\] = \(30, 0, 11, 4\) must lie inside the 40 x 40"),
        (dict(crops=[(0, 0, 0, 4)]), ValueError, r"crops\[0\] = .* width, height >= 1"),
        (dict(crops=[(-1, 0, 4, 4)]), ValueError, r"crops\[0\] = \(-1, 0, 4, 4\)"),
        (dict(crops=[(0, 0, 2**40, 4)]), ValueError, "crops must be in"),
        (dict(flips=4), ValueError, r"flips\[0\] must be in \[0, 3\]"),
        (dict(raster="density"), ValueError, "raster must be one of 'point', 'full_patch', 'patch', 'union_patch'"),
        (dict(threads=0), ValueError, "threads must be in"),
    ],
)
def test_bad_draw_arguments_raise_naming_them(kwargs, error, match):
    with pytest.raises(error, match=match):
        _bad_draw(**kwargs)


GOOD = np.array([[[0.5, 0, 0, 0.5, 0, 0, 0.5], [0.5, 0, 0, 0.5, 0.5, 0.5, 0.5]]])


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(size=0), ValueError, "size must be in"),
        (dict(size=12), ValueError, "larger than twice pad"),
        (dict(size=1.5), TypeError, "size must be an int"),
        (dict(dilate=1), TypeError, "dilate must be a bool"),
        (dict(n_points=0), ValueError, "n_points must be in"),
        (dict(out=np.zeros((1, 32, 2), np.uint64)), ValueError, r"out must have shape \(1, 32, 1\)"),
        (dict(out=np.zeros((1, 32, 1), np.int64)), TypeError, "out must have dtype uint64"),
        (dict(out=np.broadcast_to(np.zeros((1, 32, 1), np.uint64), (1, 32, 1))), ValueError, "out must be writeable"),
        (dict(params=GOOD[:, :, :6]), ValueError, r"params must have shape \(batch, maps, 7\)"),
        (dict(threads=-1), ValueError, "threads must be in"),
    ],
)
def test_bad_build_arguments_raise_naming_them(kwargs, error, match):
    args = dict(params=GOOD, size=32, n_points=100, dilate=False) | kwargs
    with pytest.raises(error, match=match):
        render.build_attractor_cache(args.pop("params"), **args)
