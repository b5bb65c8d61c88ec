"""The training verbs of the command line: ``fit``, ``validate``, ``test`` and ``recipes``.

``fdsl_app fit [--config RECIPE] [GROUP=NAME ...] [key=value ...]`` trains (with no config: the quick-start recipe);
``--print-config`` shows the resolved configuration (values still required as ``???``) and exits; ``--check`` says
whether the fit would start, or the first reason it would fail. ``validate``/``test`` evaluate a checkpoint;
``recipes`` lists the recipes and the config groups.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from fdsl_app.cli.args import say
from fdsl_app.config import QUICKSTART, RECIPES_DIR, config_groups, config_with_required, list_recipes, load_config


def _recipe(text: str) -> Path:
    """A recipe path, or the name of one in recipes/ (with or without .yaml)."""
    path = Path(text)
    for candidate in (path, RECIPES_DIR / text, RECIPES_DIR / f"{text}.yaml"):
        if candidate.is_file():
            return candidate
    known = ", ".join(sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))) if RECIPES_DIR.is_dir() else "none"
    raise argparse.ArgumentTypeError(f"no recipe {text!r} (a YAML path, or one of: {known})")


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=_recipe, default=None, metavar="RECIPE",
                        help="recipe YAML (path or name in recipes/; default: the quick-start recipe)")  # fmt: skip
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="config overrides: GROUP=NAME picks a config group file (model=deit_tiny, logger=wandb, "
                             "trainer=gpu; `fdsl_app recipes` lists them), key=value sets one key (optim.lr=0.001)")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config (values still required shown as ???) and exit")


def configure_fit(parser: argparse.ArgumentParser) -> None:
    _add_common(parser)
    parser.add_argument("--check", action="store_true",
                        help="check the config, the model, the family, the files and data folders a fit reads, the "
                             "accelerator and the run directory; print whether the fit would start, resume or find "
                             "the run finished, and exit (job scripts' preflight)")  # fmt: skip


def configure_evaluate(parser: argparse.ArgumentParser) -> None:
    _add_common(parser)
    parser.add_argument("--ckpt", type=Path, required=True, help="checkpoint to evaluate")


def _check_overrides(args: argparse.Namespace) -> None:
    for item in args.overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not KEY=VALUE (optim.lr=0.001) or GROUP=NAME (model=deit_tiny)")


def _load(args: argparse.Namespace):  # noqa: ANN202 - RunCfg
    _check_overrides(args)
    return load_config(args.config or QUICKSTART, args.overrides)


def _print_config(args: argparse.Namespace) -> int:
    _check_overrides(args)
    say(config_with_required(args.config or QUICKSTART, args.overrides).rstrip("\n"))
    return 0


def _rank_zero() -> bool:
    from fdsl_app.training.run_dir import is_rank_zero  # Lightning loads only for training

    return is_rank_zero()


class _StdoutHandler(logging.StreamHandler):
    """A handler writing to whatever ``sys.stdout`` is at the time (a command run in-process, under a capture)."""

    @property
    def stream(self):  # noqa: ANN201
        return sys.stdout

    @stream.setter
    def stream(self, _value) -> None:  # noqa: ANN001 - StreamHandler.__init__ sets it
        pass


def _show_progress_messages() -> None:
    """fdsl_app's own log lines (which weights were loaded, effective learning rates) on stdout: from rank 0 only,
    except those logged with ``extra={"all_ranks": True}`` (where each rank sits in the cluster)."""
    logger = logging.getLogger("fdsl_app")
    if not logger.handlers:
        handler = _StdoutHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.addFilter(lambda record: getattr(record, "all_ranks", False) or _rank_zero())
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def run_fit(args: argparse.Namespace) -> int:
    if args.print_config:
        return _print_config(args)
    cfg = _load(args)
    _show_progress_messages()
    if args.check:
        from fdsl_app.training.check import check_run
        from fdsl_app.training.run_dir import run_status

        check_run(cfg)
        say(run_status(cfg))
        return 0
    from fdsl_app.cluster.launch import launch_fit  # torch, timm and Lightning load only for training

    result = launch_fit(cfg)
    # A SIGTERM'd run exits as one, from rank 0 only: a launcher that sees one rank fail kills the others, and rank 0
    # may still be writing the run directory.
    status = 128 + 15 if result.terminated and _rank_zero() else 0
    if not _rank_zero():  # one summary per run
        return status
    say(f"run directory: {result.run_dir}")
    for key in ("train/loss_epoch", "val/loss", "val/top1", "val/top5"):
        if key in result.metrics:
            say(f"{key}: {result.metrics[key]:.4f}")
    if result.perf:
        say(f"images/s: {result.perf['perf/images_per_sec']:.0f}, waiting for data: "
             f"{100 * result.perf['perf/data_wait']:.1f}% of step time")  # fmt: skip
    say(f"checkpoints: last {result.last_checkpoint}, best {result.best_checkpoint}")
    say(f"elapsed: {result.seconds:.0f} s")
    if result.stopped_by is not None:
        say(f"stopped early by {result.stopped_by}, with a checkpoint: resume=auto continues the run")
    return status


def _run_evaluate(args: argparse.Namespace, stage: str) -> int:
    if args.print_config:
        return _print_config(args)
    cfg = _load(args)
    from fdsl_app.cluster.launch import launch_evaluate

    results = launch_evaluate(cfg, args.ckpt, stage)
    if not _rank_zero():
        return 0
    for key, value in results.items():
        say(f"{key}: {value:.4f}")
    return 0


def run_validate(args: argparse.Namespace) -> int:
    return _run_evaluate(args, "validate")


def run_test(args: argparse.Namespace) -> int:
    return _run_evaluate(args, "test")


def run_recipes(args: argparse.Namespace) -> int:
    recipes = list_recipes()
    width = max(map(len, recipes), default=0)
    say("recipes (fdsl_app fit --config NAME):")
    for name, description in recipes.items():
        say(f"  {name:<{width}}  {description}")
    say("config groups (GROUP=NAME on the command line, or in a recipe's defaults):")
    for group, names in config_groups().items():
        say(f"  {group}: {', '.join(names)}")
    return 0
