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
from fdsl_app.families import create_family, preview
from fdsl_app.render.grid import BACKGROUND, grid_layout

TILE = 48


# The render verb.


def test_render_writes_the_preview_grid(tmp_path, capsys):
    path = tmp_path / "preview.png"
    assert cli.main(["render", "-o", str(path), "--columns", "2", "--size", str(TILE), "--points", "5000"]) == 0
    out = capsys.readouterr().out
    assert str(path) in out and "2 columns" in out and "candidates searched" in out and "elapsed" in out

    grid = np.asarray(Image.open(path).convert("RGB"))
    labels = [label for label, _ in preview.PREVIEW_ROWS]
    systems = create_family("fractaldb", classes=2).generate(0).arrays  # the seed's first two categories
    heads = [f"N={n}, fill {f:.2f}" for n, f in zip(systems["n_maps"], systems["fill"], strict=True)]
    layout = grid_layout(len(labels), 2, (TILE, TILE), labels, heads)
    assert (grid.shape[1], grid.shape[0]) == layout.size
    # Row 0 is reference mode's point raster of those categories, rendered here independently of the preview.
    reference = render.render_ifs(systems["params"], np.empty((2, TILE, TILE), np.uint8), n_maps=systems["n_maps"],
                                  n_points=5000)  # fmt: skip
    for c in range(2):
        x, y = layout.origin(0, c)
        assert np.array_equal(grid[y : y + TILE, x : x + TILE, 0], reference[c])
    for r in range(layout.rows):
        for c in range(layout.columns):
            x, y = layout.origin(r, c)
            tile = grid[y : y + TILE, x : x + TILE]
            assert len(np.unique(tile)) > 1, f"tile {preview.PREVIEW_ROWS[r][0]!r}, column {c} is blank"
            # The gap rows just outside the tile are background, so the tile sits exactly where the layout says.
            assert (grid[y - 1, x : x + TILE] == BACKGROUND).all()
            assert (grid[y + TILE, x : x + TILE] == BACKGROUND).all()


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
    assert "{render,cache,gpu,loaders}" in capsys.readouterr().err


def test_bad_input_found_while_running_is_one_line(tmp_path, capsys):
    assert cli.main(["render", "onepfrac", "--set", "delta=5", "-o", str(tmp_path / "p.png")]) == 2
    err = capsys.readouterr().err
    want = "onepfrac setting delta=5.0 is not allowed: it must be in (0, 1] with perturbation='multiplicative'"
    assert err.startswith(f"fdsl_app: error: {want}") and err.count("\n") == 1


def test_a_failed_run_is_one_line_with_status_1(tmp_path, capsys):
    argv = ["search", "fractaldb", "--classes", "2", "--no-progress", "-o", str(tmp_path / "c.npz"), "--set",
            "fill_threshold=0.99", "--set", "max_candidates=64", "--set", "search_size=32", "--set",
            "search_points=500"]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("fdsl_app: error: fractaldb search found 0 of 2 classes") and err.count("\n") == 1


@pytest.mark.parametrize("bug", [lambda: {}["key"], lambda: np.zeros(3) + np.zeros(4), lambda: int("12x")])
def test_an_unexpected_error_shows_its_traceback(tmp_path, capsys, monkeypatch, bug):
    """A bug (here in place of the preview) is never reported as if the user's input were wrong."""
    monkeypatch.setattr(preview, "render_preview", lambda *args: bug())
    assert cli.main(["render", "-o", str(tmp_path / "p.png")]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "fdsl_app: unexpected error" in err.splitlines()[-1]


def test_fdsl_debug_shows_the_traceback_of_any_error(tmp_path, monkeypatch):
    monkeypatch.setenv("FDSL_DEBUG", "1")
    with pytest.raises(ValueError, match="delta=5.0"):
        cli.main(["render", "onepfrac", "--set", "delta=5", "-o", str(tmp_path / "p.png")])


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
    verbs = {"fit", "validate", "test", "runs", "recipes", "suite", "families", "search", "render", "export", "bench"}
    assert set(cli.COMMANDS) == verbs and "render" in cli.BENCH_COMMANDS
    assert (
        parser.parse_args(["bench", "render", "--sizes", "64"]).run is cli.COMMANDS["bench"].subcommands["render"].run
    )
