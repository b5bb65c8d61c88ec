"""What a run prints: the libraries' noise kept out, a progress bar on a terminal, plain lines in a job's log.

On a TTY the bar shows the loss, the learning rate and images/s. Without one (a Slurm or PBS ``.out`` file), or
with ``trainer.enable_progress_bar=false``, :class:`PlainProgress` prints one line every ``log_every_n_steps``
steps and one after each validation, instead of carriage-return spam or nothing.
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar

log = logging.getLogger("fdsl_app")

# Lightning's and W&B's messages that say nothing a user of fdsl_app can act on. Each is matched by its text, so that
# a new warning still shows.
_QUIET_WARNINGS = (
    ".*isinstance\\(treespec, LeafSpec\\)` is deprecated",  # Lightning's pytree use under torch >= 2.5
    "The `srun` command is available on your system but is not used",  # the launcher chooses the environment
    "Experiment logs directory .* exists and is not empty",  # a resumed run adds to its own files
    "Checkpoint directory .* exists and is not empty",
    "You're resuming from a checkpoint that ended before the epoch",  # DataPosition restores the position
    ".*does not have many workers which may be a bottleneck",  # num_workers is the recipe's choice
    "The number of training batches .* is smaller than the logging interval",
)
# Lightning's info lines: litlogger/litmodels tips, "`weights_only` was not set" after every checkpoint (it breaks
# the bar), GPU/TPU availability, "`Trainer.fit` stopped" (the summary says how the run ended).
_QUIET_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
    "lightning.pytorch.trainer.connectors.checkpoint_connector",
    "lightning.pytorch.trainer.connectors.callback_connector",
    "lightning.pytorch.accelerators.cuda",
)


def quiet_libraries() -> None:
    """Keep the libraries' noise off the terminal (idempotent; errors and other warnings still show)."""
    for message in _QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def interactive() -> bool:
    """Whether stdout is a terminal (where a bar redraws in place); a job's log file is not."""
    return sys.stdout.isatty()


def _postfix(metrics: dict[str, Any]) -> dict[str, str]:
    """Loss, learning rate and images/s from Lightning's ``callback_metrics``, as far as they are logged yet."""
    shown = {}
    for key, label, spec in (("train/loss_step", "loss", ".4f"), ("lr", "lr", ".2e"),
                             ("perf/images_per_sec", "img/s", ".0f")):  # fmt: skip
        if key in metrics:
            shown[label] = format(float(metrics[key]), spec)
    return shown


class StepBar(TQDMProgressBar):
    """Lightning's bar with the loss, the learning rate and images/s (the version number it shows is dropped)."""

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        return _postfix(trainer.callback_metrics)


class PlainProgress(L.Callback):
    """One line every `every` optimiser steps and one per validation, for logs that are not a terminal."""

    def __init__(self, every: int) -> None:
        self.every = every
        self._started = time.monotonic()
        self._first_step = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started, self._first_step = time.monotonic(), trainer.global_step

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step, total = trainer.global_step, trainer.fit_loop.epoch_loop.max_steps
        if step % self.every and step != total:
            return
        shown = " ".join(f"{k} {v}" for k, v in _postfix(trainer.callback_metrics).items())
        done = step - self._first_step
        left = (time.monotonic() - self._started) / done * (total - step) if done > 0 and total > 0 else None
        eta = f" eta {time.strftime('%H:%M:%S', time.gmtime(left))}" if left is not None else ""
        log.info(f"step {step}/{total} epoch {trainer.current_epoch} {shown}{eta}".rstrip())

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        shown = " ".join(f"{k} {float(v):.4f}" for k, v in sorted(trainer.callback_metrics.items())
                         if k.startswith("val/"))  # fmt: skip
        if shown:
            log.info(f"step {trainer.global_step} validation: {shown}")


def progress_callbacks(enable_bar: bool, every: int) -> tuple[list[L.Callback], bool]:
    """The progress callbacks of a fit and whether Lightning's bar is on: the bar on a terminal when enabled, plain
    lines otherwise."""
    if enable_bar and interactive():
        return [StepBar()], True
    return [PlainProgress(every)], False
