"""Every place fdsl_app reaches into Lightning below its public API, in one module.

Each function names what it needs and why the public API does not give it; ``tests/test_lightning_internals.py``
exercises each against the installed Lightning, and ``pyproject.toml`` bounds Lightning to the versions those
tests passed with (2.6). A Lightning upgrade that moves one of these fails there first, by name.
"""

from __future__ import annotations

import lightning as L


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


def clear_received_sigterm(trainer: L.Trainer) -> None:
    """Forget a SIGTERM that Lightning's own handler recorded, once our handler has taken it over (else Lightning
    would stop the fit at its next check, without our step-boundary checkpoint)."""
    trainer._signal_connector.received_sigterm = False
