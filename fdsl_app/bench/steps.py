"""What every loader of ``bench loaders`` shares: a batch, its move to the device, and how an epoch is timed."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

Batch = Any  # what a loader yields: (images, labels)


@dataclass(frozen=True)
class Timing:
    """One epoch of one loader: when each batch arrived and how many images it held.

    Attributes:
        first_batch_s: seconds from creating the iterator (worker start included) to the first batch.
        epoch_s: seconds from creating the iterator to the last batch.
        step_seconds, step_images: time and images of each step after the first.
        images: images of the whole epoch.
        cpu_s: CPU seconds the epoch took in this process (all its threads) and its loader workers.
    """

    first_batch_s: float
    epoch_s: float
    step_seconds: list[float]
    step_images: list[int]
    images: int
    cpu_s: float


def to_device(batch: Batch, device: str) -> Batch:
    """``(images, labels)`` on `device` (asynchronous from pinned memory)."""
    images, labels = batch
    return images.to(device, non_blocking=True), labels.to(device, non_blocking=True)


def time_epoch(loader: Iterable[Batch], step: Callable[[Batch], Batch] | None = None, device: str = "cpu") -> Timing:
    """Iterate one epoch of `loader` (applying `step` to each batch) and record when each batch was ready (on a
    CUDA `device`: once the device has finished the step's work)."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else None
    cpu = _cpu_seconds()
    start = time.perf_counter()
    arrivals: list[float] = []
    counts: list[int] = []
    for batch in loader:
        if step is not None:
            batch = step(batch)
        if sync is not None:
            sync()
        arrivals.append(time.perf_counter())
        counts.append(len(batch[1]))
    if not arrivals:
        raise ValueError("the loader yielded no batches")
    steps = np.diff(np.asarray(arrivals)).tolist()
    cpu = _cpu_seconds() - cpu
    return Timing(arrivals[0] - start, arrivals[-1] - start, steps, counts[1:], sum(counts), cpu)


def _cpu_seconds() -> float:
    """CPU time of this process (every thread) and of its finished children: the loader workers of an epoch,
    which the DataLoader joins when the epoch ends."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system
