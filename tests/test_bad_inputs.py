"""Bad input, one table per surface: each case exits with status 2 and one line that names what is wrong and how to
fix it (no traceback, nothing written)."""

from __future__ import annotations

import re

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
]


@pytest.mark.parametrize(("overrides", "message"), FIT_CASES, ids=[" ".join(o) for o, _ in FIT_CASES])
def test_settings_only_the_network_can_judge_are_refused_before_the_run_directory(tmp_path, capsys, overrides,
                                                                                   message):  # fmt: skip
    assert cli.main(["fit", f"root={tmp_path}", *overrides]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert "Traceback" not in err and not any(tmp_path.iterdir())
