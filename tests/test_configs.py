"""What a Hydra user expects of the configs: GROUP=NAME overrides, defaults without .yaml, recipes extending recipes
by name, `fdsl_app recipes`, --print-config of every recipe with the values still required marked, and `fit --check`
naming each mistake a fit would otherwise meet only after start-up."""

from __future__ import annotations

import pytest
import torch
from datasets import write_cifar10

from fdsl_app import cli
from fdsl_app.config import CONFIGS_DIR, RECIPES_DIR, config_groups, list_recipes, load_config

RECIPES = sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def test_group_overrides_pick_config_files_in_place_of_the_recipes():
    cfg = load_config(RECIPES_DIR / "quickstart.yaml", ["model=deit_tiny", "logger=wandb", "trainer=gpu"])
    assert cfg.model.name == "deit_tiny_patch16_224"  # the recipe listed model/vit_nano_32
    assert cfg.log.backend == "wandb"  # no logger in the recipe: added
    assert (cfg.trainer.accelerator, cfg.trainer.precision) == ("gpu", "bf16-mixed")  # trainer/cpu swapped out
    assert cfg.data.num_workers == 1  # the recipe's own keys still win over group files, as in Hydra
    plain = load_config(RECIPES_DIR / "quickstart.yaml")
    assert (plain.model.name, plain.trainer.accelerator) == ("vit_nano_patch4_32", "cpu")
    # key=value overrides win over everything; .yaml is optional; no recipe: the groups alone
    cfg = load_config(RECIPES_DIR / "pretrain_1pfrac_deit_tiny.yaml", ["trainer=cpu.yaml", "trainer.devices=2"])
    assert (cfg.trainer.accelerator, cfg.trainer.devices, cfg.data.num_workers) == ("cpu", 2, 0)
    assert load_config(None, ["optim=sgd_finetune"]).optim.name == "sgd"


@pytest.mark.parametrize(
    "override, message",
    [
        ("model=deit_tinyy", "model=deit_tinyy: no config model/deit_tinyy.yaml (did you mean 'deit_tiny'?); model= "
                             "takes one of: deit_tiny, vit_nano_32, vit_tiny_32"),
        ("logger=tensorboard", "logger= takes one of: csv, none, wandb"),
    ],
)  # fmt: skip
def test_an_unknown_group_choice_lists_the_choices(override, message):
    with pytest.raises(ValueError) as err:
        load_config(RECIPES_DIR / "quickstart.yaml", [override])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_config_groups_are_the_folders_of_configs():
    groups = config_groups()
    assert {"model", "optim", "trainer", "logger", "data"} <= set(groups)
    assert groups["model"] == sorted(p.stem for p in (CONFIGS_DIR / "model").glob("*.yaml"))


def test_defaults_take_names_without_yaml_and_recipes_extend_recipes_by_name(tmp_path):
    recipe = tmp_path / "mine.yaml"  # outside recipes/: the parent is found by name
    recipe.write_text("# my variant\ndefaults: [finetune_cifar10, optim/adamw_pretrain]\nname: mine\n")
    cfg = load_config(recipe, [f"data.root={tmp_path}"])
    assert (cfg.name, cfg.task, cfg.data.source, cfg.optim.name) == ("mine", "finetune", "cifar10", "adamw")
    assert cfg.model.name == "deit_tiny_patch16_224"  # the parent's own defaults
    swapped = load_config(recipe, [f"data.root={tmp_path}", "model=vit_tiny_32"])  # reaches into the parent's
    assert swapped.model.name == "vit_tiny_patch4_32"
    scratch = load_config(RECIPES_DIR / "scratch_cifar10.yaml", [f"data.root={tmp_path}"])
    assert scratch.model.init_from is None and scratch.data.image_size == 224


def test_an_unknown_parent_or_a_cycle_is_one_line(tmp_path):
    (tmp_path / "a.yaml").write_text("defaults: [finetune_cifar1O]\n")
    with pytest.raises(ValueError, match=r"defaults entry 'finetune_cifar1O' names no config or recipe \(did you "
                                         r"mean 'finetune_cifar10'\?\)"):  # fmt: skip
        load_config(tmp_path / "a.yaml")
    (tmp_path / "b.yaml").write_text("defaults: [c]\n")
    (tmp_path / "c.yaml").write_text("defaults: [b]\n")
    with pytest.raises(ValueError, match="config files include each other in a loop: .*b.yaml -> .*c.yaml -> .*b.yaml"):
        load_config(tmp_path / "b.yaml")


