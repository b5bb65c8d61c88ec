"""The contour families (rcdb, visualatom): class sampling, instance geometry, rendering, parameter files."""

from __future__ import annotations

import numpy as np
import pytest

from fdsl_app import render
from fdsl_app.families import create_family, list_families, load_params, save_params
from fdsl_app.families.contours import FIELD, sample_rcdb_params, sample_visualatom_params
from fdsl_app.render.keys import sample_keys

INSTANCE_FIELDS = {
    "rcdb": {"oval_x", "oval_y", "radius", "center_x", "center_y"},
    "visualatom": {"center_x", "center_y"},
}


def _family(name: str, **settings):
    return create_family(name, **{"classes": 5, "instances": 4, "image_size": 48, **settings})


def test_both_are_registered():
    assert {"rcdb", "visualatom"} <= set(list_families())
    assert list_families("visual*") == ["visualatom"]


@pytest.mark.parametrize("name", ["rcdb", "visualatom"])
def test_generation_is_deterministic_per_seed(name):
    family = _family(name)
    a, b, c = family.generate(1), family.generate(1), family.generate(2)
    assert np.array_equal(a.arrays["params"], b.arrays["params"])
    assert not np.array_equal(a.arrays["params"], c.arrays["params"])
    assert a.arrays["params"].shape == (5, 11) and a.family == name and a.seed == 1


@pytest.mark.parametrize("name", ["rcdb", "visualatom"])
def test_instances_redraw_only_their_geometry(name):
    family = _family(name, instances=50)
    params = family.generate(3)
    classes = np.repeat(np.arange(5), 50)
    instances = np.tile(np.arange(50), 5)
    rows = family.sample_rows(params, classes, instances)
    assert np.array_equal(rows[instances == 0], params.arrays["params"])  # instance 0 is the class itself
    fixed = [i for name_, i in FIELD.items() if name_ not in INSTANCE_FIELDS[name]]
    assert np.array_equal(rows[:, fixed], params.arrays["params"][classes][:, fixed])
    moved = [FIELD[f] for f in INSTANCE_FIELDS[name]]
    assert len(np.unique(rows[:, moved], axis=0)) == len(rows)  # every instance its own geometry
    assert np.array_equal(rows, family.sample_rows(params, classes, instances))  # a pure function
    half = 400 if name == "rcdb" else 512
    assert rows[:, FIELD["center_x"]].min() >= (512 - half) / 2 and rows[:, FIELD["center_x"]].max() <= (512 + half) / 2
    if name == "rcdb":
        assert rows[:, FIELD["oval_x"]].min() >= 1 and rows[:, FIELD["oval_x"]].max() < 2
        assert set(np.unique(rows[:, FIELD["radius"]])) <= set(range(101))


@pytest.mark.parametrize("name, background", [("rcdb", 255), ("visualatom", 0)])
def test_render_depends_on_class_instance_and_key(name, background):
    family = _family(name)
    params = family.generate(0)
    classes, instances = np.array([0, 0, 0, 1]), np.array([0, 0, 1, 0])
    keys = sample_keys(7, 0, np.array([0, 0, 1, 2]))
    out = family.render(params, classes, instances, keys, family.new_batch(4), threads=1)
    assert out.dtype == np.uint8 and out.shape == (4, 48, 48)
    assert np.array_equal(out[0], out[1])  # same class, instance and key
    assert not np.array_equal(out[0], out[2]) and not np.array_equal(out[0], out[3])
    assert (out == background).mean() > 0.3
    other_epoch = family.render(
        params, classes, instances, sample_keys(7, 1, np.array([0, 0, 1, 2])), family.new_batch(4)
    )
    assert not np.array_equal(out[0], other_epoch[0])  # fresh noise each epoch


def test_color_setting_gives_three_channels():
    family = _family("rcdb", color=True)
    out = family.render(family.generate(0), np.array([0]), np.array([0]), sample_keys(0, 0, [0]), family.new_batch(1))
    assert out.shape == (1, 48, 48, 3) and np.array_equal(out[..., 0], out[..., 2])


def test_parameter_file_round_trip_and_compatibility(tmp_path):
    family = _family("visualatom")
    params = family.generate(4)
    path = save_params(params, tmp_path / "va.npz")
    loaded = load_params(path, family="visualatom")
    assert np.array_equal(loaded.arrays["params"], params.arrays["params"]) and loaded.seed == 4
    _family("visualatom", image_size=96).check_params(loaded)  # render settings may differ
    with pytest.raises(ValueError, match="classes: file 5 vs 6"):
        _family("visualatom", classes=6).check_params(loaded)
    with pytest.raises(ValueError, match="for family 'visualatom', not 'rcdb'"):
        _family("rcdb").check_params(loaded)


