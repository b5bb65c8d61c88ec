"""The training verbs of the command line: ``fit``, ``validate`` and ``test``.

``fdsl_app fit [--config RECIPE] [key=value ...]`` trains (with no config: the quick-start recipe);
``--print-config`` shows the resolved configuration and exits. ``validate``/``test`` evaluate a checkpoint.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from fdsl_app.cli.args import say
from fdsl_app.config import QUICKSTART, RECIPES_DIR, load_config, to_yaml


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
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. optim.lr=0.001")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def configure_fit(parser: argparse.ArgumentParser) -> None:
    _add_common(parser)
    parser.add_argument("--check", action="store_true",
                        help="validate the config and the run directory, print whether the fit would start, resume "
                             "or find the run finished, and exit (job scripts' preflight)")  # fmt: skip


def configure_evaluate(parser: argparse.ArgumentParser) -> None:
    _add_common(parser)
    parser.add_argument("--ckpt", type=Path, required=True, help="checkpoint to evaluate")


def _load(args: argparse.Namespace):  # noqa: ANN202 - RunCfg
    for item in args.overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not KEY=VALUE (e.g. optim.lr=0.001)")
    return load_config(args.config or QUICKSTART, args.overrides)


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
    cfg = _load(args)
    _show_progress_messages()
    if args.print_config:
        say(to_yaml(cfg))
        return 0
    if args.check:
        from fdsl_app.training.run_dir import run_status

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
    _say_test_results(cfg, result.results)
    say(f"elapsed: {result.seconds:.0f} s")
    if result.stopped_by is not None:
        say(f"stopped early by {result.stopped_by}, with a checkpoint: resume=auto continues the run")
    return status


def _say_test_results(cfg, results: dict | None) -> None:  # noqa: ANN001 - RunCfg
    """The final test (results.json) and the normalisation the run used, in the end summary."""
    augment = cfg.data.augment
    say(f"normalisation: mean {augment.mean}, std {augment.std}")
    if results is not None:
        top1, images = results["test"].get("top1", float("nan")), results["data"]["images"]["test"]
        say(f"test/top1: {top1:.4f} on {images} held-out images ({results['selected_by']} checkpoint); results.json "
            "in the run directory")


def _run_evaluate(args: argparse.Namespace, stage: str) -> int:
    cfg = _load(args)
    if args.print_config:
        say(to_yaml(cfg))
        return 0
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
