"""exfractaldb: the C++ 3D renderer against a numpy restatement of the published pipeline, and the family."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from fdsl_app import cli
from fdsl_app.data.datamodule import FormulaDataModule
from fdsl_app.families import create_family, list_families, resolve_family, save_params
from fdsl_app.families.exfractaldb import FIXED_VIEWS, WEIGHTS, accepts, sample_candidate
from fdsl_app.render import ifs3d
from fdsl_app.render import reference_ifs3d as ref
from fdsl_app.render.keys import sample_keys, splitmix64

#: A point within this many pixels of a pixel edge may land on either side (float64, two operation orders).
EDGE_PX = 1e-6


@pytest.fixture(scope="module")
def family_and_params():
    family = create_family("exfractaldb", classes=24, image_size=64)
    return family, family.generate(3)


def _published_candidate(rs: np.random.RandomState) -> np.ndarray:
    """category_search.py's candidate, as written there: maps drawn one by one, p = |det| / running sum."""
    param_size = rs.randint(2, 8)
    params = np.zeros((param_size, 13))
    sum_proba = 0.0
    for m in range(param_size):
        r = rs.uniform(-1.0, 1.0, 12)
        prob = abs(np.linalg.det(np.array(r[0:9]).reshape(3, 3)))
        sum_proba += prob
        params[m] = (*r, prob)
    for m in range(param_size):
        params[m, 12] /= sum_proba
    return params


def _compare_with_rounding(image: np.ndarray, points: np.ndarray, yaw: float, pitch: float) -> int:
    """Assert `image` is the oracle's render of `points` except next to points within EDGE_PX of a pixel edge;
    returns how many points lit a pixel."""
    size = image.shape[0]
    x, y = ref.window_coords(points, yaw, pitch, size)
    lit = np.isfinite(x)
    near_edge = lit & ((np.abs(x - np.round(x)) < EDGE_PX) | (np.abs(y - np.round(y)) < EDGE_PX))
    expected = ref.render(points[:, lit & ~near_edge], yaw, pitch, size)
    dont_care = np.zeros_like(image, bool)
    for xi, yi in zip(x[near_edge], y[near_edge], strict=True):
        rows, cols = slice(max(int(yi) - 1, 0), int(yi) + 2), slice(max(int(xi) - 1, 0), int(xi) + 2)
        dont_care[rows, cols] = True
    np.testing.assert_array_equal(image[~dont_care], expected[~dont_care])
    assert near_edge.sum() <= 2
    return int(lit.sum())


# --- geometry ------------------------------------------------------------------------------------------------------


def test_projection_equals_the_published_camera_pixel_for_pixel() -> None:
    rng = np.random.default_rng(0)
    views = [(0.0, 0.0), (2 * np.pi / 12 + np.radians(30), 0.0), (4.0, 0.0), (1.3, 0.6), (-2.0, -1.2)]
    # Points around the origin (the normalised cloud's range), some near the eye (clipped by the near plane).
    points = rng.uniform(-2.2, 2.2, (len(views), 3, 4000))
    points[:, :, :200] = rng.uniform(-4.5, 4.5, (len(views), 3, 200))
    out = np.full((len(views), 96, 96), 7, np.uint8)
    ifs3d.project_points(points, out, cameras=np.array(views), threads=2)
    for b, (yaw, pitch) in enumerate(views):
        x, _ = ref.window_coords(points[b], yaw, pitch, 96)
        assert 0 < np.isnan(x).sum() < points.shape[2]  # some points clipped, most drawn
        assert _compare_with_rounding(out[b], points[b], yaw, pitch) > 1500  # the frustum: about +-1.7 at the origin


def test_image_orientation_is_the_published_pngs() -> None:
    # A point above the origin (+Y) lands below the centre row: the PNGs are glReadPixels' bottom-up rows.
    out = np.zeros((1, 64, 64), np.uint8)
    ifs3d.project_points(np.array([[[0.0], [0.5], [0.0]]]), out, cameras=[0.0, 0.0], threads=1)
    rows, cols = np.nonzero(out[0])
    assert rows.tolist() == [41] and cols.tolist() == [32]  # floor(32 + 32 * 0.5 / (4 tan 22.5 deg)) = 41


# --- chain and search ----------------------------------------------------------------------------------------------


