"""The training verbs of the command line: ``fit``, ``validate``, ``test`` and ``recipes``.

``fdsl_app fit [--config RECIPE] [GROUP=NAME ...] [key=value ...]`` trains (with no config: the quick-start recipe);
``--print-config`` shows the resolved configuration (values still required as ``???``) and exits; ``--check`` says
whether the fit would start, or the first reason it would fail. ``validate``/``test`` evaluate a checkpoint, or a
run directory's best one, with the run's own config.yaml unless ``--config`` is given, and save the metrics as
``<stage>.json`` in the run directory. ``recipes`` lists the recipes and the config groups.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from fdsl_app.cli.args import say
from fdsl_app.config import (
    QUICKSTART,
    RECIPES_DIR,
    config_groups,
    config_with_required,
    list_recipes,
    load_config,
    to_yaml,
)
from fdsl_app.files import write_atomic


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
    parser.add_argument("--ckpt", type=Path, required=True, metavar="CKPT_OR_RUN",
                        help="checkpoint to evaluate, or a run directory (its best checkpoint, else last.ckpt); "
                             "inside a run, its config.yaml is the config unless --config is given")  # fmt: skip


def _check_overrides(args: argparse.Namespace) -> None:
    for item in args.overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not KEY=VALUE (optim.lr=0.001) or GROUP=NAME (model=deit_tiny)")


def _load(args: argparse.Namespace, run_dir: Path | None = None):  # noqa: ANN202 - RunCfg
    """The config of `args`; without --config and given the run directory `run_dir`, the run's own config.yaml
    (pointing at that directory wherever it now is)."""
    _check_overrides(args)
    if args.config is None and run_dir is not None:
        where = [f"root={run_dir.parent.resolve()}", f"name={run_dir.name}"]
        return load_config(run_dir / "config.yaml", [*where, *args.overrides])
    return load_config(args.config or QUICKSTART, args.overrides)


def _print_config(args: argparse.Namespace) -> int:
    _check_overrides(args)
    say(config_with_required(args.config or QUICKSTART, args.overrides).rstrip("\n"))
    return 0


def _run_of(path: Path) -> Path | None:
    """The run directory `path` is, or holds the checkpoint `path`; None for a checkpoint outside a run."""
    run = path if path.is_dir() else path.parent.parent if path.parent.name == "checkpoints" else None
    return run if run is not None and (run / "config.yaml").is_file() else None


def _checkpoint_of(run_dir: Path) -> Path:
    """A run directory's newest best checkpoint, else its last.ckpt."""
    checkpoints = run_dir / "checkpoints"
    best = sorted(checkpoints.glob("best-*.ckpt"), key=lambda p: p.stat().st_mtime)
    if best:
        return best[-1]
    if (checkpoints / "last.ckpt").is_file():
        return checkpoints / "last.ckpt"
    raise ValueError(f"run {run_dir} has no checkpoint in {checkpoints}: pass --ckpt a checkpoint file")


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
    from fdsl_app.training.terminal import quiet_libraries

    quiet_libraries()  # before the launcher looks at the environment (Lightning's srun hint)
    result = launch_fit(cfg)
    # A SIGTERM'd (Ctrl-C'd) run exits as one, from rank 0 only: a launcher that sees one rank fail kills the others,
    # and rank 0 may still be writing the run directory.
    status = 128 + 15 if result.terminated else 128 + 2 if result.interrupted else 0
    if not _rank_zero():  # one summary per run
        return 0
    for line in _summary(result, cfg):
        say(line)
    return status


def _summary(result, cfg) -> list[str]:  # noqa: ANN001 - FitResult, RunCfg (Lightning loads only for training)
    """What a fit did: each metric with the step of its value, speed, checkpoints, and how the run ended."""
    from fdsl_app.training.runs import SUMMARY_METRICS, RunRecord

    run = RunRecord.read(result.run_dir)
    lines = [f"run directory: {result.run_dir}"]
    for key in SUMMARY_METRICS:
        last = run.last(key)
        if last is not None:
            lines.append(f"{key}: {last[0]:.4f} (step {last[1]})")
        elif key in result.metrics:  # no metrics.csv (log.backend=none)
            lines.append(f"{key}: {result.metrics[key]:.4f}")
    if result.perf:
        lines.append(f"images/s: {result.perf['perf/images_per_sec']:.0f}, waiting for data: "
                     f"{100 * result.perf['perf/data_wait']:.1f}% of step time")  # fmt: skip
    best = run.best("val/top1")
    of_best = f" (val/top1 {best[0]:.4f} at step {best[1]})" if best is not None and result.best_checkpoint else ""
    lines.append(f"checkpoints: last {_shown(result.last_checkpoint)}, best {_shown(result.best_checkpoint)}{of_best}")
    augment = cfg.data.augment
    lines.append(f"normalisation: mean {augment.mean}, std {augment.std}")
    if result.results is not None:  # the final test of real data (results.json)
        test = result.results
        top1, images = test["test"].get("top1", float("nan")), test["data"]["images"]["test"]
        lines.append(f"test/top1: {top1:.4f} on {images} held-out images ({test['selected_by']} checkpoint); "
                     "results.json in the run directory")  # fmt: skip
    if (result.run_dir / "curves.png").is_file():
        lines.append(f"curves: {result.run_dir / 'curves.png'}")
    lines.append(f"elapsed: {result.seconds:.0f} s")
    state = run.state.get("state")
    if state == "finished":
        lines.append(f"finished at step {run.state.get('step')}")
    elif run.stop_line() is not None:
        lines.append(run.stop_line())
    return lines


def _shown(path: str | Path | None) -> str | None:
    """`path` relative to the working directory when it lies below it (Lightning gives the best one absolute)."""
    if path is None:
        return None
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _run_evaluate(args: argparse.Namespace, stage: str) -> int:
    run_dir = _run_of(args.ckpt)
    cfg = _load(args, run_dir)
    if args.print_config:
        say(to_yaml(cfg))
        return 0
    checkpoint = _checkpoint_of(args.ckpt) if args.ckpt.is_dir() and run_dir is not None else args.ckpt
    from fdsl_app.cluster.launch import launch_evaluate
    from fdsl_app.training.terminal import quiet_libraries

    quiet_libraries()
    results = launch_evaluate(cfg, checkpoint, stage)
    if not _rank_zero():
        return 0
    say(f"checkpoint: {checkpoint}" + ("" if args.config else f" (config: {run_dir / 'config.yaml'})" if run_dir
                                            else ""))  # fmt: skip
    for key, value in results.items():
        say(f"{key}: {value:.4f}")
    saved = (run_dir or cfg.run_dir) / f"{stage}.json"
    record = {"checkpoint": str(checkpoint.resolve()), "metrics": results,
              "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}  # fmt: skip
    write_atomic(saved, json.dumps(record, indent=2))
    say(f"saved: {saved}")
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
