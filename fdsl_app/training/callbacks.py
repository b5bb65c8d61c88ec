"""Lightning callbacks of a run: data-wait accounting, the training-sample grid, and mid-epoch resume.

- :class:`Throughput` logs images per second and the share of step time spent waiting for data (the time from the
  end of one training step to the start of the next: fetching the batch, moving it to the device, augmenting it).
- :class:`SampleGrid` saves a grid of the first training batch as the model sees it (after augmentation).
- :class:`RngState` keeps the random generators in checkpoints.
- :class:`DataPosition` makes a resumed run continue its data where the checkpoint was taken, so that its data order
  (and hence its losses) equal an uninterrupted run's.
- :class:`SampleLedger` writes which samples each rank trained on (``log.sample_ledger``).
- :class:`LastCheckpoint` saves ``last.ckpt`` at optimiser-step boundaries.
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
from fdsl_app.files import atomic_path
from fdsl_app.training.lightning_internals import (
    LoaderFetchTimer,
    align_logged_step,
    pending_step_row,
    processed_batches,
    restart_train_iterator,
)


class Throughput(L.Callback):
    """Logs ``perf/images_per_sec`` and ``perf/data_wait``: the share of wall time the training loop spent blocked
    in the loader's ``next()`` (timed by :attr:`fetch_timer`, which must be the Trainer's profiler). Lightning's own
    work between steps (other callbacks, logging, the batch transfer and its hooks) is step time, not data wait; so
    is the epoch boundary (validation, loader start-up)."""

    def __init__(self, window: int = 20) -> None:
        self.window = window
        self.fetch_timer = LoaderFetchTimer()
        self._last_end: float | None = None
        self._fetched_at_end = 0.0
        self._wait = self._elapsed = 0.0
        self._images = 0
        self._steps = 0
        self.history: list[dict[str, float]] = []

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.profiler is not self.fetch_timer:
            raise ValueError("Throughput times the loader through the Trainer's profiler: build the Trainer with "
                             "profiler=throughput.fetch_timer")  # fmt: skip

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last_end = None  # the epoch boundary is not counted

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, idx: int) -> None:
        now = time.perf_counter()
        if self._last_end is not None:
            self._elapsed += now - self._last_end
            self._wait += self.fetch_timer.seconds - self._fetched_at_end
        self._start = now

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        now = time.perf_counter()
        self._elapsed += now - self._start
        self._last_end = now
        self._fetched_at_end = self.fetch_timer.seconds
        self._images += len(batch[0]) * trainer.world_size
        self._steps += 1
        if self._steps % self.window == 0:
            self._log(pl_module)

    def _log(self, pl_module: L.LightningModule) -> None:
        total = self._elapsed
        if total <= 0:
            return
        row = {"perf/images_per_sec": self._images / total, "perf/data_wait": self._wait / total}
        self.history.append(row)
        pl_module.log_dict(row, on_step=True, on_epoch=False)
        self._wait = self._elapsed = 0.0
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
        from fdsl_app.render.grid import image_grid  # PIL work only once per run

        images = batch[0][:64].detach().float().cpu()
        mean = torch.tensor(self.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.std).view(1, -1, 1, 1)
        if mean.shape[1] in (1, images.shape[1]):  # a single mean/std applies to every channel
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


class DataPosition(L.Callback):
    """Keeps the training data in step with the optimisation: epoch ``b // B`` from position ``b % B``, where ``b``
    counts the training batches of the run (kept in checkpoints) and ``B`` is the number of batches in an epoch.

    A resumed run thus continues exactly where its checkpoint was taken, mid-epoch or at an epoch's end, with the
    batches an uninterrupted run would see. Lightning's own epoch counter cannot be trusted for this: resumed from a
    checkpoint taken at an epoch's last batch, it skips an epoch number. (fit also stops by steps, not epochs.)
    """

    def __init__(self) -> None:
        self.batches = 0
        self._loaded = False

    def state_dict(self) -> dict[str, Any]:
        return {"batches": self.batches}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.batches = int(state_dict["batches"])
        self._loaded = True

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._loaded and trainer.global_step > 0:  # a checkpoint from before this callback: Lightning's count
            self.batches = processed_batches(trainer)
        sampler = train_sampler(trainer)
        if sampler is None or not (self.batches or sampler.drawn is not None):
            return  # a fresh run's first iterator starts at epoch 0, position 0 already; nothing to redo
        self._point(trainer)
        # Lightning made the epoch's first iterator before this hook, and with workers the loader has drawn indices
        # already (before the resume position, and before SampleLedger started recording): start it again from the
        # pinned position (with persistent workers, the same workers).
        restart_train_iterator(trainer)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, idx: int) -> None:
        self.batches += 1  # counted at the start: a checkpoint taken at this batch's end includes it

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.batches % trainer.num_training_batches == 0:
            self._point(trainer)  # the next epoch, from its beginning

    def _point(self, trainer: L.Trainer) -> None:
        sampler = train_sampler(trainer)
        if sampler is not None:
            epoch, within = divmod(self.batches, int(trainer.num_training_batches))
            sampler.start_at(epoch, within * trainer.train_dataloader.batch_size)


def train_sampler(trainer: L.Trainer) -> EpochSampler | None:
    """The EpochSampler of the training loader (every fdsl_app DataModule has one), or None."""
    sampler = getattr(trainer.train_dataloader, "sampler", None)
    return sampler if isinstance(sampler, EpochSampler) else None


class SampleLedger(L.Callback):
    """Appends ``epoch index`` lines to ``<folder>/rank<R>.txt``: the dataset index of every sample this rank trained
    on, at the end of each epoch and of the fit (a resumed run adds the rest of its epoch).

    The indices are those the loader drew from the rank's EpochSampler, cut to the batches that reached a training
    step (the loader prefetches ahead). Over all ranks, an epoch's lines hold each sample exactly once (up to the
    padding that evens out the ranks).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._batches = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        sampler = train_sampler(trainer)
        if sampler is None:
            raise ValueError("log.sample_ledger needs a training loader with an EpochSampler (every fdsl_app source)")
        sampler.record()
        self.folder.mkdir(parents=True, exist_ok=True)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._batches += 1

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write(trainer)  # a run stopped mid-epoch

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._write(trainer)  # SIGTERM ends a run with an exception, after its checkpoint

    def _write(self, trainer: L.Trainer) -> None:
        sampler = train_sampler(trainer)
        if sampler is None or sampler.drawn is None or not self._batches:
            return
        used = sampler.drawn[: self._batches * trainer.train_dataloader.batch_size]
        with open(self.folder / f"rank{trainer.global_rank}.txt", "a") as f:
            f.writelines(f"{sampler.drawn_epoch} {index}\n" for index in used)
        del sampler.drawn[: len(used)]
        self._batches = 0


