"""FractalDB and 2D-OFDB families: the category search, parameter files, instances, the published CSV format."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from fdsl_app import render
from fdsl_app.families import create_family, list_families, load_params, save_params
from fdsl_app.families.fractaldb import IDENTITY_ROW, FractalDB, weight_table
from fdsl_app.families.fractaldb_csv import read_fractaldb_csv_folder
from fdsl_app.families.sampling import fractaldb_candidates
from fdsl_app.families.search import SEARCH_BATCH
from fdsl_app.render.keys import derive, sample_keys

#: A search that takes milliseconds: 128 px, 5000 points, fill 0.1 (about a third of candidates pass).
SMALL = {"classes": 3, "search_size": 128, "search_points": 5000, "fill_threshold": 0.1}
RENDER = {"image_size": 64, "n_points": 3000, "patch_redraws": 2}

#: fractal_renderer/weights/weights_0.4.csv of the FractalDB repository, row by row.
PUBLISHED_WEIGHTS_04 = """\
0.2,1,1,1,1,1;0.6,1,1,1,1,1;1,1,1,1,1,1;1.4,1,1,1,1,1;1.8,1,1,1,1,1;1,0.2,1,1,1,1;1,0.6,1,1,1,1;1,1.4,1,1,1,1;
1,1.8,1,1,1,1;1,1,0.2,1,1,1;1,1,0.6,1,1,1;1,1,1.4,1,1,1;1,1,1.8,1,1,1;1,1,1,0.2,1,1;1,1,1,0.6,1,1;1,1,1,1.4,1,1;
1,1,1,1.8,1,1;1,1,1,1,0.2,1;1,1,1,1,0.6,1;1,1,1,1,1.4,1;1,1,1,1,1.8,1;1,1,1,1,1,0.2;1,1,1,1,1,0.6;1,1,1,1,1,1.4;
1,1,1,1,1,1.8"""


@pytest.fixture(scope="module")
def family() -> FractalDB:
    return create_family("fractaldb", **SMALL, **RENDER)


@pytest.fixture(scope="module")
def params(family):
    return family.generate(7)


def _keys(n: int, epoch: int = 0) -> np.ndarray:
    return sample_keys(11, epoch, np.arange(n))


# --- registry and settings ------------------------------------------------------------------------------------------


def test_registry_lists_both_families_with_the_published_defaults():
    assert {"fractaldb", "ofdb"} <= set(list_families())
    fdb, ofdb = create_family("fractaldb"), create_family("ofdb")
    assert (fdb.num_classes, fdb.settings.fill_threshold, fdb.instances_per_class) == (1000, 0.2, 1000)
    assert (ofdb.num_classes, ofdb.settings.fill_threshold, ofdb.instances_per_class) == (1000, 0.2, 1)
    assert (fdb.settings.image_size, fdb.settings.n_points, fdb.settings.raster) == (362, 200_000, "patch")
    assert fdb.image_shape == (362, 362)


def test_create_family_applies_overrides():
    fam = create_family("fractaldb", classes=4, fill_threshold=0.15, patch_redraws=3, color=True, mode="reference")
    assert (fam.num_classes, fam.settings.fill_threshold, fam.instances_per_class) == (4, 0.15, 300)
    assert fam.image_shape == (362, 362, 3)


@pytest.mark.parametrize(
    ("setting", "value"),
    [("classes", 0), ("fill_threshold", 1.5), ("min_maps", 1), ("max_maps", 9), ("mode", "x"),
     ("csv_dir", "/nonexistent"), ("raster", "blob"), ("param_range", 0.0), ("weight_delta", 0.0),
     ("patch_redraws", 0), ("image_size", 12), ("n_points", 0), ("search_size", 12), ("max_candidates", -1)],
)  # fmt: skip
def test_bad_settings_raise_naming_the_setting(setting, value):
    with pytest.raises(ValueError, match=setting):
        create_family("fractaldb", **{setting: value})


def test_min_maps_above_max_maps_is_rejected():
    with pytest.raises(ValueError, match="max_maps"):
        create_family("ofdb", min_maps=5, max_maps=4)


# --- the category search ----------------------------------------------------------------------------------------------


def test_every_category_meets_the_fill_threshold(family, params):
    arrays = params.arrays
    assert arrays["params"].shape == (3, 7, 7) and arrays["params"].dtype == np.float64
    assert arrays["n_maps"].dtype == np.int32 and np.all((arrays["n_maps"] >= 2) & (arrays["n_maps"] <= 7))
    fill = render.fill_rate(arrays["params"], n_maps=arrays["n_maps"], n_points=5000, size=128, pad=6)
    assert np.array_equal(fill, arrays["fill"]) and np.all(fill >= 0.1)
    p = arrays["params"][..., 6]
    assert np.allclose(p.sum(axis=1), 1.0)
    for system, n in zip(arrays["params"], arrays["n_maps"], strict=True):
        assert not system[n:].any()
        assert np.allclose(system[:n, 6], np.abs(system[:n, 0] * system[:n, 3] - system[:n, 1] * system[:n, 2])
                           / np.abs(system[:n, 0] * system[:n, 3] - system[:n, 1] * system[:n, 2]).sum())  # fmt: skip


def test_the_categories_are_the_first_candidates_that_pass(family, params):
    candidates, n_maps = family.category_search().candidates(7, 0)
    fill = render.fill_rate(candidates, n_maps=n_maps, n_points=5000, size=128, pad=6)
    first = np.flatnonzero(fill >= 0.1)[:3]
    assert np.array_equal(params.arrays["candidate"], first)
    assert np.array_equal(params.arrays["params"], candidates[first])
    assert params.stats["candidates"] == first[-1] + 1 and params.stats["accepted"] == 3


def test_same_seed_same_categories_other_seed_others(family, params):
    again = family.generate(7)
    assert all(np.array_equal(again.arrays[k], v) for k, v in params.arrays.items())
    assert not np.array_equal(family.generate(8).arrays["params"], params.arrays["params"])


def test_search_stats_count_candidates_per_map_count(params):
    stats = params.stats
    per_n = stats["per_maps"]
    assert sum(row["candidates"] for row in per_n.values()) == stats["candidates"]
    assert sum(row["accepted"] for row in per_n.values()) == stats["accepted"] == 3
    assert stats["acceptance_rate"] == pytest.approx(3 / stats["candidates"])
    assert stats["candidates_per_second"] > 0


def test_an_exhausted_budget_raises_with_the_counts():
    fam = create_family("fractaldb", **{**SMALL, "fill_threshold": 0.9, "max_candidates": 300})
    with pytest.raises(RuntimeError, match=r"found 0 of 3 classes .* in 300 candidates.*max_candidates"):
        fam.generate(0)


def test_a_budget_inside_a_batch_stops_there():
    fam = create_family("fractaldb", **{**SMALL, "classes": 200, "max_candidates": SEARCH_BATCH + 10})
    with pytest.raises(RuntimeError, match=f"in {SEARCH_BATCH + 10} candidates"):
        fam.generate(0)


# --- parameter files ------------------------------------------------------------------------------------------------


def test_parameter_file_round_trip(family, params, tmp_path):
    loaded = load_params(save_params(params, tmp_path / "fdb"), family="fractaldb")
    assert (loaded.family, loaded.seed, loaded.settings) == ("fractaldb", 7, params.settings)
    assert all(np.array_equal(loaded.arrays[k], v) for k, v in params.arrays.items())
    family.check_params(loaded)


def test_check_params_rejects_another_family(params):
    ofdb = create_family("ofdb", **SMALL)
    with pytest.raises(ValueError, match="fractaldb"):
        ofdb.check_params(params)
    with pytest.raises(ValueError, match="ofdb"):
        create_family("fractaldb", **SMALL).check_params(ofdb.generate(7))


@pytest.mark.parametrize(("setting", "value"), [("fill_threshold", 0.15), ("search_size", 256), ("max_maps", 6)])
def test_check_params_rejects_other_search_settings(params, setting, value):
    with pytest.raises(ValueError, match=setting):
        create_family("fractaldb", **{**SMALL, setting: value}).check_params(params)


def test_check_params_accepts_other_render_and_instance_settings(params):
    other = {"image_size": 224, "n_points": 100_000, "mode": "fast", "weight_delta": 0.1, "patch_redraws": 1,
             "max_candidates": 99}  # fmt: skip
    create_family("fractaldb", **SMALL, **other).check_params(params)


def test_check_params_rejects_a_class_count_mismatch(params):
    with pytest.raises(ValueError, match="classes"):
        create_family("fractaldb", **{**SMALL, "classes": 2}).check_params(params)
    bad = dataclasses.replace(params, arrays={"params": params.arrays["params"][:, :, :6], "n_maps": np.ones(3)})
    with pytest.raises(ValueError, match=r"\(3, K, 7\)"):
        create_family("fractaldb", **SMALL).check_params(bad)


# --- instances ------------------------------------------------------------------------------------------------------


def test_instances_are_weight_rows_times_redraws_times_flips(family):
    assert family.instances_per_class == 25 * 2 * 4
    rows, flips = family.instance_layout(np.arange(200))
    assert np.array_equal(rows, np.repeat(np.arange(25), 8))
    assert np.array_equal(flips, np.tile(np.arange(4), 50))
    names = {family.file_stem(3, i) for i in range(200)}
    assert len(names) == 200 and family.file_stem(3, 8 * 24 + 4 + 3) == "00003_24_count_1_flip3"


def test_weight_table_is_the_published_file():
    rows = PUBLISHED_WEIGHTS_04.replace("\n", "").split(";")
    published = np.array([[float(v) for v in row.split(",")] for row in rows])
    assert np.allclose(weight_table(0.4), published)
    assert np.array_equal(weight_table(0.4)[IDENTITY_ROW], np.ones(6))
    assert np.allclose(weight_table(0.4)[[0, 1, 3, 4], 0], [0.2, 0.6, 1.4, 1.8])
    half = weight_table(0.5)
    assert np.allclose(half[[0, 5, 9, 13, 17, 21]].max(axis=1), 1.0)
    assert np.allclose(half[[0, 5, 9, 13, 17, 21]].min(axis=1), 0.01)  # 1 - 2 x 0.5 = 0 is written 0.01


def test_render_shapes_and_dtype(family, params):
    out = family.new_batch(3)
    result = family.render(params, np.array([0, 1, 2]), np.array([0, 99, 199]), _keys(3), out, threads=1)
    assert result is out and out.shape == (3, 64, 64) and out.dtype == np.uint8 and (out > 0).any(axis=(1, 2)).all()
    color = create_family("fractaldb", **SMALL, **RENDER, color=True, mode="reference")
    out = color.render(params, np.array([0, 1]), np.array([0, 1]), _keys(2), color.new_batch(2))
    assert out.shape == (2, 64, 64, 3)


#: Each mode with a raster it draws exactly like render_ifs: reference mode every raster, the cache (whose patch
#: raster draws its masks per pixel) the full patch.
EXACT = [("reference", "patch"), ("cached", "full_patch")]


@pytest.mark.parametrize(("mode", "raster"), EXACT)
@pytest.mark.parametrize("flip", range(4))
def test_identity_row_instance_is_the_reference_render_of_the_category(params, flip, mode, raster):
    family = create_family("fractaldb", **SMALL, **RENDER, mode=mode, raster=raster)
    instance = IDENTITY_ROW * 4 * 2 + flip  # weight row 2, patch re-draw 0
    keys = _keys(3)
    got = family.render(params, np.arange(3), np.full(3, instance), keys, family.new_batch(3))
    arrays = params.arrays
    want = render.render_ifs(arrays["params"], family.new_batch(3), n_maps=arrays["n_maps"], seeds=100,
                             patch_seeds=derive(keys, 1), flips=flip, n_points=3000, raster=raster)  # fmt: skip
    assert np.array_equal(got, want)


@pytest.mark.parametrize(("mode", "raster"), EXACT)
def test_weight_rows_scale_one_parameter_in_every_map(params, mode, raster):
    family = create_family("fractaldb", **SMALL, **RENDER, mode=mode, raster=raster)
    keys = _keys(1)
    got = family.render(params, np.array([1]), np.array([6 * 8]), keys, family.new_batch(1))  # row 6: b x 0.6
    system = params.arrays["params"][1:2].copy()
    system[..., 1] *= 0.6
    want = render.render_ifs(system, family.new_batch(1), n_maps=params.arrays["n_maps"][1:2], seeds=100,
                             patch_seeds=derive(keys, 1), n_points=3000, raster=raster)  # fmt: skip
    assert np.array_equal(got, want)


def test_patch_masks_follow_the_keys(family, params):
    classes, instances = np.zeros(2, np.int64), np.zeros(2, np.int64)
    first = family.render(params, classes, instances, _keys(2, epoch=0), family.new_batch(2))
    again = family.render(params, classes, instances, _keys(2, epoch=0), family.new_batch(2))
    other = family.render(params, classes, instances, _keys(2, epoch=1), family.new_batch(2))
    assert np.array_equal(first, again)
    assert not np.array_equal(first[0], first[1]) and not np.array_equal(first, other)


def test_fast_mode_renders_from_the_keys(params):
    fast = create_family("fractaldb", **SMALL, **RENDER, mode="fast")
    one = fast.render(params, np.zeros(1, np.int64), np.zeros(1, np.int64), _keys(1), fast.new_batch(1))
    two = fast.render(params, np.zeros(1, np.int64), np.zeros(1, np.int64), _keys(1, 5), fast.new_batch(1))
    assert (one > 0).any() and not np.array_equal(one, two)


def test_render_rejects_out_of_range_indices(family, params):
    with pytest.raises(ValueError, match="classes"):
        family.render(params, np.array([3]), np.array([0]), _keys(1), family.new_batch(1))
    with pytest.raises(ValueError, match="instances"):
        family.render(params, np.array([0]), np.array([200]), _keys(1), family.new_batch(1))


def test_ofdb_renders_one_instance_with_a_times_0_2():
    ofdb = create_family("ofdb", **SMALL, image_size=64, n_points=3000, mode="reference")
    params = ofdb.generate(7)
    keys = _keys(3)
    got = ofdb.render(params, np.arange(3), np.zeros(3, np.int64), keys, ofdb.new_batch(3))
    system = params.arrays["params"].copy()
    system[..., 0] *= 0.2
    want = render.render_ifs(system, ofdb.new_batch(3), n_maps=params.arrays["n_maps"], seeds=100,
                             patch_seeds=derive(keys, 1), n_points=3000, raster="patch")  # fmt: skip
    assert np.array_equal(got, want)
    assert not np.array_equal(got, ofdb.render(params, np.arange(3), np.zeros(3, np.int64), _keys(3, 1), want))
    with pytest.raises(ValueError, match="instances"):
        ofdb.render(params, np.array([0]), np.array([1]), _keys(1), ofdb.new_batch(1))


# --- published CSV files --------------------------------------------------------------------------------------------


def _write(path: Path, rows: list[list[float]] | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(rows if isinstance(rows, str) else "".join(",".join(f"{v:.18e}" for v in r) + "\n" for r in rows))
    return path


def _system(rng: np.random.Generator, n: int) -> np.ndarray:
    return fractaldb_candidates(rng, 1, min_maps=n, max_maps=n)[0][0]


def test_csv_folder_reads_the_published_format_in_file_name_order(tmp_path):
    rng = np.random.default_rng(0)
    systems = [_system(rng, n) for n in (3, 2, 5)]
    # The repository splits the files over csv0..csv39; the category number in the file name gives the order.
    for i, system in enumerate(systems):
        _write(tmp_path / f"csv{2 - i}" / f"{i:05d}.csv", system.tolist())
    params, n_maps = read_fractaldb_csv_folder(tmp_path)
    assert params.shape == (3, 5, 7) and np.array_equal(n_maps, [3, 2, 5])
    for got, want in zip(params, systems, strict=True):
        assert np.array_equal(got[: len(want)], want)
    assert len(read_fractaldb_csv_folder(tmp_path, limit=2)[0]) == 2


def test_csv_with_six_columns_or_unnormalised_p(tmp_path):
    six = [[0.5, 0.0, 0.0, 0.5, 0.0, 0.0], [0.2, 0.0, 0.0, 0.5, 0.5, 0.5]]
    _write(tmp_path / "00000.csv", six)
    _write(tmp_path / "00001.csv", [[*row, 2.0] for row in six])
    params, _ = read_fractaldb_csv_folder(tmp_path)
    assert np.allclose(params[0, :, 6], [0.25 / 0.35, 0.1 / 0.35])
    assert np.allclose(params[1, :, 6], [0.5, 0.5])


@pytest.mark.parametrize(
    ("text", "message"),
    [("0.1,0.2,0.3,0.4,0.5,0.6,1\n", r"1 maps"), ("a,b,c,d,e,f,p\n0.1,0.2,0.3,0.4,0.5,0.6,1\n", r"line 1"),
     ("0.1,0.2,0.3\n0.1,0.2,0.3\n", r"line 1: 3 numbers"), ("1,0,0,1,0,0,0.5\n1,0,0,1,0,0\n", r"line 2"),
     ("1,0,0,1,0,0,0.5\n1,0,0,1,0,nan,0.5\n", "finite"), ("1,0,0,1,0,0,0.5\n" * 9, "9 maps"),
     ("1,0,0,1,0,0,-0.5\n1,0,0,1,0,0,0.5\n", "p must")],
)  # fmt: skip
def test_bad_csv_files_are_named(tmp_path, text, message):
    _write(tmp_path / "00000.csv", "0.5,0,0,0.5,0,0,0.5\n0.5,0,0,0.5,0.5,0,0.5\n")
    _write(tmp_path / "00001.csv", text)
    with pytest.raises(ValueError, match=rf"00001\.csv.*{message}"):
        read_fractaldb_csv_folder(tmp_path)


def test_csv_folder_must_hold_csv_files(tmp_path):
    with pytest.raises(ValueError, match="no .csv files"):
        read_fractaldb_csv_folder(tmp_path)


def test_csv_dir_setting_reads_instead_of_searching(tmp_path):
    rng = np.random.default_rng(1)
    for i, n in enumerate((2, 4, 3)):
        _write(tmp_path / f"{i:05d}.csv", _system(rng, n).tolist())
    fam = create_family("fractaldb", classes=2, csv_dir=str(tmp_path), search_size=128, search_points=5000)
    params = fam.generate(0)
    assert params.arrays["params"].shape == (2, 7, 7) and np.array_equal(params.arrays["n_maps"], [2, 4])
    assert params.stats["source"] == "csv" and params.arrays["fill"].shape == (2,)
    fam.check_params(params)
    with pytest.raises(ValueError, match="3 category files, fewer than classes=4"):
        create_family("fractaldb", classes=4, csv_dir=str(tmp_path)).generate(0)
