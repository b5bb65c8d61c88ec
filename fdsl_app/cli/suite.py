"""The ``suite`` verb: ``fdsl_app suite --config SUITE --init-from RUN [--jobs N] [key=value ...]``.

Fine-tunes the pre-training run RUN (a run name under root, a run directory or a checkpoint) and a from-scratch
baseline on each dataset and seed of SUITE (a suites/ name or a YAML path), resuming whatever an earlier invocation
left unfinished, and writes ``<root>/<suite>/results.md``, ``results.csv`` and ``runs.csv``.
"""

from __future__ import annotations

import argparse

from fdsl_app.cli.args import say


def configure_suite(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, metavar="SUITE", help="suite YAML (path or name in suites/)")
    parser.add_argument("--init-from", required=True, metavar="RUN",
                        help="the pre-training run: a run name under root, a run directory or a checkpoint")
    parser.add_argument("--jobs", type=int, default=None, metavar="N",
                        help="runs at once (default: one per visible GPU, else 1)")  # fmt: skip
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="config overrides for every run, e.g. trainer.max_epochs=2 root=runs")  # fmt: skip


def run_suite(args: argparse.Namespace) -> int:
    for item in args.overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not KEY=VALUE (e.g. trainer.max_epochs=2)")
    if args.jobs is not None and args.jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {args.jobs}")
    from fdsl_app.suite.runner import check_failed, prepare_data, run_all
    from fdsl_app.suite.spec import find_suite, load_suite, plan_runs
    from fdsl_app.suite.table import write_tables
    from fdsl_app.training.pretrained import resolve_init_from

    suite = load_suite(find_suite(args.config))
    root = plan_runs(suite, args.init_from, args.overrides)[0].cfg.root  # every run's root is the same
    runs = plan_runs(suite, resolve_init_from(args.init_from, root).resolve(), args.overrides)
    suite_dir = runs[0].cfg.run_dir.parent.parent
    say(f"suite {suite.name}: {len(suite.datasets)} dataset(s) x {len(suite.seeds)} seed(s) x 2 arms "
        f"(pre-trained from {runs[0].cfg.model.init_from}, scratch) in {suite_dir}")  # fmt: skip
    prepare_data(suite, runs, say)
    import torch

    gpus = torch.cuda.device_count()
    failed = run_all(runs, suite_dir / "logs", args.jobs or max(1, gpus), gpus, say)
    # The title names the run as given; each run's results.json holds the resolved checkpoint.
    say(write_tables(suite_dir, runs, f"Suite {suite.name}: fine-tuned from {args.init_from}").rstrip())
    say(f"tables: {suite_dir / 'results.md'}, {suite_dir / 'results.csv'}; per run: {suite_dir / 'runs.csv'}")
    check_failed(failed, suite_dir / "logs")
    return 0
