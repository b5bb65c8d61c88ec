"""Lightning callbacks of a run: data-wait accounting, the training-sample grid, and mid-epoch resume.

- :class:`Throughput` logs images per second and the share of step time spent waiting for data (the time from the
  end of one training step to the start of the next: fetching the batch, moving it to the device, augmenting it).
- :class:`SampleGrid` saves a grid of the first training batch as the model sees it (after augmentation).
- :class:`RngState` keeps the random generators in checkpoints.
- :class:`ResumeDataPosition` makes a run resumed from a mid-epoch checkpoint continue the epoch where it stopped,
  so that its data order (and hence its losses) equal an uninterrupted run's.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from fdsl_app.data.synthetic import EpochSampler


class Throughput(L.Callback):
    """Logs ``perf/images_per_sec`` and ``perf/data_wait`` (share of wall time waiting for the next batch)."""

    def __init__(self, window: int = 20) -> None:
        self.window = window
        self._last_end: float | None = None
        self._wait = self._busy = 0.0
        self._images = 0
        self._steps = 0
        self.history: list[dict[str, float]] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last_end = None  # the epoch boundary (validation, loader start-up) is not counted as data wait

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, idx: int) -> None:
        now = time.perf_counter()
        if self._last_end is not None:
            self._wait += now - self._last_end
        self._start = now

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        now = time.perf_counter()
        self._busy += now - self._start
        self._last_end = now
        self._images += len(batch[0]) * trainer.world_size
        self._steps += 1
        if self._steps % self.window == 0:
            self._log(pl_module)

    def _log(self, pl_module: L.LightningModule) -> None:
        total = self._wait + self._busy
        if total <= 0:
            return
        row = {"perf/images_per_sec": self._images / total, "perf/data_wait": self._wait / total}
        self.history.append(row)
        pl_module.log_dict(row, on_step=True, on_epoch=False)
        self._wait = self._busy = 0.0
        self._images = 0

    def summary(self) -> dict[str, float]:
        """Mean of the logged windows (empty if none completed)."""
        if not self.history:
            return {}
        return {key: float(np.mean([row[key] for row in self.history])) for key in self.history[0]}


class SampleGrid(L.Callback):
    """Saves ``samples.png``: the first training batch after augmentation, denormalised, up to 64 images."""

    def __init__(self, path: Path, mean: list[float], std: list[float], log_to: Any = None) -> None:
        self.path = Path(path)
        self.mean, self.std = mean, std
        self.log_to = log_to  # a WandbLogger, or None
        self.done = False

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, idx: int) -> None:
        if self.done or trainer.global_rank != 0:
            return
        self.done = True
        from fdsl_app.preview import image_grid  # PIL work only once per run

        images = batch[0][:64].detach().float().cpu()
        mean = torch.tensor(self.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.std).view(1, -1, 1, 1)
        if images.shape[1] == mean.shape[1]:
            images = images * std + mean
        tiles = (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        columns = 8
        rows = [list(tiles[i : i + columns]) for i in range(0, len(tiles), columns)]
        rows[-1] += [np.zeros_like(tiles[0])] * (columns - len(rows[-1]))
        labels = [str(int(v)) if batch[1].ndim == 1 else "" for v in batch[1][:64]]
        grid = image_grid(rows, [" ".join(labels[i : i + columns]) for i in range(0, len(tiles), columns)], scale=2)
        grid.save(self.path)
        if self.log_to is not None:
            self.log_to.log_image("samples", [str(self.path)])


class ResumeDataPosition(L.Callback):
    """On a resume mid-epoch, skip the batches the checkpointed run had already trained on in that epoch.

    Lightning restores the loops' progress but restarts the epoch's data from its beginning; the
    :class:`~fdsl_app.data.synthetic.EpochSampler` can start further in (its order is a pure function of the
    epoch), which makes the resumed run see exactly the batches the uninterrupted run would have seen.
    """

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        done = trainer.fit_loop.epoch_loop.batch_progress.current.completed
        if not done:
            return
        loader = trainer.train_dataloader
        sampler = getattr(loader, "sampler", None)
        if isinstance(sampler, EpochSampler):
            sampler.skip_next(done * loader.batch_size)


class RngState(L.Callback):
    """Saves the random generators (torch CPU and CUDA, numpy, Python) in checkpoints and restores them on resume,
    so that a resumed run draws the same dropout, drop-path and mixup randomness as an uninterrupted one."""

    def state_dict(self) -> dict[str, Any]:
        state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        torch.set_rng_state(state_dict["torch"])
        np.random.set_state(state_dict["numpy"])
        random.setstate(state_dict["python"])
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])