def test_chain_uniforms_are_the_documented_hash() -> None:
    seed, n = 12345, 1000
    key = splitmix64(splitmix64(np.uint64(seed)))  # stream_key(seed, 0)
    with np.errstate(over="ignore"):
        counters = key + np.arange(n, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    expected = (splitmix64(counters) >> np.uint64(11)).astype(np.float64) * 2.0**-53
    np.testing.assert_array_equal(ifs3d.chain_uniforms(seed, n), expected)


def test_search_replays_the_published_stream_and_acceptance_rule() -> None:
    # The published loop, restated: candidates and their 10,000 uniforms from one legacy stream, clouds by the numpy
    # chain, accepted by per-axis variance > 0.05 and no NaN in y.
    rs = np.random.RandomState(7)
    candidates, uniforms = [], []
    for _ in range(240):
        candidates.append(_published_candidate(rs))
        uniforms.append(rs.random_sample(10_000))
    systems = np.zeros((len(candidates), 7, 13))
    for i, c in enumerate(candidates):
        systems[i, : len(c)] = c
    n_maps = np.array([len(c) for c in candidates])
    clouds = ref.chain(systems, n_maps, np.array(uniforms))
    accepted = []
    for i, c in enumerate(candidates):
        cloud = ref.normalise(clouds[i], 10_000)
        np.testing.assert_array_equal(ifs3d.cloud_ifs3d(c, uniforms[i]), cloud)  # bit for bit, NaN included
        var = np.var(cloud, axis=1)
        published = not np.isnan(cloud).any(axis=1)[1] and bool((var > 0.05).all())
        assert accepts(cloud, 0.05) == published
        if published:
            accepted.append(i)
    assert 2 <= len(accepted) and any(np.isnan(ref.normalise(clouds[i], 10_000)).all() for i in range(40))
    family = create_family("exfractaldb", classes=len(accepted))
    params = family.generate(7)
    assert params.stats["candidates"] == accepted[-1] + 1
    for k, i in enumerate(accepted):
        np.testing.assert_array_equal(params.arrays["params"][k, : n_maps[i]], candidates[i])
        assert params.arrays["n_maps"][k] == n_maps[i]
    assert np.array_equal(sample_candidate(np.random.RandomState(7)), candidates[0])


def test_published_weight_rows() -> None:
    assert WEIGHTS.shape == (145, 12)
    assert (WEIGHTS[6] == 1).all()  # the identity row sits after a x 0.4 .. 0.9
    assert WEIGHTS[0].tolist() == [0.4] + [1.0] * 11 and WEIGHTS[144].tolist() == [1.0] * 11 + [1.6]
    assert ((WEIGHTS != 1).sum(axis=1) == np.r_[[1] * 6, 0, [1] * 138]).all()


# --- the family ----------------------------------------------------------------------------------------------------


def test_images_match_the_published_pipeline_on_the_same_parameters(family_and_params) -> None:
    family, params = family_and_params
    n = params.num_classes
    classes, instances = np.arange(n), (np.arange(n) * 37) % WEIGHTS.shape[0]
    keys = sample_keys(5, 0, np.arange(n))
    out = family.render(params, classes, instances, keys, family.new_batch(n), threads=2)
    # The oracle: the same weighted maps and uniforms through the numpy chain, normalisation and camera.
    maps = params.arrays["params"][classes].copy()
    maps[:, :, :12] *= WEIGHTS[instances][:, None, :]
    seeds = family.chain_seeds(params, classes, instances)
    u = np.stack([ifs3d.chain_uniforms(int(s), 10_000) for s in seeds])  # the chain reads the first 9,999
    clouds = ref.chain(maps, params.arrays["n_maps"][classes], u)
    cams = family.cameras(instances, keys)
    fills, oracle_fills = [], []
    for b in range(n):
        cloud = ref.normalise(clouds[b], 10_000)
        _compare_with_rounding(out[b], cloud, *cams[b])
        expected = ref.render(cloud, *cams[b], 64)
        fills.append((out[b] > 0).mean())
        oracle_fills.append((expected > 0).mean())
        rows, cols = np.nonzero(out[b])
        o_rows, o_cols = np.nonzero(expected)
        if len(rows):
            assert abs(rows.min() - o_rows.min()) <= 1 and abs(rows.max() - o_rows.max()) <= 1
            assert abs(cols.min() - o_cols.min()) <= 1 and abs(cols.max() - o_cols.max()) <= 1
    np.testing.assert_allclose(fills, oracle_fills, atol=2 / 64**2)
    assert np.mean(fills) > 0.02  # accepted clouds spread over the image


def test_render_is_deterministic_batch_and_threads(family_and_params) -> None:
    family, params = family_and_params
    classes, instances = np.arange(12) % 24, np.arange(12) * 11
    keys = sample_keys(1, 2, np.arange(12))
    one = family.render(params, classes, instances, keys, family.new_batch(12), threads=1)
    two = family.render(params, classes, instances, keys, family.new_batch(12), threads=2)
    np.testing.assert_array_equal(one, two)
    for i in range(0, 12, 5):
        single = family.render(params, classes[i : i + 1], instances[i : i + 1], keys[i : i + 1], family.new_batch(1))
        np.testing.assert_array_equal(single[0], one[i])
    other_epoch = family.render(params, classes, instances, sample_keys(1, 3, np.arange(12)), family.new_batch(12))
    assert not np.array_equal(one, other_epoch)  # random views: a fresh yaw every epoch


def test_fixed_views_are_mv_fractaldb(family_and_params) -> None:
    _, params = family_and_params
    family = create_family("exfractaldb", classes=24, image_size=64, views="fixed", instances=2)
    assert family.instances_per_class == 2 * FIXED_VIEWS
    instances = np.arange(2 * FIXED_VIEWS)
    yaw = family.cameras(instances, sample_keys(0, 0, instances))[:, 0]
    nominal = 2 * np.pi * (instances % FIXED_VIEWS) / FIXED_VIEWS + np.radians(30)
    assert np.abs(yaw - nominal).max() <= np.radians(np.pi) and np.abs(yaw - nominal).max() > 0
    out = family.render(params, np.zeros(24, np.int64), instances, sample_keys(0, 0, instances), family.new_batch(24))
    assert len({out[i].tobytes() for i in range(24)}) == 24


def test_registry_parameter_file_and_datamodule(family_and_params, tmp_path) -> None:
    _, params = family_and_params
    assert "exfractaldb" in list_families()
    path = save_params(params, tmp_path / "ex.npz")
    family, loaded = resolve_family(None, {"image_size": 32, "views": "sphere"}, path)  # render settings may change
    assert family.name == "exfractaldb" and loaded is not None and loaded.num_classes == 24
    np.testing.assert_array_equal(loaded.arrays["params"], params.arrays["params"])
    with pytest.raises(ValueError, match="variance"):
        resolve_family(None, {"variance": 0.1}, path)
    data = FormulaDataModule("exfractaldb", {"image_size": 32}, params_path=str(path), batch_size=4,
                             samples_per_epoch=8)  # fmt: skip
    images, labels = next(iter(data.train_dataloader()))
    assert images.dtype == torch.uint8 and images.shape == (4, 1, 32, 32) and 0 <= labels.min() and labels.max() < 24
    assert set(torch.unique(images).tolist()) == {0, 255}


def test_command_line_search_render_export(tmp_path) -> None:
    params = tmp_path / "ex.npz"
    assert cli.main(["search", "exfractaldb", "--classes", "2", "--seed", "1", "-o", str(params), "--no-progress"]) == 0
    grid = tmp_path / "grid.png"
    assert cli.main(["render", "--params", str(params), "--set", "views=fixed", "--size", "48", "--classes", "2",
                     "--per-class", "3", "-o", str(grid)]) == 0  # fmt: skip
    with Image.open(grid) as image:
        assert image.size[0] > 3 * 48
    out = tmp_path / "export"
    assert cli.main(["export", "exfractaldb", "--params", str(params), "--set", "image_size=32", "-o", str(out),
                     "--limit", "4", "--workers", "1", "--no-progress"]) == 0  # fmt: skip
    files = sorted(out.rglob("*.png"))
    assert len(files) == 4
    with Image.open(files[0]) as image:
        assert image.size == (32, 32)


# --- bad input -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "named"),
    [({"variance": 1.5}, "variance"), ({"instances": 146}, "instances"), ({"views": "top"}, "views"),
     ({"n_points": 1}, "n_points"), ({"image_size": 4}, "image_size")],
)  # fmt: skip
def test_bad_settings_name_the_setting(settings, named) -> None:
    with pytest.raises(ValueError, match=named):
        create_family("exfractaldb", **settings)


