"""Each use of Lightning below its public API (fdsl_app/training/lightning_internals.py), against the installed
Lightning: an upgrade that moves one fails here, by name."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, Sampler, TensorDataset

from fdsl_app.training.lightning_internals import (
    clear_received_sigterm,
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


def test_clear_received_sigterm_forgets_lightnings_record():
    trainer = _trainer(max_steps=1)
    trainer._signal_connector.received_sigterm = True  # what Lightning's SIGTERM handler records
    assert trainer.received_sigterm
    clear_received_sigterm(trainer)
    assert not trainer.received_sigterm
