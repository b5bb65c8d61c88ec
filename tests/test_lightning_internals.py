"""Each use of Lightning below its public API (fdsl_app/training/lightning_internals.py), against the installed
Lightning: an upgrade that moves one fails here, by name."""

from __future__ import annotations

import time

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import Logger
from torch.utils.data import DataLoader, Sampler, TensorDataset

from fdsl_app.training.callbacks import Throughput
from fdsl_app.training.lightning_internals import (
    LoaderFetchTimer,
    align_logged_step,
    clear_received_sigterm,
    pending_step_row,
    processed_batches,
    restart_train_iterator,
    stop_by_steps,
)

pytestmark = [
    # Lightning 2.6's pytree helper trips torch >= 2.10's LeafSpec deprecation; tiny loaders without workers.
    pytest.mark.filterwarnings(r"ignore:`isinstance\(treespec, LeafSpec\)` is deprecated:FutureWarning"),
    pytest.mark.filterwarnings("ignore::lightning.fabric.utilities.warnings.PossibleUserWarning"),
]


class Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.seen: list[int] = []

    def training_step(self, batch, batch_idx):
        index, x = batch
        self.seen += index.tolist()
        return self.layer(x).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


class Movable(Sampler[int]):
    """In order from `start`, which can change after an iterator was made (as EpochSampler.start_at does)."""

    def __init__(self, n: int) -> None:
        self.n, self.start = n, 0

    def __iter__(self):
        return iter(range(self.start, self.n))

    def __len__(self) -> int:
        return self.n


def _loader(n: int = 4, sampler: Sampler[int] | None = None) -> DataLoader:
    data = TensorDataset(torch.arange(n), torch.randn(n, 2))
    return DataLoader(data, batch_size=1, sampler=sampler)


def _trainer(**kwargs) -> L.Trainer:
    options = dict(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False)  # fmt: skip
    return L.Trainer(**(options | kwargs))


def test_stop_by_steps_ends_the_fit_at_that_step_over_epochs():
    trainer = _trainer(max_epochs=1)  # one epoch is 4 steps; the step limit must win over it
    stop_by_steps(trainer, 6)
    module = Tiny()
    trainer.fit(module, _loader())
    assert trainer.global_step == 6 and module.seen == [0, 1, 2, 3, 0, 1]
    assert processed_batches(trainer) == 6


def test_restart_train_iterator_starts_the_epoch_again_from_a_moved_sampler():
    sampler = Movable(4)

    class MoveAtStart(L.Callback):
        def on_train_start(self, trainer, pl_module):
            sampler.start = 2  # the iterator Lightning made already starts at 0
            restart_train_iterator(trainer)

    module = Tiny()
    _trainer(max_steps=2, callbacks=[MoveAtStart()]).fit(module, _loader(sampler=sampler))
    assert module.seen == [2, 3]


class Logged(Tiny):
    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        self.log("loss", loss)
        self.log("twice", 2 * loss, on_step=True, on_epoch=True)
        return loss


class Rows(Logger):
    """A logger that keeps the rows it is given."""

    name, version = "rows", 0

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, float]] = []

    def log_metrics(self, metrics, step=None):
        self.rows.append({**metrics, "step": step})

    def log_hyperparams(self, params, *args, **kwargs):
        pass


def test_pending_step_row_is_the_row_the_loggers_get_after_the_hooks():
    predicted: list[dict[str, float] | None] = []

    class Predict(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            predicted.append(pending_step_row(trainer))

    rows = Rows()
    _trainer(max_steps=6, callbacks=[Predict()], logger=rows, log_every_n_steps=2).fit(Logged(), _loader(8))
    step_rows = [r for r in rows.rows if "loss" in r]
    assert len(step_rows) == 3  # every other step logs
    assert [p for p in predicted if p is not None] == [{k: float(v) for k, v in r.items()} for r in step_rows]
    assert predicted[0] is None and predicted[1] is not None  # steps 1, 3, 5 log nothing


@pytest.mark.parametrize("align", [False, True])
def test_align_logged_step_numbers_the_rows_by_the_optimiser_step(align):
    class OffByFive(L.Callback):  # a count out of step with the optimiser's, as a restored checkpoint can leave it
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx == 0:
                trainer.fit_loop.epoch_loop._batches_that_stepped = 5
                if align:
                    align_logged_step(trainer)

    rows = Rows()
    _trainer(max_steps=3, callbacks=[OffByFive()], logger=rows, log_every_n_steps=1).fit(Logged(), _loader(8))
    assert [r["step"] for r in rows.rows if "loss" in r] == ([0, 1, 2] if align else [5, 6, 7])


def test_clear_received_sigterm_forgets_lightnings_record():
    trainer = _trainer(max_steps=1)
    trainer._signal_connector.received_sigterm = True  # what Lightning's SIGTERM handler records
    assert trainer.received_sigterm
    clear_received_sigterm(trainer)
    assert not trainer.received_sigterm


class Slow(TensorDataset):
    """A dataset that takes `seconds` per sample: a loader the training loop waits for."""

    def __init__(self, n: int, seconds: float) -> None:
        super().__init__(torch.arange(n), torch.randn(n, 2))
        self.seconds = seconds

    def __getitem__(self, index):
        time.sleep(self.seconds)
        return super().__getitem__(index)


class SlowAfterStep(L.Callback):
    """Lightning's own work between steps (callbacks, logging), stood in for by a sleep after each step."""

    def __init__(self, seconds: float = 0.03) -> None:
        self.seconds = seconds

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        time.sleep(self.seconds)


def test_loader_fetch_timer_times_the_training_loaders_next_only():
    timer = LoaderFetchTimer()
    trainer = _trainer(max_steps=6, profiler=timer, callbacks=[SlowAfterStep(0.1)])
    trainer.fit(Tiny(), DataLoader(Slow(6, 0.02), batch_size=1))
    # 6 fetches of 20 ms; the 6 x 100 ms after the steps are not fetches.
    assert 0.12 <= timer.seconds < 0.12 + 0.25


def test_throughput_counts_the_loader_wait_not_the_work_between_steps():
    def data_wait(dataset, *callbacks) -> dict[str, float]:
        throughput = Throughput(window=2)
        trainer = _trainer(max_steps=8, profiler=throughput.fetch_timer, callbacks=[throughput, *callbacks])
        trainer.fit(Tiny(), DataLoader(dataset, batch_size=1))
        return throughput.summary()

    waiting = data_wait(Slow(8, 0.03))  # 30 ms per batch from the loader, about 1 ms of step
    assert waiting["perf/data_wait"] > 0.7
    busy = data_wait(Slow(8, 0.0), SlowAfterStep())  # 30 ms of work between steps, an instant loader
    assert busy["perf/data_wait"] < 0.2
    assert busy["perf/images_per_sec"] < 40  # the 30 ms still count in the step time: at most 1 / 0.03 = 33 img/s


def test_throughput_refuses_a_trainer_without_its_timer():
    with pytest.raises(ValueError, match="profiler=throughput.fetch_timer"):
        _trainer(max_steps=1, callbacks=[Throughput()]).fit(Tiny(), _loader())


def test_drop_wandb_anonymous_leaves_the_setting_unset():
    from lightning.pytorch.loggers import WandbLogger

    from fdsl_app.training.lightning_internals import drop_wandb_anonymous

    logger = WandbLogger(offline=True)
    assert "anonymous" in logger._wandb_init  # what W&B warns about, were it passed on
    drop_wandb_anonymous(logger)
    assert "anonymous" not in logger._wandb_init
