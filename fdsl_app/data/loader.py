"""The one way fdsl_app builds a DataLoader: its own generator, and workers that leave job signals to the trainer."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

#: The signal that asks a run to checkpoint and stop, expecting its job to be requeued: what Slurm's
#: ``#SBATCH --signal=USR1@<seconds>`` sends before the time limit.
REQUEUE_SIGNAL = signal.SIGUSR1
#: What schedulers send to every process of a job step (the requeue signal; SIGTERM from scancel, preemption, PBS's
#: qdel). The training process handles them at a step boundary (:mod:`fdsl_app.training.preemption`); a loader
#: worker killed by one would fail the training process before it gets there. SIGINT: a terminal's Ctrl-C reaches
#: the whole process group.
JOB_SIGNALS = (REQUEUE_SIGNAL, signal.SIGTERM, signal.SIGINT)


def ignore_job_signals(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: the worker ignores :data:`JOB_SIGNALS`. It still ends with the training process
    (the DataLoader's shutdown, or its watchdog when that process is gone)."""
    for signum in JOB_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def make_loader(
    dataset: Dataset[Any],
    *,
    batch_size: int,
    seed: int,
    sampler: Sampler[int] | None = None,
    drop_last: bool = False,
    num_workers: int = 0,
    pin_memory: bool = False,
    persistent_workers: bool = False,
    prefetch_factor: int | None = None,
    collate_fn: Callable[[list[Any]], Any] | None = None,
) -> DataLoader:
    """A DataLoader in sample order (`sampler`, else sequential) whose workers ignore job signals.

    It has its own generator, seeded with `seed`: starting an iterator (as a resumed run does mid-epoch, at other
    moments than an uninterrupted one) must not consume the global torch generator that dropout, drop path and
    mixup draw from.
    """
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        drop_last=drop_last,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=persistent_workers and num_workers > 0,
        prefetch_factor=prefetch_factor,
        collate_fn=collate_fn,
        worker_init_fn=ignore_job_signals,
        generator=torch.Generator().manual_seed(seed),
    )
