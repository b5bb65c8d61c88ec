"""The `fdsl_app` command line, the preview grid and the random parameter samplers behind it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import fdsl_app
from fdsl_app import cli, render
from fdsl_app.families import preview

TILE = 48


# The render verb.


def test_render_writes_the_preview_grid(tmp_path, capsys):
    path = tmp_path / "preview.png"
    assert cli.main(["render", "-o", str(path), "--columns", "2", "--size", str(TILE), "--points", "5000"]) == 0
    out = capsys.readouterr().out
    assert str(path) in out and "2 columns" in out and "candidates searched" in out and "elapsed" in out

    grid = np.asarray(Image.open(path).convert("RGB"))
    expected = preview.render_preview(columns=2, size=TILE, seed=0, points=5000)
    layout = expected.layout
    assert (grid.shape[1], grid.shape[0]) == layout.size
    np.testing.assert_array_equal(grid, np.asarray(expected.image))  # the CLI adds nothing random of its own
    assert (layout.rows, layout.columns, layout.tile_height) == (len(preview.PREVIEW_ROWS), 2, TILE)
    for r in range(layout.rows):
        for c in range(layout.columns):
            x, y = layout.origin(r, c)
            tile = grid[y : y + TILE, x : x + TILE]
            assert len(np.unique(tile)) > 1, f"tile {preview.PREVIEW_ROWS[r][0]!r}, column {c} is blank"
            # The gap rows just outside the tile are background, so the tile sits exactly where the layout says.
            assert (grid[y - 1, x : x + TILE] == preview.BACKGROUND).all()
            assert (grid[y + TILE, x : x + TILE] == preview.BACKGROUND).all()


@pytest.mark.parametrize(
    "flag, value",
    [("--size", "10"), ("--size", "4096"), ("--columns", "0"), ("--columns", "65"), ("--points", "0"),
     ("--points", "20000000"), ("--threads", "0"), ("--seed", "-1"), ("--size", "big")],
)  # fmt: skip
def test_bad_render_flags_name_the_flag(tmp_path, capsys, flag, value):
    assert cli.main(["render", "-o", str(tmp_path / "p.png"), flag, value]) == 2
    err = capsys.readouterr().err
    assert f"argument {flag}" in err and value in err.replace(",", "")
    assert not (tmp_path / "p.png").exists()


def test_missing_output_directory_is_a_one_line_error(tmp_path, capsys):
    assert cli.main(["render", "-o", str(tmp_path / "nope" / "p.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fdsl_app: error: output directory") and err.count("\n") == 1


def test_unknown_verb_and_missing_verb(capsys):
    assert cli.main(["frobnicate"]) == 2
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err
    assert cli.main([]) == 2
    assert cli.main(["bench"]) == 2
    assert "{render,loaders}" in capsys.readouterr().err


@pytest.mark.parametrize("error, code", [(ValueError, 2), (TypeError, 2), (RuntimeError, 1)])
def test_errors_while_running_are_one_line_not_tracebacks(tmp_path, capsys, monkeypatch, error, code):
    def fail(*args, **kwargs):
        raise error("n_points must be in [1, 10000000]")

    monkeypatch.setattr(preview, "render_preview", fail)
    assert cli.main(["render", "-o", str(tmp_path / "p.png")]) == code
    assert capsys.readouterr().err == "fdsl_app: error: n_points must be in [1, 10000000]\n"


def test_version(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("fdsl_app ")


def test_python_dash_m_runs_the_cli(tmp_path):
    # The child imports the same fdsl_app as this process (installed, or a source tree with the built module).
    env = {**os.environ, "PYTHONPATH": str(Path(fdsl_app.__file__).parent.parent)}
    command = [sys.executable, "-m", "fdsl_app", "--version"]
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=tmp_path, env=env)
    assert done.returncode == 0 and done.stdout.startswith("fdsl_app ")


def test_verbs_come_from_one_table():
    parser = cli.build_parser()
    verbs = {"fit", "validate", "test", "families", "search", "render", "export", "bench"}
    assert set(cli.COMMANDS) == verbs and "render" in cli.BENCH_COMMANDS
    assert (
        parser.parse_args(["bench", "render", "--sizes", "64"]).run is cli.COMMANDS["bench"].subcommands["render"].run
    )


# Samplers.


def test_fractaldb_candidates_follow_the_reference_distribution():
    rng = np.random.default_rng(3)
    systems = [preview.sample_fractaldb_system(rng) for _ in range(300)]
    assert {len(s) for s in systems} == set(range(2, 8))
    for s in systems:
        assert s.shape[1] == 7 and np.abs(s[:, :6]).max() < 1
        det = np.abs(s[:, 0] * s[:, 3] - s[:, 1] * s[:, 2])
        np.testing.assert_allclose(s[:, 6], det / det.sum())
        assert s[:, 6].sum() == pytest.approx(1.0)


def test_search_accepts_only_systems_that_fill_the_canvas():
    found = preview.search_fractaldb_systems(3, np.random.default_rng(5), batch=32)
    assert len(found.systems) == 3 and found.candidates >= 3 and found.candidates % 32 == 0
    params, n_maps = render.pack_systems(found.systems)
    fills = render.fill_rate(params, n_maps=n_maps)
    np.testing.assert_allclose(fills, found.fill_rates)
    assert (fills >= preview.FILL_THRESHOLD).all()
    again = preview.search_fractaldb_systems(3, np.random.default_rng(5), batch=32)
    for a, b in zip(found.systems, again.systems, strict=True):
        np.testing.assert_array_equal(a, b)


def test_search_gives_up_with_a_clear_error():
    with pytest.raises(RuntimeError, match=r"found only 0 of 1 IFS systems .* in 64 candidates"):
        preview.search_fractaldb_systems(1, np.random.default_rng(0), threshold=1.01, max_candidates=64)


def _fields(rows: np.ndarray) -> dict[str, np.ndarray]:
    return {name: rows[:, i] for i, name in enumerate(render.CONTOUR_FIELDS)}


def _is_int(v: np.ndarray) -> bool:
    return bool((v == np.round(v)).all())


def test_rcdb_params_are_in_the_published_ranges():
    f = _fields(np.stack([preview.sample_rcdb_params(np.random.default_rng(s)) for s in range(300)]))
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
    f = _fields(np.stack([preview.sample_visualatom_params(np.random.default_rng(s)) for s in range(300)]))
    assert f["n_vertices"].min() >= 200 and f["n_vertices"].max() <= 1000 and _is_int(f["n_vertices"])
    assert f["n_contours"].min() >= 1 and f["n_contours"].max() <= 200
    assert 10 <= f["radius"].min() and f["radius"].max() <= 60 and _is_int(f["radius"])
    assert 0 <= f["center_x"].min() and f["center_x"].max() <= 512
    for n in ("freq1", "freq2"):
        assert f[n].min() >= 0 and f[n].max() <= 20 and _is_int(f[n])
    assert ((f["freq1"] != f["freq2"]) | (f["freq1"] == 0)).all()


@pytest.mark.parametrize("sampler", [preview.sample_fractaldb_system, preview.sample_rcdb_params,
                                     preview.sample_visualatom_params])  # fmt: skip
def test_samplers_are_deterministic_for_a_seed(sampler):
    a = [sampler(np.random.default_rng(11)) for _ in range(3)]
    b = [sampler(np.random.default_rng(11)) for _ in range(3)]
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not all(np.array_equal(x, sampler(np.random.default_rng(12))) for x in a)


def test_sampled_contours_render():
    rng = np.random.default_rng(0)
    for sample, style, background in [
        (preview.sample_rcdb_params, "rcdb", 255),
        (preview.sample_visualatom_params, "visualatom", 0),
    ]:
        params = np.stack([sample(rng) for _ in range(4)])
        out = render.render_contours(params, np.empty((4, 32, 32), np.uint8), seeds=0, style=style)
        drawn = (out != background).reshape(4, -1).any(axis=1)
        assert drawn.sum() >= 3, f"{style}: sampled contours should mostly land on the canvas"


# image_grid.


def test_image_grid_geometry_and_placement():
    gray = np.full((10, 12), 200, np.uint8)
    rgb = np.zeros((10, 12, 3), np.uint8)
    rgb[..., 0] = 255
    labels, heads = ["first row", "second"], ["a", "b", "a much longer column label"]
    grid = np.asarray(preview.image_grid([[gray, rgb, gray], [rgb, gray, rgb]], labels, heads, scale=2))
    layout = preview.grid_layout(2, 3, (10, 12), labels, heads, scale=2)
    assert (grid.shape[1], grid.shape[0]) == layout.size
    assert (layout.tile_height, layout.tile_width) == (20, 24)
    assert layout.column_width > 24 and layout.header_height > 0  # the long label widens the columns
    for r in range(2):
        for c in range(3):
            x, y = layout.origin(r, c)
            tile = grid[y : y + 20, x : x + 24]
            want = (255, 0, 0) if (r + c) % 2 else (200, 200, 200)
            assert (tile == want).all()
    label_area = grid[layout.header_height :, : layout.label_width]
    header_area = grid[: layout.header_height, layout.label_width :]
    assert (label_area != preview.BACKGROUND).any(axis=-1).sum() > 20  # text was drawn
    assert (header_area != preview.BACKGROUND).any(axis=-1).sum() > 20


def test_image_grid_without_column_labels_has_no_header():
    grid = preview.image_grid([[np.zeros((8, 8), np.uint8)]], ["x"])
    layout = preview.grid_layout(1, 1, (8, 8), ["x"])
    assert layout.header_height == 0 and grid.size == layout.size


@pytest.mark.parametrize(
    "images, labels, match",
    [([[np.zeros((8, 8), np.uint8), np.zeros((9, 8), np.uint8)]], ["x"], "one height and width"),
     ([[np.zeros((8, 8), np.float32)]], ["x"], "must be uint8"),
     ([[np.zeros((8, 8), np.uint8)]], ["x", "y"], "row labels")],
)  # fmt: skip
def test_image_grid_rejects_bad_tiles(images, labels, match):
    with pytest.raises(ValueError, match=match):
        preview.image_grid(images, labels)
