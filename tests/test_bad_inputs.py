"""Bad input, one table per surface: each case exits with status 2 and one line that names what is wrong and how to
fix it (no traceback, nothing written)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from fdsl_app import cli

CONFIG_CASES = [
    (["model.drop_path=2"], r"model.drop_path must be in \[0, 1\)"),
    (["model.drop_path=-0.1"], r"model.drop_path must be in \[0, 1\)"),
    (["trainer.devices=0"], r"trainer.devices must be 'auto', -1 \(all\), a count >= 1"),
    (["trainer.devices=-2"], r"trainer.devices must be 'auto', -1 \(all\), a count >= 1"),
    (["data.augment.mean=[0.5,0.5"], r"override 'data.augment.mean=\[0.5,0.5' is not key=value with a YAML value"),
    (["data.batch_size=63", "trainer.devices=2"], r"must split evenly over world size 2"),
    (["trainer.max_stepz=3"], r"unknown config key 'trainer.max_stepz' \(did you mean 'max_steps'\?\)"),
    (["trainer.precision=17"], r"trainer.precision must be one of 'auto', '64-true', .*, got '17'"),
    (["trainer.accelerator=tpu"], r"trainer.accelerator must be one of 'auto', 'cpu', 'gpu', 'cuda', 'mps', got 'tpu'"),
    (["trainer.limit_train_batches=-1"],
     r"trainer.limit_train_batches must be a share of the batches in \[0, 1\] or a whole number of batches, got -1"),
    (["trainer.limit_val_batches=2.5"], r"trainer.limit_val_batches must be a share .*, got 2.5"),
]


@pytest.mark.parametrize(("overrides", "message"), CONFIG_CASES, ids=[" ".join(o) for o, _ in CONFIG_CASES])
def test_bad_overrides_are_one_line_with_status_2(tmp_path, capsys, overrides, message):
    assert cli.main(["fit", "--check", f"root={tmp_path}", *overrides]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())  # nothing written


RECIPE_CASES = [
    ("", r"is empty: a recipe holds at least its keys"),
    ("- 1\n- 2\n", r"must hold a mapping of keys, got list"),
    ("data: {batch_size: [\n", r"is not valid YAML"),
]


@pytest.mark.parametrize(("text", "message"), RECIPE_CASES, ids=["empty", "a list", "unclosed"])
def test_bad_recipe_files_are_one_line_with_status_2(tmp_path, capsys, text, message):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(text)
    assert cli.main(["fit", "--check", "--config", str(recipe), f"root={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert "Traceback" not in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: the refusal does not apply")
def test_a_gpu_accelerator_without_a_gpu_is_refused_before_the_run_directory(tmp_path, capsys):
    assert cli.main(["fit", f"root={tmp_path}", "trainer.accelerator=gpu"]) == 2
    err = capsys.readouterr().err
    assert "trainer.accelerator=gpu but torch sees no CUDA GPU here" in err and "Traceback" not in err
    assert not any(tmp_path.iterdir())


FIT_CASES = [
    (["data.image_size=30"],
     r"data.image_size=30 is not a multiple of vit_nano_patch4_32's patch size 4: the last 2 px would be dropped "
     r"unseen; use 28 or 32"),
    (["model.name=vit_nano_patch4_23"], r"unknown model.name='vit_nano_patch4_23'; close matches: vit_nano_patch4_32"),
    (["trainer.strategy=dpp"], r"unknown trainer.strategy='dpp'; close matches: ddp \(or auto\)"),
]


@pytest.mark.parametrize(("overrides", "message"), FIT_CASES, ids=[" ".join(o) for o, _ in FIT_CASES])
def test_settings_only_the_network_can_judge_are_refused_before_the_run_directory(tmp_path, capsys, overrides,
                                                                                   message):  # fmt: skip
    assert cli.main(["fit", f"root={tmp_path}", *overrides]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert "Traceback" not in err and not any(tmp_path.iterdir())


def _onepfrac_file(tmp_path, name: str, change) -> str:  # noqa: ANN001
    """A onepfrac parameter file with `change` applied to its arrays."""
    from fdsl_app.families import create_family, load_params, save_params

    path = tmp_path / "good.npz"
    if not path.exists():
        save_params(create_family("onepfrac", classes=2).generate(0), path)
    params = load_params(path)
    change(params.arrays)
    return str(save_params(params, tmp_path / f"{name}.npz"))


PARAM_FILE_CASES = [
    ("wrong-columns", lambda a: a.update(params=a["params"][:, :, :5]),
     r"bad.npz: onepfrac parameter file must hold an array 'params' of shape \(2, K, 7\), got float64 \(2, 2, 5\)"),
    ("too-few-classes", lambda a: a.update(params=a["params"][:1]),
     r"must hold an array 'params' of shape \(2, K, 7\), got float64 \(1, 2, 7\)"),
    ("n_maps-beyond-K", lambda a: a.update(n_maps=a["n_maps"] + 7),
     r"systems must have 2 to 8 maps and n_maps integers in \[2, 2\], got K=2, n_maps 9..9"),
    ("n_maps-missing", lambda a: a.pop("n_maps"), r"must hold an array 'n_maps' of shape \(2,\), got none"),
    ("nan", lambda a: a["params"].__setitem__((0, 0, 0), np.nan), r"array 'params' holds NaN or infinite values"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "change", "message"), PARAM_FILE_CASES, ids=[c[0] for c in PARAM_FILE_CASES])
@pytest.mark.parametrize("verb", ["render", "fit"])
def test_bad_parameter_files_are_one_line_with_status_2(tmp_path, capsys, verb, name, change, message):
    path = _onepfrac_file(tmp_path, "bad", change)
    if verb == "render":
        args = ["render", "onepfrac", "--params", path, "-o", str(tmp_path / "x.png")]
    else:
        args = ["fit", f"root={tmp_path}", f"data.params={path}", "data.settings.classes=2", "data.settings.delta=0.1",
                "trainer.max_steps=1"]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.png").exists()


def test_a_parameter_file_of_another_family_names_both(tmp_path, capsys):
    from fdsl_app.families import create_family, save_params

    path = save_params(create_family("rcdb", classes=2).generate(0), tmp_path / "rcdb.npz")
    assert cli.main(["render", "onepfrac", "--params", str(path), "-o", str(tmp_path / "x.png")]) == 2
    assert "is for family 'rcdb', not 'onepfrac': use family 'rcdb'" in capsys.readouterr().err


RENDERER_CASES = [
    ("render_ifs", dict(mode=3), r"render_ifs\(\): mode must be a str, got int 3"),
    ("render_ifs", dict(raster=None), r"render_ifs\(\): raster must be a str, got NoneType None"),
    ("render_contours", dict(style=5), r"render_contours\(\): style must be a str, got int 5"),
    ("render_contours", dict(canvas_size=1e-300), r"canvas_size must be in \[1, 65536\]"),
    ("draw_cached", dict(cache=[[1]]), r"cache must be"),
]  # fmt: skip


@pytest.mark.parametrize(("function", "change", "message"), RENDERER_CASES,
                         ids=[f"{f}-{next(iter(c))}" for f, c, _ in RENDERER_CASES])  # fmt: skip
def test_renderer_arguments_of_the_wrong_type_name_the_argument_in_one_line(function, change, message):
    from fdsl_app import render

    out = np.zeros((1, 16, 16), np.uint8)
    systems = np.array([[[0.5, 0, 0, 0.5, 0, 0, 0.5], [0.5, 0, 0, 0.5, 0.5, 0.5, 0.5]]])
    contour = np.array([[40, 10, 1.0, 0.05, 30.0, 1.2, 1.1, 256.0, 256.0, 2, 3]], np.float64)
    base = {
        "render_ifs": dict(params=systems, out=out, n_points=100),
        "render_contours": dict(params=contour, out=out, seeds=0),
        "draw_cached": dict(cache=render.build_attractor_cache(systems, size=16, n_points=100, dilate=False), out=out,
                            index=0, patch_seeds=0, raster="point"),
    }[function]  # fmt: skip
    with pytest.raises((TypeError, ValueError)) as caught:
        getattr(render, function)(**(base | change))
    assert re.search(message, str(caught.value)), str(caught.value)
    assert "\n" not in str(caught.value)


def test_settings_lightning_refuses_are_one_line_naming_them(tmp_path, capsys):
    # Device indices on the CPU: only Lightning's accelerator can judge them, when the Trainer is made.
    assert cli.main(["fit", f"root={tmp_path}", "trainer.accelerator=cpu", "trainer.devices=[5]"]) == 2
    err = capsys.readouterr().err
    assert re.search(r"Lightning refuses the trainer settings \(trainer.accelerator=cpu, devices=\[5\], strategy="
                     r".*\): `devices` selected with `CPUAccelerator` should be an int > 0", err), err
    assert "Traceback" not in err and len([line for line in err.splitlines() if "error" in line]) == 1