def test_recipes_verb_lists_every_recipe_with_its_description(capsys):
    assert cli.main(["recipes"]) == 0
    out = capsys.readouterr().out
    for name, description in list_recipes().items():
        assert description and f"  {name}  " in out and description in out
    assert set(list_recipes()) == set(RECIPES)
    assert "model: deit_tiny, vit_nano_32, vit_tiny_32" in out


@pytest.mark.parametrize("recipe", RECIPES)
def test_print_config_of_every_recipe_marks_what_is_still_required(capsys, recipe):
    assert cli.main(["fit", "--config", recipe, "--print-config"]) == 0
    out = capsys.readouterr().out
    real = "cifar" in recipe or "imagenet" in recipe
    assert ("  root: ???" in out) == real
    assert ("# ???: still required, give data.root=... on the command line" in out) == real
    assert f"name: {load_config(RECIPES_DIR / f'{recipe}.yaml', ['data.root=x']).name}" in out


def test_a_required_value_missing_at_fit_says_how_to_give_it(tmp_path, capsys):
    assert cli.main(["fit", "--config", "finetune_imagenet100", "--check"]) == 2
    assert capsys.readouterr().err == ("fdsl_app: error: the recipe leaves data.root to you (???): give data.root=... "
                                       "on the command line\n")  # fmt: skip
    # ??? wins over the value of a file it extends (omegaconf's merge alone would keep that), and a later value wins
    recipe = tmp_path / "mine.yaml"
    recipe.write_text("defaults: [finetune_cifar10_quickstart]\nmodel:\n  init_from: ???\n")
    with pytest.raises(ValueError, match=r"leaves data.root, model.init_from to you \(\?\?\?\)"):
        load_config(recipe)
    assert cli.main(["fit", "--config", str(recipe), "--print-config"]) == 0
    assert "  init_from: ???" in capsys.readouterr().out
    cfg = load_config(recipe, [f"data.root={tmp_path}", "model.init_from=a.ckpt"])
    assert (cfg.data.root, cfg.model.init_from) == (str(tmp_path), "a.ckpt")


GPU = torch.cuda.is_available()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["model.name=deit_tinny_patch16_224"], "unknown model.name='deit_tinny_patch16_224'; close matches: "
                                                "deit_tiny_patch16_224"),
        (["data.settings.dleta=0.1"], "onepfrac has no setting 'dleta' (did you mean 'delta'?)"),
        (["model.init_from=runs/nowhere/last.ckpt"], "model.init_from='runs/nowhere/last.ckpt' names no checkpoint "
                                                     "(tried {tmp}/runs/nowhere/last.ckpt and runs/nowhere/last.ckpt)"),
        (["data.source=cifar10", "data.root={tmp}"], "CIFAR-10 not found: expected the folder {tmp}/cifar-10-batches"),
        (["data.source=folder", "data.root="], "data.root must name the folder folder (data.source=folder): give "
                                               "data.root=PATH"),
        pytest.param(["trainer=gpu"], "trainer.accelerator=gpu but torch sees no CUDA GPU here",
                     marks=pytest.mark.skipif(GPU, reason="a GPU is here")),
        (["data.params={tmp}/missing.npz"], "missing.npz"),
    ],
    ids=["model-name", "family-setting", "init-from", "empty-data-root", "no-data-root", "gpu", "params-file"],
)  # fmt: skip
def test_check_names_each_mistake_in_one_line(tmp_path, capsys, overrides, message):
    overrides = [o.replace("{tmp}", str(tmp_path)) for o in overrides]
    status = cli.main(["fit", "--check", f"root={tmp_path}", *overrides])
    err = capsys.readouterr().err.strip()
    assert status in (1, 2) and err.startswith("fdsl_app: error: ") and "\n" not in err, err
    assert message.replace("{tmp}", str(tmp_path)) in err


def test_check_passes_a_sound_run_and_says_what_it_would_do(tmp_path, capsys):
    write_cifar10(tmp_path)
    overrides = [f"root={tmp_path}", f"data.root={tmp_path}", "trainer=cpu", "data.num_workers=0",
                 "data.persistent_workers=false"]  # fmt: skip
    assert cli.main(["fit", "--config", "scratch_cifar10", "--check", *overrides]) == 0
    assert capsys.readouterr().out.strip() == f"run {tmp_path}/scratch-cifar10: new"
