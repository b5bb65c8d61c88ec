"""The one way fdsl_app builds a DataLoader: its own generator, and workers that leave job signals to the trainer."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

#: What schedulers send to every process of a job step (Slurm's --signal=USR1, scancel and preemption's SIGTERM,
#: PBS's qdel). The training process handles them at a step boundary (fdsl_app.training.stopping.StopRequests); a
#: loader worker killed by one would fail the training process before it gets there.
JOB_SIGNALS = (signal.SIGUSR1, signal.SIGTERM)


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