@pytest.mark.parametrize(
    "settings, error, match",
    [
        (dict(classes=0), ValueError, "rcdb setting classes=0 is not allowed: it must be an int >= 1"),
        (dict(instances=0), ValueError, "rcdb setting instances=0 is not allowed: it must be an int >= 1"),
        (dict(image_size=4), ValueError, "rcdb setting image_size=4 is not allowed: it must be an int in 8..8192"),
        (dict(image_size=10_000), ValueError, "rcdb setting image_size=10000 is not allowed: it must be an int in 8"),
        (dict(clases=3), ValueError, "rcdb has no setting 'clases' \\(did you mean 'classes'\\?\\)"),
        (dict(classes="many"), TypeError, "rcdb.classes must be int, got str"),
        (dict(color=1), TypeError, "rcdb.color must be bool"),
    ],
)
def test_bad_settings_raise_naming_them(settings, error, match):
    with pytest.raises(error, match=match):
        create_family("rcdb", **settings)


def test_unknown_family_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown family 'rcbd' \\(did you mean 'rcdb'\\?\\); known families: .*rcdb"):
        create_family("rcbd")


# --- the class samplers -------------------------------------------------------------------------------------------


def _fields(rows: np.ndarray) -> dict[str, np.ndarray]:
    return {name: rows[:, i] for i, name in enumerate(render.CONTOUR_FIELDS)}


def _is_int(v: np.ndarray) -> bool:
    return bool((v == np.round(v)).all())


def test_rcdb_params_are_in_the_published_ranges():
    f = _fields(np.stack([sample_rcdb_params(np.random.default_rng(s)) for s in range(300)]))
    assert f["n_vertices"].min() >= 3 and f["n_vertices"].max() <= 200 and _is_int(f["n_vertices"])
    assert f["n_contours"].min() >= 1 and f["n_contours"].max() <= 200 and _is_int(f["n_contours"])
    assert 0 <= f["perlin_amp"].min() and f["perlin_amp"].max() < 4
    assert 0 <= f["line_width"].min() and f["line_width"].max() < 0.1
    assert 0 <= f["radius"].min() and f["radius"].max() <= 100 and _is_int(f["radius"])
    for axis in ("x", "y"):
        assert 1 <= f[f"oval_{axis}"].min() and f[f"oval_{axis}"].max() < 2
        assert 56 <= f[f"center_{axis}"].min() and f[f"center_{axis}"].max() <= 456 and _is_int(2 * f[f"center_{axis}"])
    assert (f["freq1"] == 0).all() and (f["freq2"] == 0).all()


def test_visualatom_params_are_in_the_published_ranges():
    f = _fields(np.stack([sample_visualatom_params(np.random.default_rng(s)) for s in range(300)]))
    assert f["n_vertices"].min() >= 200 and f["n_vertices"].max() <= 1000 and _is_int(f["n_vertices"])
    assert f["n_contours"].min() >= 1 and f["n_contours"].max() <= 200
    assert 10 <= f["radius"].min() and f["radius"].max() <= 60 and _is_int(f["radius"])
    assert 0 <= f["center_x"].min() and f["center_x"].max() <= 512
    for n in ("freq1", "freq2"):
        assert f[n].min() >= 0 and f[n].max() <= 20 and _is_int(f[n])
    assert ((f["freq1"] != f["freq2"]) | (f["freq1"] == 0)).all()


@pytest.mark.parametrize("sampler", [sample_rcdb_params, sample_visualatom_params])
def test_samplers_are_deterministic_for_a_seed(sampler):
    a = [sampler(np.random.default_rng(11)) for _ in range(3)]
    b = [sampler(np.random.default_rng(11)) for _ in range(3)]
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not all(np.array_equal(x, sampler(np.random.default_rng(12))) for x in a)


def test_sampled_contours_render():
    rng = np.random.default_rng(0)
    for sample, style, background in [
        (sample_rcdb_params, "rcdb", 255),
        (sample_visualatom_params, "visualatom", 0),
    ]:
        params = np.stack([sample(rng) for _ in range(4)])
        out = render.render_contours(params, np.empty((4, 32, 32), np.uint8), seeds=0, style=style)
        drawn = (out != background).reshape(4, -1).any(axis=1)
        assert drawn.sum() >= 3, f"{style}: sampled contours should mostly land on the canvas"
