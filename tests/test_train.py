"""The training app end to end on CPU: recipes build, a tiny pre-training and a fine-tuning from its checkpoint,
resume equivalence, W&B offline, and the bad inputs of a run."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from datasets import write_cifar10, write_cifar100, write_imagenet100

from fdsl_app import cli
from fdsl_app.config import RECIPES_DIR, load_config
from fdsl_app.data.build import build_datamodule
from fdsl_app.models.module import create_network
from fdsl_app.suite.digits import write_digits
from fdsl_app.training.fit import fit

pytestmark = pytest.mark.filterwarnings("ignore::lightning.fabric.utilities.warnings.PossibleUserWarning")

TINY = [
    "model.name=vit_nano_patch4_32", "model.drop_path=0.1", "trainer.accelerator=cpu", "trainer.devices=1",
    "trainer.precision=32-true", "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1",
    "data.num_workers=0", "data.settings.classes=8", "data.settings.n_points=3000", "data.settings.image_size=48",
    "data.samples_per_epoch=256", "data.batch_size=16", "data.image_size=32",
]  # fmt: skip


def losses(run_dir: Path) -> list[float]:
    with open(run_dir / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/loss_step")]
    return [float(r["train/loss_step"]) for r in rows]


def tiny_cfg(tmp_path: Path, *extra: str):
    return load_config(RECIPES_DIR / "quickstart.yaml", [*TINY, f"root={tmp_path}", *extra])


@pytest.mark.parametrize("recipe", sorted(p.name for p in RECIPES_DIR.glob("*.yaml")))
def test_every_recipe_loads_and_builds_model_and_data(tmp_path, recipe):
    writers = {"cifar10": write_cifar10, "cifar100": write_cifar100, "imagenet100": write_imagenet100,
               "digits": lambda root: write_digits(root / "digits")}  # fmt: skip
    overrides = []
    for name, write in writers.items():
        if f"_{name}." in recipe or f"_{name}_" in recipe:
            write(tmp_path)
            overrides.append(f"data.root={tmp_path / 'digits' if name == 'digits' else tmp_path}")
    cfg = load_config(RECIPES_DIR / recipe, overrides)
    datamodule, num_classes = build_datamodule(cfg)
    net = create_network(cfg.model, num_classes, cfg.data.image_size)
    assert num_classes >= 2 and datamodule is not None
    assert sum(p.numel() for p in net.parameters()) > 0


def test_recipes_start_with_a_description_and_their_command_and_own_their_run_name(tmp_path):
    """Every recipe opens with a one-line description (what `fdsl_app recipes` lists) and the command that runs it,
    and no two recipes write to the same run directory (a copied recipe that keeps its model's name would make the
    second refuse to start, or resume the first)."""
    names = {}
    for recipe in sorted(RECIPES_DIR.glob("*.yaml")):
        header = [line for line in recipe.read_text().splitlines() if line.startswith("#")]
        assert len(header[0]) > 20 and "fdsl_app fit" not in header[0], f"{recipe.name}: no one-line description"
        assert header[1].startswith("# fdsl_app "), f"{recipe.name} must follow it with the command that runs it"
        assert any(f"fit --config {recipe.stem}" in line for line in header), f"{recipe.name}: no command runs it"
        names[recipe.name] = load_config(recipe, [f"data.root={tmp_path}"]).name
    assert len(set(names.values())) == len(names), names


@pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")
def test_the_quickstart_model_learns_its_classes(tmp_path):
    """60 steps of the quick start (32 classes of 1p-frac at 32 px): the loss falls from ln 32 and validation is far
    above chance. Fails if labels and images drift apart, the optimiser does not step, or augmentation erases the
    classes."""
    overrides = ["trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1", "data.num_workers=0",
                 "trainer.max_steps=60", "data.samples_per_epoch=3840", "log.sample_grid=false", f"root={tmp_path}"]
    result = fit(load_config(RECIPES_DIR / "quickstart.yaml", overrides))
    loss = losses(result.run_dir)
    assert len(loss) == 60 and np.mean(loss[:10]) > 3.3  # ln 32 = 3.47: it starts at chance
    assert np.mean(loss[-10:]) < 0.85 * np.mean(loss[:10])
    assert result.metrics["val/loss"] < 3.0 and result.metrics["val/top1"] >= 3 / 32  # chance: 1/32


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")
def test_pretrain_then_finetune_from_its_checkpoint(tmp_path, capsys):
    result = fit(tiny_cfg(tmp_path, "name=pre", "trainer.max_steps=6"))
    run = result.run_dir
    for name in ("config.yaml", "env.json", "metrics.csv", "samples.png", "checkpoints/last.ckpt"):
        assert (run / name).is_file(), name
    assert len(losses(run)) == 6 and all(np.isfinite(losses(run)))
    cifar = tmp_path / "cifar"
    write_cifar10(cifar, per_batch=10)
    code = cli.main([
        "fit", "--config", "finetune_cifar10", f"root={tmp_path}", "name=ft", f"data.root={cifar}",
        f"model.init_from={result.last_checkpoint}", "model.name=vit_nano_patch4_32", "data.image_size=32",
        "data.batch_size=8", "trainer.accelerator=cpu", "trainer.devices=1", "trainer.precision=32-true",
        "trainer.max_steps=3", "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1", "data.num_workers=0",
        "data.pin_memory=false",
        "data.persistent_workers=false", "data.augment.rand_augment=null",
    ])  # fmt: skip
    out = capsys.readouterr()
    assert code == 0, out.err
    assert len(losses(tmp_path / "ft")) == 3 and "run directory:" in out.out
    files = json.loads((tmp_path / "ft" / "data.json").read_text())["files"]
    assert len(files) == 6 and not any(f["official"] for f in files.values())  # the test's own batches
    assert "CIFAR-10: 6 of the 6 files read" in out.out + out.err


def cifar_cfg(tmp_path: Path, *extra: str):
    """The CPU CIFAR-10 fine-tuning recipe on test-written data, from scratch, tiny."""
    root = tmp_path / "cifar"
    if not root.exists():
        write_cifar10(root, per_batch=20)
    return load_config(RECIPES_DIR / "finetune_cifar10_quickstart.yaml", [
        f"root={tmp_path}", f"data.root={root}", "model.init_from=null", "data.batch_size=8", "data.num_workers=0",
        "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1", *extra,
    ])  # fmt: skip


@pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")
@pytest.mark.parametrize(
    "make, extra",
    [
        (tiny_cfg, []),
        (tiny_cfg, ["trainer.accumulate_grad_batches=2"]),
        (tiny_cfg, ["data.samples_per_epoch=32"]),  # 2 steps an epoch: the stop falls on an epoch's last batch
        (tiny_cfg, ["data.num_workers=2"]),  # workers draw indices before the resume position is known
        (tiny_cfg, ["data.num_workers=2", "data.persistent_workers=true", "data.samples_per_epoch=48"]),
        (tiny_cfg, ["data.settings.mode=cached", "data.settings.raster=patch", "data.num_workers=2"]),
        (tiny_cfg, ["data.settings.mode=cached", "data.settings.raster=patch", "data.draw=device"]),
        (cifar_cfg, []),
        (cifar_cfg, ["data.num_workers=2"]),
    ],
    ids=[
        "family",
        "family-accumulate",
        "family-epoch-end",
        "family-workers",
        "family-persistent",
        "family-cached",
        "family-cached-device-draw",
        "cifar",
        "cifar-workers",
    ],  # fmt: skip
)
@pytest.mark.slow
def test_resume_gives_the_losses_of_an_uninterrupted_run(tmp_path, make, extra):
    straight = fit(make(tmp_path, "name=straight", "trainer.max_steps=4", *extra))
    fit(make(tmp_path, "name=split", "trainer.max_steps=4", "trainer.stop_at_step=2", *extra))
    resumed = fit(make(tmp_path, "name=split", "trainer.max_steps=4", "resume=auto", *extra))
    a, b = losses(straight.run_dir), losses(resumed.run_dir)
    assert len(a) == len(b) >= 4
    np.testing.assert_allclose(b, a, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")
def test_max_time_stops_with_a_checkpoint_of_the_last_step(tmp_path):
    import torch

    result = fit(tiny_cfg(tmp_path, "name=timed", "trainer.max_epochs=50", "trainer.max_time=00:00:00:03"))
    stored = torch.load(result.last_checkpoint, map_location="cpu", weights_only=True)
    steps = len(losses(result.run_dir))
    assert 0 < steps < 50 * 16 and stored["global_step"] == steps
    assert result.stopped_by == "the time limit (trainer.max_time)"
    # The limit is per job: a resumed job gets the whole time again (a PBS follow-up job must not stop at once).
    again = fit(tiny_cfg(tmp_path, "name=timed", "trainer.max_epochs=50", "trainer.max_time=00:00:00:03",
                         "resume=auto"))  # fmt: skip
    more = torch.load(again.last_checkpoint, map_location="cpu", weights_only=True)["global_step"] - steps
    assert more > steps // 3, f"the first job made {steps} steps in 3 s, the resumed one {more}"


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_wandb_offline_run_writes_its_files_and_keeps_its_id(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    fit(tiny_cfg(tmp_path, "name=wb", "trainer.max_steps=2", "log.backend=wandb"))
    run = tmp_path / "wb"
    run_id = (run / "wandb_id").read_text().strip()
    assert list((run / "wandb").glob(f"offline-run-*-{run_id}"))
    fit(tiny_cfg(tmp_path, "name=wb", "trainer.max_steps=3", "log.backend=wandb", "resume=auto"))
    assert (run / "wandb_id").read_text().strip() == run_id


@pytest.mark.parametrize(
    "overrides, error, message",
    [
        (["optim.lrr=1"], ValueError, "unknown config key 'optim.lrr' \\(did you mean 'lr'\\?\\)"),
        (["data.batch_size=many"], ValueError, "config key 'data.batch_size'"),
        (["model.name=vit_nonexistent_model"], ValueError, "vit_nonexistent_model"),
        (["data.family=fractalbd"], ValueError, "unknown family 'fractalbd'"),
        (["trainer.accumulate_grad_batches=3"], ValueError, "batch_size"),
        (["model.init_from={tmp}/garbage.ckpt"], ValueError, "is not a checkpoint"),
        (["data.source=imagenet100", "data.root={tmp}", "data.class_list=aist"], ValueError, "AIST's ImageNet-100"),
    ],
)
def test_bad_run_inputs_are_clear_errors(tmp_path, overrides, error, message):
    (tmp_path / "garbage.ckpt").write_bytes(b"this is not a checkpoint")
    overrides = [o.replace("{tmp}", str(tmp_path)) for o in overrides]
    with pytest.raises(error, match=message):
        fit(tiny_cfg(tmp_path, "trainer.max_steps=1", *overrides))


def test_missing_data_folder_says_where_to_put_it(tmp_path):
    cfg = load_config(RECIPES_DIR / "finetune_cifar10.yaml", [f"data.root={tmp_path / 'nowhere'}"])
    with pytest.raises(ValueError, match="cifar-10"):
        datamodule, _ = build_datamodule(cfg)
        datamodule.setup("fit")


@pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")
def test_resume_refuses_a_run_directory_of_another_config(tmp_path):
    fit(tiny_cfg(tmp_path, "name=r", "trainer.max_steps=1"))
    with pytest.raises(ValueError, match="belongs to a different config .*optim.lr"):
        fit(tiny_cfg(tmp_path, "name=r", "trainer.max_steps=2", "resume=auto", "optim.lr=0.5"))
    with pytest.raises(ValueError, match="already holds a run"):
        fit(tiny_cfg(tmp_path, "name=r", "trainer.max_steps=2"))
    # A run written by an older version lacks the settings added since: their defaults are what it ran with.
    saved = tmp_path / "r" / "config.yaml"
    config = yaml.safe_load(saved.read_text())
    del config["data"]["class_list"]  # added in 0.1: its default, cmc, is the list older runs used
    saved.write_text(yaml.safe_dump(config))
    assert fit(tiny_cfg(tmp_path, "name=r", "trainer.max_steps=2", "resume=auto")) is not None
    config = yaml.safe_load(saved.read_text())
    del config["data"]["class_list"]
    config["trainer"]["precision"] = "16-mixed"  # a setting it did write, with another value
    saved.write_text(yaml.safe_dump(config))
    with pytest.raises(ValueError, match="belongs to a different config .*trainer.precision: '16-mixed'"):
        fit(tiny_cfg(tmp_path, "name=r", "trainer.max_steps=3", "resume=auto"))


@pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")
def test_nan_loss_stops_with_a_message_and_the_last_good_state(tmp_path):
    with pytest.raises(RuntimeError, match="last good state is in .*last-good.ckpt"):
        fit(tiny_cfg(tmp_path, "name=nan", "trainer.max_steps=30", "optim.lr=1e30", "optim.warmup_epochs=0"))
    assert (tmp_path / "nan" / "checkpoints" / "last-good.ckpt").is_file()


def test_print_config_shows_the_resolved_config(capsys):
    assert cli.main(["fit", "--print-config", "optim.lr=0.0042"]) == 0
    out = capsys.readouterr().out
    assert "lr: 0.0042" in out and "family: onepfrac" in out


def test_fit_cli_rejects_bad_arguments(capsys):
    assert cli.main(["fit", "--config", "no_such_recipe"]) == 2
    assert "no recipe 'no_such_recipe'" in capsys.readouterr().err
    assert cli.main(["fit", "optim.lr"]) == 2
    assert "is not KEY=VALUE" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")
def test_validate_and_test_a_checkpoint(tmp_path, capsys):
    result = fit(tiny_cfg(tmp_path, "name=ev", "trainer.max_steps=2"))
    checkpoint = str(result.last_checkpoint)
    common = ["--config", "quickstart", *TINY, f"root={tmp_path}", "name=ev-eval", "--ckpt", checkpoint]
    assert cli.main(["validate", *common]) == 0
    assert "val/top1:" in capsys.readouterr().out
    assert cli.main(["test", *common]) == 0
    assert "test/top1:" in capsys.readouterr().out
    assert cli.main(["validate", *common[:-1], str(tmp_path / "missing.ckpt")]) == 2
    assert "does not exist" in capsys.readouterr().err
