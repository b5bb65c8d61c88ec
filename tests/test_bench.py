"""`fdsl_app bench render` end to end at a tiny size, and its numpy baseline against the renderer it measures."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fdsl_app import cli, render
from fdsl_app.bench import render as bench
from fdsl_app.families import create_family
from fdsl_app.render import reference_numpy

ROW_FIELDS = {
    "mode", "raster", "size", "points", "seconds_per_image", "ns_per_point", "images_per_s_one_core",
    "images_per_s_all_cores", "threads", "batch", "baseline_seconds_per_image", "baseline_ns_per_point",
    "baseline_images_per_s", "speedup",
}  # fmt: skip


@pytest.fixture(autouse=True)
def quick_timing(monkeypatch):
    """Time each figure briefly: these tests check the plumbing, not the speed."""
    monkeypatch.setattr(bench, "MIN_SECONDS", 0.005)
    monkeypatch.setattr(bench, "MIN_REPEATS", 2)


def test_bench_render_end_to_end(tmp_path, capsys):
    path = tmp_path / "bench.json"
    argv = ["bench", "render", "--sizes", "32", "--points", "2000", "--modes", "fast", "--rasters", "point,patch"]
    assert cli.main([*argv, "--threads", "2", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "**Machine:**" in out and "median" in out and "single core only" in out
    assert "| fast | point | 32 | 2,000 |" in out and "| fast | patch | 32 | 2,000 |" in out

    doc = json.loads(path.read_text())
    assert {"cpu_model", "cores", "fast_kernel", "build_flags", "versions"} <= set(doc["machine"])
    assert doc["machine"]["fast_kernel"] == render.fast_kernel() and doc["method"]["statistic"] == "median"
    rows = doc["rows"]
    assert [(r["mode"], r["raster"], r["size"], r["points"]) for r in rows] == [
        ("fast", "point", 32, 2000), ("fast", "patch", 32, 2000),
    ]  # fmt: skip
    for row in rows:
        assert set(row) == ROW_FIELDS
        numbers = {k: v for k, v in row.items() if k not in ("mode", "raster")}
        assert all(v > 0 for v in numbers.values()), numbers
        assert row["threads"] == 2 and row["batch"] >= 8 and row["batch"] % 8 == 0
        assert row["speedup"] > 5  # the C++ renderer against a Python-loop chain: far apart on any machine


def test_bench_render_without_baseline(capsys):
    argv = ["bench", "render", "--sizes", "24", "--points", "500", "--modes", "reference", "--rasters", "density"]
    assert cli.main([*argv, "--no-baseline"]) == 0
    out = capsys.readouterr().out
    assert "Baseline" not in out and "speed-up" not in out and "| reference | density | 24 | 500 |" in out


@pytest.mark.parametrize(
    "flag, value",
    [("--sizes", "8"), ("--sizes", "64,x"), ("--points", "0"), ("--modes", "exact"), ("--rasters", "dots"),
     ("--threads", "0")],
)  # fmt: skip
def test_bad_bench_flags_name_the_flag(capsys, flag, value):
    assert cli.main(["bench", "render", flag, value]) == 2
    assert f"argument {flag}" in capsys.readouterr().err


# The baseline is the reference algorithm (render/reference_numpy.py, tested against reference mode in
# test_render_reference.py): bench render times that same code.


@pytest.mark.parametrize("raster", ["point", "full_patch"])
def test_the_baseline_draws_what_reference_mode_draws(raster):
    systems = bench.bench_systems(count=2)
    size, points = 64, 3000
    params, n_maps = render.pack_systems(systems)
    ours = render.render_ifs(params, np.empty((2, size, size), np.uint8), n_maps=n_maps, n_points=points, raster=raster)
    for system, image in zip(systems, ours, strict=True):
        chain = reference_numpy.chain(system, points)
        assert np.array_equal(bench.baseline_image(chain, size, raster, np.random.default_rng(0)), image)


def test_bench_systems_are_the_first_fractaldb_categories():
    systems = bench.bench_systems(count=3)
    found = create_family("fractaldb", classes=3).generate(bench.SYSTEM_SEED).arrays
    assert all(np.array_equal(s, p[:n]) for s, p, n in zip(systems, found["params"], found["n_maps"], strict=True))
    params, n_maps = render.pack_systems(systems)
    assert (render.fill_rate(params, n_maps=n_maps) >= 0.2).all()
