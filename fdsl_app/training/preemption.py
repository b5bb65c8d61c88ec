"""Stopping a run cleanly before its job is killed: at an optimiser-step boundary, with a checkpoint."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from enum import IntEnum
from typing import Any

import lightning as L
import torch

from fdsl_app.config import parse_duration
from fdsl_app.data.loader import REQUEUE_SIGNAL
from fdsl_app.training.lightning_internals import clear_received_sigterm

log = logging.getLogger("fdsl_app")



class StopCause(IntEnum):
    """What asked a run to stop early; ranks agree on the largest (a signal outranks the time limit)."""

    NONE = 0
    TIME_LIMIT = 1
    REQUEUE_SIGNAL = 2
    SIGTERM = 3
    INTERRUPT = 4

    @property
    def reason(self) -> str:
        """As ``state.json`` and the log say it."""
        return {1: "the time limit (trainer.max_time)", 2: "the requeue signal", 3: "SIGTERM",
                4: "Ctrl-C"}.get(self, "nothing")  # fmt: skip


class Preemption(L.Callback):
    """Ends a job's part of a run cleanly, before the job is killed: at the next optimiser step, checkpoint and stop.

    Triggers: the requeue signal (SIGUSR1: ``#SBATCH --signal=USR1@180`` sends it 3 minutes before the time limit),
    SIGTERM (Slurm preemption or ``scancel``, PBS ``qdel``, a plain ``kill``), Ctrl-C (SIGINT: a second one exits at
    once, without a checkpoint) and `max_time` ("DD:HH:MM:SS" of this
    process, counted from the callback's creation: a resumed job gets the whole time again). Signal handlers only
    set a flag; the decision is taken at optimiser-step boundaries and reduced over ranks, so every rank stops at the
    same step (no collective runs inside a signal handler, unlike Lightning's own SIGTERM handling, which this
    replaces during training). Place it before :class:`~fdsl_app.training.callbacks.LastCheckpoint`, which saves
    whenever a stop is requested. The stop skips the validation Lightning would otherwise run first.

    After the requeue signal, the launcher (:mod:`fdsl_app.cluster.launch`) puts a Slurm job back in the queue once
    every file is written; the requeued job runs the same script, whose ``resume=auto`` continues.
    """

    def __init__(self, max_time: str | None = None) -> None:
        self.deadline = time.monotonic() + parse_duration(max_time) if max_time is not None else None
        self.signalled: int | None = None
        self.cause = StopCause.NONE
        self.stopped_at: int | None = None
        self._previous: dict[int, Any] = {}
        self._seen_step = -1

    def _handle(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and self.signalled == signal.SIGINT:  # the user will not wait for the step
            os.write(sys.stderr.fileno(), b"\nsecond Ctrl-C: exiting now, without a checkpoint\n")
            os._exit(128 + signal.SIGINT)
        if signum == signal.SIGINT:
            os.write(sys.stderr.fileno(), b"\nCtrl-C: stopping at the next step with a checkpoint "
                     b"(Ctrl-C again to exit at once)\n")  # fmt: skip
        self.signalled = signum  # only a flag: the checkpoint is taken at a step boundary

    def _install(self, signum: int) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous.setdefault(signum, signal.signal(signum, self._handle))

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            self._install(REQUEUE_SIGNAL)
            self._install(signal.SIGINT)  # Lightning would turn it into a failed run without a checkpoint

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._install(signal.SIGTERM)  # after Lightning registered its handler at the start of the fit
        if trainer.received_sigterm:  # one that came earlier (sanity check, loader start-up) stops at the first step
            self.signalled = signal.SIGTERM
            clear_received_sigterm(trainer)
        self._seen_step = trainer.global_step  # a resumed run's first micro-batch is no step boundary

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._restore()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore()  # Lightning calls no teardown hooks after an exception

    def _restore(self) -> None:
        # Only where the handler is still ours: Lightning may have put back the original SIGTERM handler already.
        for signum, previous in self._previous.items():
            if signal.getsignal(signum) == self._handle:
                signal.signal(signum, previous)
        self._previous = {}

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if step == self._seen_step or self.stopped_at is not None or step >= trainer.max_steps:
            return  # mid-accumulation (no step boundary yet), already stopping, or the run's last step anyway
        self._seen_step = step
        # What asks to stop, reduced (max) over ranks, so that every rank stops at this step for the same reason.
        signalled = {REQUEUE_SIGNAL: StopCause.REQUEUE_SIGNAL, signal.SIGTERM: StopCause.SIGTERM,
                     signal.SIGINT: StopCause.INTERRUPT}  # fmt: skip
        cause = signalled.get(self.signalled, StopCause.NONE)  # type: ignore[call-overload]
        if not cause and self.deadline is not None and time.monotonic() >= self.deadline:
            cause = StopCause.TIME_LIMIT
        if trainer.world_size > 1:
            flag = torch.tensor([int(cause)], device=trainer.strategy.root_device)
            cause = StopCause(int(trainer.strategy.reduce(flag, reduce_op="max").item()))
        if not cause:
            return
        self.stopped_at, self.cause = step, cause
        trainer.should_stop = True
        if batch_idx + 1 < trainer.num_training_batches:
            # No validation pass on the way out mid-epoch (the time is short). At an epoch's end it runs: a resume
            # from this checkpoint would skip that epoch's validation.
            trainer.limit_val_batches = 0
        if trainer.is_global_zero:
            log.info("stopping at step %d with a checkpoint: %s", step, self.cause.reason)

    @property
    def reason(self) -> str | None:
        """What stopped the run early, or None."""
        return self.cause.reason if self.cause else None