class RngState(L.Callback):
    """Saves the random generators (torch CPU and CUDA, numpy, Python) in checkpoints and restores them on resume,
    so that a resumed run draws the same dropout, drop-path and mixup randomness as an uninterrupted one."""

    def state_dict(self) -> dict[str, Any]:
        # Tensors and plain Python values only, so that torch.load(weights_only=True) can read the checkpoint.
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        state = {
            "torch": torch.get_rng_state(), "python": random.getstate(),
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
        }  # fmt: skip
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Applied at on_train_start: Lightning restores callbacks before its sanity-check validation, whose loader
        # would draw from the generators again.
        self._pending = state_dict

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        state_dict, self._pending = getattr(self, "_pending", None), None
        if state_dict is None:
            return
        torch.set_rng_state(state_dict["torch"])
        kind, keys, pos, has_gauss, gauss = state_dict["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
        random.setstate(state_dict["python"])
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])


class LastCheckpoint(L.Callback):
    """Writes ``last.ckpt`` at a training step: every `every_n_steps` steps, at the last step of the run, at the end
    of each epoch when no step interval is set, and at `stop_at_step`, where it also stops the run.

    A stop requested before this callback runs (:class:`~fdsl_app.training.preemption.Preemption`, placed before it)
    also saves. The checkpoint is taken right after the optimiser step, mid-epoch, so that a run resumed from it
    continues the same epoch with the same data and randomness (unlike a checkpoint taken after the epoch-end hooks,
    from which Lightning starts the next epoch). The file is replaced atomically.
    """

    def __init__(self, path: Path, every_n_steps: int | None = None, stop_at_step: int | None = None) -> None:
        self.path = Path(path)
        self.every_n_steps = every_n_steps
        self.stop_at_step = stop_at_step
        self._seen_step = -1
        self._aligned = False
        self._pending_row: dict[str, float] | None = None
        self.recovered_row: dict[str, float] | None = None  # the pending row of the checkpoint resumed from

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._seen_step = trainer.global_step  # a resumed run's first micro-batch is no step boundary
        self._aligned = False

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        # At the first batch, after Lightning's own restart adjustment (in its epoch loop's reset, which follows
        # on_train_start): rows after a resume from any checkpoint keep their steps.
        if not self._aligned:
            align_logged_step(trainer)
            self._aligned = True

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if step == self._seen_step:  # a micro-batch of gradient accumulation: no optimiser step, nothing to save
            return
        self._seen_step = step
        final = trainer.should_stop or (trainer.max_steps > 0 and step >= trainer.max_steps)
        last_batch = batch_idx + 1 >= trainer.num_training_batches
        final |= last_batch and trainer.current_epoch + 1 >= (trainer.max_epochs or 1) and trainer.max_steps < 0
        periodic = self.every_n_steps is not None and step % self.every_n_steps == 0
        stop = self.stop_at_step is not None and step >= self.stop_at_step
        if stop:
            trainer.should_stop = True
        if final or periodic or stop or (self.every_n_steps is None and last_batch):
            self.save(trainer)

    def state_dict(self) -> dict[str, Any]:
        return {"pending_row": self._pending_row}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.recovered_row = state_dict.get("pending_row")

    def save(self, trainer: L.Trainer) -> None:
        """Write the checkpoint (every rank takes part; rank 0 writes the file, atomically).

        The metrics rows it covers are on disk before it: the loggers' buffered rows are flushed first, and this
        step's row, which Lightning logs only after these hooks, goes into the checkpoint (``recovered_row`` after a
        resume), so that a kill right after the checkpoint loses no row."""
        for logger in trainer.loggers:
            logger.save()
        self._pending_row = pending_step_row(trainer)
        if not trainer.is_global_zero:
            trainer.save_checkpoint(self.path)  # a collective: the other ranks write nothing
            return
        with atomic_path(self.path) as tmp:
            trainer.save_checkpoint(tmp)
