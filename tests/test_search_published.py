"""The published FractalDB search replayed (``published_stream``, ``fdsl_app search --published``): one numpy stream,
the published categories bit for bit, and the named set ``fractaldb1k-published``."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from fdsl_app import render
from fdsl_app.families import create_family, load_params, named_params, params_file, resolve_family
from fdsl_app.families.fractaldb import PUBLISHED_1K, published_fractaldb1k
from fdsl_app.families.search import PublishedSearch, format_stats
from fdsl_app.render import reference_numpy

#: From the published files (hirokatsukataoka16/FractalDB-Pretrained-ResNet-PyTorch at 1b8fb9f,
#: data/csv_rate0.2_category1000/csv*/00000.csv), as printed there by np.savetxt: (category, map) -> a..f, p.
PUBLISHED_ROWS = {
    (0, 0): ("1.724223243171234543e-01", "-7.311756060787280020e-01", "-2.966728035091932281e-01",
             "-2.777660563660040438e-01", "6.115739281576646480e-01", "-2.019335022650967648e-01",
             "1.414134307013419356e-01"),
    (0, 3): ("-6.303750398147720535e-01", "3.247544574309448873e-01", "-7.013752411711078327e-01",
             "-8.967908458619968659e-01", "-5.346410910546133266e-01", "7.107352504421564632e-01",
             "4.235195585540745822e-01"),
}  # fmt: skip
#: Maps per category in the published files, categories 0-3, and the candidates that became them (the README of
#: the published set, checked with the original script).
PUBLISHED_MAPS = [5, 3, 2, 5]
PUBLISHED_CANDIDATES = [23, 28, 67, 87]


def _numpy_stream(seed: int, count: int, *, min_maps: int, max_maps: int, param_range: float, n_points: int):
    """The published script's draws restated with numpy's RandomState: (params, n_maps, chain uniforms) each."""
    rs = np.random.RandomState(seed)
    out = []
    for _ in range(count):
        n = rs.randint(min_maps, max_maps + 1)
        params = np.zeros((n, 7))
        total = 0.0
        for i in range(n):
            a, b, c, d, e, f = rs.uniform(-param_range, param_range, 6)
            prob = abs(a * d - b * c)
            total += prob
            params[i] = a, b, c, d, e, f, prob
        params[:, 6] /= total
        out.append((params, n, rs.random(n_points)))
    return out


@pytest.mark.parametrize(
    ("seed", "min_maps", "max_maps", "param_range", "n_points"),
    [(1, 2, 7, 1.0, 7), (5, 2, 2, 0.5, 1), (2**32 - 1, 3, 8, 2.0, 1001), (0, 2, 5, 1.0, 312)],
)
def test_the_stream_draws_what_numpy_draws(seed, min_maps, max_maps, param_range, n_points):
    # randint's masked rejection (ranges 0, 3, 5, 6), uniform's scaling, p's summation order, and the chain's draws
    # straddling MT19937's 624-word blocks: any slip shifts every later candidate.
    expected = _numpy_stream(seed, 300, min_maps=min_maps, max_maps=max_maps, param_range=param_range,
                             n_points=n_points)  # fmt: skip
    stream = render.PublishedStream(seed, min_maps=min_maps, max_maps=max_maps, param_range=param_range,
                                    n_points=n_points)  # fmt: skip
    params, n_maps, _ = stream.examine(200, size=16, pad=1, threads=2)
    assert stream.consumed == 200
    for i in range(200):
        want, n, _ = expected[i]
        assert n_maps[i] == n
        assert np.array_equal(params[i, :n], want)  # bit for bit
        assert not params[i, n:].any()
    assert np.array_equal(stream.skip(50), [n for _, n, _ in expected[200:250]])
    params, n_maps, _ = stream.examine(50, size=16, pad=1)
    assert all(np.array_equal(params[k, : n_maps[k]], expected[250 + k][0]) for k in range(50))


def test_each_fill_rate_comes_from_the_candidates_own_chain():
    # The oracle: the published script's render of the candidate with the uniforms the stream holds for it.
    n_points, size, pad = 3000, 96, 6
    expected = _numpy_stream(7, 24, min_maps=2, max_maps=4, param_range=1.0, n_points=n_points)
    _, _, fill = render.PublishedStream(7, max_maps=4, n_points=n_points).examine(24, size=size, pad=pad)
    for (system, _, uniforms), got in zip(expected, fill, strict=True):
        xs, ys = _chain(system, uniforms)
        cols, rows = reference_numpy.pixels(xs, ys, size, size, pad)
        lit = np.zeros((size, size), bool)
        lit[rows, cols] = True
        assert got == lit.sum() / size**2


def _chain(system: np.ndarray, uniforms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cum = np.cumsum(system[:, 6])
    xs, ys = np.zeros(len(uniforms)), np.zeros(len(uniforms))
    x = y = 0.0
    for i, u in enumerate(uniforms[:-1], 1):
        j = int(np.searchsorted(cum, u))  # the first map with u <= cumsum
        if j < len(system):
            a, b, c, d, e, f, _ = system[j]
            x, y = a * x + b * y + e, c * x + d * y + f
        xs[i], ys[i] = x, y
    return xs, ys


def test_the_published_search_finds_the_published_categories():
    family = create_family("fractaldb", classes=4, published_stream=True)
    params = family.generate(1)
    assert params.arrays["candidate"].tolist() == PUBLISHED_CANDIDATES
    assert params.arrays["n_maps"].tolist() == PUBLISHED_MAPS
    for (category, row), values in PUBLISHED_ROWS.items():
        assert params.arrays["params"][category, row].tolist() == [float(v) for v in values]  # bit for bit
    assert (params.arrays["fill"] >= 0.2).all()
    assert params.stats["stream"] == "published" and params.stats["candidates"] == 88
    assert "candidates searched: 88" in format_stats(params.stats)
    # OFDB's search is FractalDB's: the same stream gives the same categories.
    ofdb = create_family("ofdb", classes=4, published_stream=True).generate(1)
    assert np.array_equal(ofdb.arrays["params"], params.arrays["params"])


def test_a_resumed_published_search_equals_an_uninterrupted_one(tmp_path):
    search = create_family("fractaldb", classes=3, published_stream=True).category_search()
    assert isinstance(search, PublishedSearch)
    first = search.run(search.start(1))
    longer = create_family("fractaldb", classes=5, published_stream=True).category_search()
    resumed, direct = longer.run(first), longer.run(longer.start(1))
    for name in ("params", "n_maps", "candidate", "fill", "tried"):
        assert np.array_equal(getattr(resumed, name), getattr(direct, name)), name
    assert resumed.consumed == direct.consumed and longer.stats(resumed)["per_maps"] == longer.stats(direct)["per_maps"]


def test_a_published_search_checks_its_seed_and_settings():
    with pytest.raises(ValueError, match=r"numpy's legacy seed, an int in \[0, 2\*\*32\)"):
        create_family("fractaldb", classes=2, published_stream=True).generate(2**32)
    with pytest.raises(ValueError, match="published_stream=True is not allowed: it must be false when csv_dir"):
        create_family("fractaldb", published_stream=True, csv_dir=".")
    with pytest.raises(ValueError, match="min_maps"):
        render.PublishedStream(1, min_maps=1)
    with pytest.raises(ValueError, match="seed"):
        render.PublishedStream(-1)


def test_search_published_on_the_command_line(tmp_path):
    out = tmp_path / "published.npz"
    done = subprocess.run(
        [sys.executable, "-m", "fdsl_app", "search", "fractaldb", "--published", "--classes", "2", "-o", str(out),
         "--no-progress"], cwd=tmp_path, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "seed 1" in done.stdout and "candidates searched: 29" in done.stdout
    params = load_params(out)
    assert params.settings["published_stream"] is True and params.seed == 1
    assert params.arrays["candidate"].tolist() == PUBLISHED_CANDIDATES[:2]
    refused = subprocess.run(
        [sys.executable, "-m", "fdsl_app", "search", "onepfrac", "--published", "-o", str(out)], cwd=tmp_path,
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert refused.returncode == 2 and "use fractaldb or ofdb" in refused.stderr


def test_named_sets_are_listed_and_a_misspelt_name_is_refused():
    assert PUBLISHED_1K in named_params()
    with pytest.raises(ValueError, match=r"does not exist \(did you mean 'fractaldb1k-published'\?\)"):
        params_file("fractaldb1k-publshed")


@pytest.mark.slow
def test_the_named_published_set_is_made_once_and_resolves(tmp_path, monkeypatch):
    monkeypatch.setenv("FDSL_CACHE_DIR", str(tmp_path))
    path = params_file(PUBLISHED_1K)
    assert path == published_fractaldb1k(tmp_path) and path.parent == tmp_path
    made = os.stat(path).st_mtime_ns
    family, params = resolve_family(None, {"image_size": 224}, PUBLISHED_1K)
    assert os.stat(path).st_mtime_ns == made  # the second use reads the file
    assert family.name == "fractaldb" and params.num_classes == 1000
    arrays = params.arrays
    assert arrays["candidate"][:4].tolist() == PUBLISHED_CANDIDATES and arrays["candidate"][-1] == 42_654
    # The published files' map counts (fdsl-spec.md 2.1, counted there): N=2: 231, 3: 294, 4: 218, 5: 146, 6: 77, 7: 34.
    assert np.bincount(arrays["n_maps"], minlength=8)[2:].tolist() == [231, 294, 218, 146, 77, 34]
