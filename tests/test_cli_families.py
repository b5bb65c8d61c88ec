"""The family verbs of the command line: families, search, render <family>, export."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fdsl_app import cli
from fdsl_app.families import create_family, load_params, save_params


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_families_lists_every_registered_family(capsys):
    code, out, _ = run(capsys, "families")
    assert code == 0
    families, named = out.split("\n\nnamed parameter sets")
    listed = [line.split()[0] for line in families.strip().splitlines()]
    assert {"fractaldb", "ofdb", "onepfrac", "rcdb", "visualatom", "exfractaldb"} <= set(listed)
    assert listed == sorted(listed)
    assert "  fractaldb1k-published: FractalDB-1k's 1,000 published categories" in named
    code, out, _ = run(capsys, "families", "rc*")
    assert out.split()[0] == "rcdb" and len(out.strip().splitlines()) == 1


def test_render_a_family_grid(tmp_path, capsys):
    path = tmp_path / "grid.png"
    code, out, err = run(capsys, "render", "rcdb", "--classes", "2", "--per-class", "3", "--size", "40",
                         "--set", "classes=10", "-o", str(path))  # fmt: skip
    assert code == 0, err
    image = np.array(Image.open(path))
    assert image.ndim == 3 and image.shape[0] > 2 * 40 and image.shape[1] > 3 * 40
    assert "rcdb, 2 classes x 3 samples of 40 px" in out


def test_search_then_render_and_export_from_the_parameter_file(tmp_path, capsys):
    params = tmp_path / "va.npz"
    code, out, err = run(capsys, "search", "visualatom", "--classes", "3", "--seed", "5", "-o", str(params),
                         "--no-progress", "--set", "instances=4", "--set", "image_size=32")  # fmt: skip
    assert code == 0, err
    assert load_params(params).family == "visualatom" and load_params(params).num_classes == 3
    code, _, err = run(capsys, "render", "--params", str(params), "--per-class", "2", "-o", str(tmp_path / "g.png"))
    assert code == 0, err
    code, out, err = run(capsys, "export", "visualatom", "--params", str(params), "--format", "webdataset",
                         "--shard-size", "5", "--no-progress", "-o", str(tmp_path / "wds"))  # fmt: skip
    assert code == 0, err
    assert "wrote 12 samples" in out and len(list((tmp_path / "wds").glob("shard-*.tar"))) == 3


def test_export_png_then_resume(tmp_path, capsys):
    args = ("export", "rcdb", "--set", "classes=2", "--set", "instances=3", "--set", "image_size=32",
            "--no-progress", "-o", str(tmp_path))  # fmt: skip
    assert run(capsys, *args)[0] == 0
    code, out, _ = run(capsys, *args)
    assert code == 0 and "wrote 0 samples" in out and "6 already there" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (("render", "rcbd", "-o", "{tmp}/g.png"), "unknown family 'rcbd' (did you mean 'rcdb'?)"),
        (("render", "rcdb", "--set", "colour=1", "-o", "{tmp}/g.png"), "rcdb has no setting 'colour'"),
        (("render", "rcdb", "--set", "classes=0", "-o", "{tmp}/g.png"), "rcdb setting classes=0 is not allowed"),
        (("render", "--set", "classes=2", "-o", "{tmp}/g.png"), "--set needs a family"),
        (("render", "rcdb", "-o", "{tmp}/missing/g.png"), "output directory"),
        (("export", "rcdb", "--params", "{tmp}/nope.npz", "-o", "{tmp}/x"), "parameter file"),
        (("export", "rcdb", "--params", "{tmp}/va.npz", "-o", "{tmp}/x"), "is for family 'visualatom', not 'rcdb'"),
        (("export", "rcdb", "--limit", "0", "-o", "{tmp}/x"), "limit must be in"),
        (("search", "nofamily", "-o", "{tmp}/p.npz"), "unknown family 'nofamily'"),
        (("search", "rcdb", "-o", "{tmp}/missing/p.npz"), "output folder"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, capsys, argv, message):
    save_params(create_family("visualatom", classes=2).generate(0), tmp_path / "va.npz")
    code, _, err = run(capsys, *(a.replace("{tmp}", str(tmp_path)) for a in argv))
    assert code == 2 and err.startswith("fdsl_app: error: ") and message in err, err
    assert err.count("\n") == 1


def test_bad_set_syntax_is_an_argparse_error(tmp_path, capsys):
    code, _, err = run(capsys, "render", "rcdb", "--set", "classes", "-o", str(tmp_path / "g.png"))
    assert code == 2 and "expected key=value" in err