def test_bad_render_input_is_one_clear_error() -> None:
    maps = np.zeros((1, 2, 13))
    maps[0, :, 12] = 0.5
    out = np.zeros((1, 16, 16), np.uint8)
    good = {"seeds": 1, "cameras": [0.0, 0.0]}
    ifs3d.render_ifs3d(maps, out, **good, n_points=100)
    bad_maps = maps.copy()
    bad_maps[0, 1, 4] = np.nan
    cases = [
        (lambda: ifs3d.render_ifs3d(bad_maps, out, **good), ValueError, r"params\[0\] map 1 column 4"),
        (lambda: ifs3d.render_ifs3d(maps[:, :, :12], out, **good), ValueError, "shape"),
        (lambda: ifs3d.render_ifs3d(maps, out, seeds=1, cameras=[np.inf, 0.0]), ValueError, "yaw and pitch"),
        (lambda: ifs3d.render_ifs3d(maps, out, **good, n_maps=3), ValueError, "n_maps"),
        (lambda: ifs3d.render_ifs3d(maps, out, **good, n_points=1), ValueError, "n_points"),
        (lambda: ifs3d.render_ifs3d(maps, out.astype(np.float32), **good), TypeError, "uint8"),
        (lambda: ifs3d.render_ifs3d(maps, np.zeros((1, 16, 16, 3), np.uint8), **good), ValueError, "gray"),
        (lambda: ifs3d.project_points(np.zeros((1, 2, 5)), out, cameras=[0.0, 0.0]), ValueError, r"\(batch, 3, N\)"),
        (lambda: ifs3d.cloud_ifs3d(maps[0], np.zeros(1)), ValueError, "uniforms"),
    ]
    for call, kind, match in cases:
        with pytest.raises(kind, match=match):
            call()
    with pytest.raises(ValueError, match="seed"):
        create_family("exfractaldb", classes=1).generate(2**32)
