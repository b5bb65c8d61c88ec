"""Every place fdsl_app reaches into Lightning below its public API, in one module.

Each function names what it needs and why the public API does not give it; ``tests/test_lightning_internals.py``
exercises each against the installed Lightning, and ``pyproject.toml`` bounds Lightning to the versions those
tests passed with (2.6). A Lightning upgrade that moves one of these fails there first, by name.
"""

from __future__ import annotations

import time
from typing import Any

import lightning as L
from lightning.fabric.utilities.apply_func import convert_tensors_to_scalars
from lightning.pytorch.profilers import Profiler


def stop_by_steps(trainer: L.Trainer, max_steps: int) -> None:
    """End the fit after `max_steps` optimiser steps, however many epochs that takes.

    The Trainer's own ``max_steps`` is fixed at construction, before the DataModule says how many steps an epoch
    has; and Lightning's epoch counter can skip an epoch when resumed from a checkpoint at an epoch's last batch, so
    the fit must not stop by epochs.
    """
    trainer.fit_loop.epoch_loop.max_steps = max_steps
    trainer.fit_loop.max_epochs = -1


def processed_batches(trainer: L.Trainer) -> int:
    """Training batches Lightning processed in the run so far (restored from a checkpoint)."""
    return int(trainer.fit_loop.epoch_loop.batch_progress.total.processed)


def restart_train_iterator(trainer: L.Trainer) -> None:
    """Start the training loader's iterator of this epoch again (its sampler was moved after Lightning made it).

    Lightning creates the epoch's first iterator before ``on_train_start``; there is no public way to make another.
    """
    fetcher = getattr(trainer.fit_loop, "_data_fetcher", None)
    if fetcher is not None:
        iter(fetcher)


def pending_step_row(trainer: L.Trainer) -> dict[str, float] | None:
    """The metrics row Lightning logs for this optimiser step after the ``on_train_batch_end`` hooks return (as the
    loggers will get it: the step's logged values, ``epoch`` and ``step``), or None if this step logs none.

    A checkpoint taken in those hooks covers the step, yet its row is logged after it; the row is not public
    before it is logged."""
    connector = trainer._logger_connector
    if not trainer.loggers or not connector.should_update_logs:
        return None
    metrics = connector.metrics["log"]
    if not metrics:
        return None
    row = {key: float(value) for key, value in convert_tensors_to_scalars(metrics).items()}
    row.setdefault("epoch", trainer.current_epoch)
    row["step"] = trainer.fit_loop.epoch_loop._batches_that_stepped  # the step loggers are given, before its increment
    return row


def align_logged_step(trainer: L.Trainer) -> None:
    """Number the loggers' rows by the optimiser step again after a resume; call it at the first training batch.

    Lightning numbers them by its own count of stepping batches, which a checkpoint saved by the validation at the
    end of a session (ModelCheckpoint's best) holds one short; on restoring such a checkpoint Lightning does not add
    it back (it does for a checkpoint saved at a batch's end, when its epoch loop restarts: after on_train_start, so
    aligning there would put those a step ahead), and every later row would be labelled a step early. With one
    optimiser the two counts are the same at a batch's start."""
    trainer.fit_loop.epoch_loop._batches_that_stepped = trainer.global_step


def clear_received_sigterm(trainer: L.Trainer) -> None:
    """Forget a SIGTERM that Lightning's own handler recorded, once our handler has taken it over (else Lightning
    would stop the fit at its next check, without our step-boundary checkpoint)."""
    trainer._signal_connector.received_sigterm = False


class LoaderFetchTimer(Profiler):
    """Seconds the training loop has spent in its loader's ``next()``, blocked on the data.

    A Profiler is public API, but the name of the action it must pick out is not: Lightning times the fetch of a
    training batch as ``[_TrainingEpochLoop].train_dataloader_next``. Every other action (hooks, the step) passes
    through untimed; the summary is empty, so Lightning prints no report.
    """

    ACTION = "train_dataloader_next"

    def __init__(self) -> None:
        super().__init__()
        self.seconds = 0.0
        self._started: float | None = None

    def start(self, action_name: str) -> None:
        if action_name.endswith(self.ACTION):
            self._started = time.perf_counter()

    def stop(self, action_name: str) -> None:
        if self._started is not None and action_name.endswith(self.ACTION):
            self.seconds += time.perf_counter() - self._started
            self._started = None


def drop_wandb_anonymous(logger: Any) -> None:
    """Leave W&B's ``anonymous`` setting unset: WandbLogger passes ``anonymous=None`` to ``wandb.init``, which
    W&B (>= 0.19) answers with a deprecation warning at every run; the logger has no public way to omit it."""
    logger._wandb_init.pop("anonymous", None)
