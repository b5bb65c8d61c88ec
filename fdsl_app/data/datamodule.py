"""One LightningDataModule for every formula family, keyed by the family's registered name.

Class parameters come from a parameter file (``params_path``, written by ``fdsl_app search``) or are generated in
:meth:`FormulaDataModule.setup` from ``param_seed``. Generation is deterministic, so under DDP every rank
generates the same parameters on its own (``setup`` runs on every rank; nothing is broadcast); for families whose
generation is slow (a FractalDB category search) generate once with ``fdsl_app search`` and pass the file.

The training loader uses :class:`~fdsl_app.data.synthetic.EpochSampler`, which shards itself across ranks
(Lightning leaves it alone) and yields epoch-encoded indices, so images depend only on (seed, epoch, index):
not on workers, persistence, processes or nodes. Batches are ``(images, labels)``: uint8 ``(B, C, H, W)`` (gray
``C = 1``; colour in ``torch.channels_last`` memory format) and int64 class ids ``(B,)``; normalise on the device.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

import fdsl_app.families  # noqa: F401 - registers the families
from fdsl_app.cluster import ignore_job_signals
from fdsl_app.data.synthetic import (
    EpochSampler,
    FormulaAugmentSpec,
    FormulaDataset,
    collate_samples,
    trainer_replicas,
)
from fdsl_app.families.base import RENDER_SETTINGS, ClassParams, Family
from fdsl_app.families.params_io import load_params
from fdsl_app.families.registry import create_family


class FormulaDataModule(L.LightningDataModule):
    """Training data of one formula family, rendered on the fly.

    Args:
        family: registered family name (``fdsl_app.families.list_families()``).
        settings: overrides of the family's settings. With `params_path` the file's settings hold for the
            generation settings; only render settings (image size, points, mode, raster, colour, instances) may
            be given here.
        params_path: parameter file to train on; None generates parameters from `param_seed`.
        seed: run seed: per-sample random keys and the shuffle order.
        param_seed: seed of ``family.generate`` when there is no parameter file; defaults to `seed`.
        samples_per_epoch: samples per epoch (all ranks together); defaults to one pass over the family.
        batch_size: samples per batch and rank.
        num_workers: DataLoader worker processes (0: render in the main process on all cores).
        pin_memory: pin batches for faster host-to-GPU copies.
        persistent_workers: keep workers alive between epochs (needs `num_workers` > 0).
        drop_last: drop each epoch's last incomplete batch.
        shuffle: shuffle each epoch (else sequential order).
        prefetch_factor: batches each worker loads ahead (needs `num_workers` > 0; None: torch's default).

    Raises:
        ValueError: a setting is out of range, the family is unknown, or `settings` conflict with the parameter
            file; the message names the setting.
    """

    def __init__(
        self,
        family: str,
        settings: dict[str, Any] | None = None,
        *,
        params_path: str | None = None,
        seed: int = 0,
        param_seed: int | None = None,
        samples_per_epoch: int | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        drop_last: bool = True,
        shuffle: bool = True,
        prefetch_factor: int | None = None,
    ) -> None:
        super().__init__()
        _check_loader_settings(
            seed=seed, param_seed=param_seed, samples_per_epoch=samples_per_epoch, batch_size=batch_size,
            num_workers=num_workers, persistent_workers=persistent_workers, prefetch_factor=prefetch_factor,
        )  # fmt: skip
        self.family_name = family
        self.params_path = params_path
        self.seed = seed
        self.param_seed = seed if param_seed is None else param_seed
        self.samples_per_epoch = samples_per_epoch
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers
        self.drop_last = drop_last
        self.shuffle = shuffle
        self.prefetch_factor = prefetch_factor
        # The family is built now (cheap) so that bad settings fail at construction; a parameter file is read now
        # because its settings decide the family's; generation, the expensive part, waits for setup().
        self.family, self._file_params = _resolve_family(family, dict(settings or {}), params_path)
        self.dataset: FormulaDataset | None = None

    @property
    def num_classes(self) -> int:
        return self.family.num_classes

    def setup(self, stage: str | None = None) -> None:
        """Generate (or take the file's) class parameters and build the dataset, once."""
        if self.dataset is not None:
            return
        params = self._file_params if self._file_params is not None else self.family.generate(self.param_seed)
        self.dataset = FormulaDataset(
            self.family, params, seed=self.seed, samples_per_epoch=self.samples_per_epoch, channels_first=True,
            formula_augment=self.formula_augment_spec(),
        )  # fmt: skip

    def formula_augment_spec(self) -> FormulaAugmentSpec | None:
        """Crops and flips in formula space for the training set, or None (subclasses decide)."""
        return None

    def train_dataloader(self) -> DataLoader:
        """Loader of ``(uint8 images (B, C, H, W), int64 labels (B,))`` batches, sharded across ranks."""
        self.setup("fit")
        assert self.dataset is not None
        sampler = EpochSampler(self.dataset, seed=self.seed, shuffle=self.shuffle, **trainer_replicas(self.trainer))
        if self.drop_last and len(sampler) < self.batch_size:
            raise ValueError(
                f"batch_size {self.batch_size} exceeds the {len(sampler)} samples per epoch of this rank: with "
                f"drop_last every batch is dropped; raise samples_per_epoch or lower batch_size"
            )
        return DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=collate_samples,
            pin_memory=self.pin_memory,
            drop_last=self.drop_last,
            persistent_workers=self.persistent_workers,
            worker_init_fn=ignore_job_signals,
            prefetch_factor=self.prefetch_factor,
            # Its own generator: starting an iterator (as a resumed run does mid-epoch) must not consume the
            # global torch RNG that dropout, drop path and mixup draw from.
            generator=torch.Generator().manual_seed(self.seed),
        )


def _resolve_family(name: str, settings: dict[str, Any], params_path: str | None) -> tuple[Family, ClassParams | None]:
    """The family to render with and the file's parameters (None without a file)."""
    if params_path is None:
        return create_family(name, **settings), None
    params = load_params(params_path, family=name)
    conflicts = sorted(
        key
        for key, value in settings.items()
        if key not in RENDER_SETTINGS and key in params.settings and _norm(value) != _norm(params.settings[key])
    )
    if conflicts:
        detail = ", ".join(f"{key}: given {settings[key]!r}, file {params.settings[key]!r}" for key in conflicts)
        raise ValueError(
            f"settings conflict with parameter file {params_path} ({detail}); generation settings come from the "
            f"file, only render settings ({', '.join(sorted(RENDER_SETTINGS))}) may be overridden"
        )
    family = create_family(name, **{**params.settings, **settings})
    family.check_params(params)
    return family, params


def _norm(value: Any) -> Any:
    """Tuples and lists compare equal (a parameter file's settings went through JSON)."""
    return list(value) if isinstance(value, tuple) else value


def _check_loader_settings(
    *,
    seed: int,
    param_seed: int | None,
    samples_per_epoch: int | None,
    batch_size: int,
    num_workers: int,
    persistent_workers: bool,
    prefetch_factor: int | None,
) -> None:
    """Raise ValueError naming the first impossible loader setting."""

    def is_int(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    problems = [
        (not is_int(seed) or seed < 0, f"seed must be an int >= 0, got {seed!r}"),
        (param_seed is not None and (not is_int(param_seed) or param_seed < 0),
         f"param_seed must be an int >= 0 or None (use seed), got {param_seed!r}"),
        (samples_per_epoch is not None and (not is_int(samples_per_epoch) or samples_per_epoch < 1),
         f"samples_per_epoch must be an int >= 1 or None (one pass over the family), got {samples_per_epoch!r}"),
        (not is_int(batch_size) or batch_size < 1, f"batch_size must be an int >= 1, got {batch_size!r}"),
        (not is_int(num_workers) or num_workers < 0, f"num_workers must be an int >= 0, got {num_workers!r}"),
        (persistent_workers and num_workers == 0,
         "persistent_workers needs num_workers > 0 (there are no worker processes to keep)"),
        (prefetch_factor is not None and (not is_int(prefetch_factor) or prefetch_factor < 1),
         f"prefetch_factor must be an int >= 1 or None, got {prefetch_factor!r}"),
        (prefetch_factor is not None and num_workers == 0,
         "prefetch_factor needs num_workers > 0 (the main process does not prefetch)"),
    ]  # fmt: skip
    for bad, message in problems:
        if bad:
            raise ValueError(message)
