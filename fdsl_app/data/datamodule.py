"""LightningDataModules of the formula families: :class:`FormulaDataModule` (any family, rendered on the fly) and
:class:`FamilyDataModule` (the training app's: device augmentation and a fixed validation set).

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

import logging
from dataclasses import replace
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from fdsl_app.config import AugmentCfg
from fdsl_app.data.augment import DeviceAugment
from fdsl_app.data.loader import make_loader
from fdsl_app.data.synthetic import (
    EpochSampler,
    FormulaAugmentSpec,
    FormulaDataset,
    collate_samples,
    trainer_replicas,
)
from fdsl_app.families import resolve_family
from fdsl_app.families.ifs import DrawPlan, cached_mode
from fdsl_app.render.keys import derive, sample_keys, splitmix64
from fdsl_app.render.torch_draw import cache_tensor, draw_cached_torch


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
        cache_dir: folder of attractor caches for mode cached (None: ``$FDSL_CACHE_DIR`` or the node's temporary
            folder, shared by its processes).

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
        cache_dir: str | None = None,
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
        self.cache_dir = cache_dir
        # The family is built now (cheap) so that bad settings fail at construction; a parameter file is read now
        # because its settings decide the family's; generation, the expensive part, waits for setup().
        self.family, self._file_params = resolve_family(family, dict(settings or {}), params_path)
        self.dataset: FormulaDataset | None = None

    @property
    def num_classes(self) -> int:
        return self.family.num_classes

    def setup(self, stage: str | None = None) -> None:
        """Generate (or take the file's) class parameters and build the dataset, once."""
        if self.dataset is not None:
            return
        params = self._file_params if self._file_params is not None else self.family.generate(self.param_seed)
        # Before any loader worker starts, so that they all map the one cache file.
        self.family.prepare(params, cache_dir=self.cache_dir, progress=True)
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
        return self._loader(self.dataset, sampler=sampler, drop_last=self.drop_last)

    def _loader(self, dataset: Dataset, **kwargs: Any) -> DataLoader:
        return make_loader(
            dataset, batch_size=self.batch_size, seed=self.seed, num_workers=self.num_workers,
            pin_memory=self.pin_memory, persistent_workers=self.persistent_workers,
            prefetch_factor=self.prefetch_factor, collate_fn=collate_samples, **kwargs,
        )  # fmt: skip


DRAWS = ("auto", "cpu", "device")  # where mode cached draws: auto = the device when it is a GPU
_VAL_STREAM = 0x7A1  # sub-key of the run seed for the validation renders: never a training key
_AUGMENT_SALT = 0xA06_0E47  # keeps batch-augmentation seeds apart from the per-sample render keys

log = logging.getLogger(__name__)


class FamilyDataModule(FormulaDataModule):
    """:class:`~fdsl_app.data.datamodule.FormulaDataModule` with device augmentation and a fixed validation set.

    Training batches leave the loader as uint8 renders (the family's own render size) and are augmented after the
    transfer by :class:`~fdsl_app.data.augment.DeviceAugment` (random resized crop to `image_size`, flips,
    RandAugment, normalisation, random erasing). Each batch's augmentation seed is a hash of (run seed, epoch,
    batch index within the epoch, global rank), from the count of training batches the module has augmented: it is
    saved in checkpoints (the DataModule's ``state_dict``), so a run and its resume augment alike.

    Validation: one render of instance 0 for each of ``min(num_classes, val_classes)`` classes (evenly spaced
    class ids when there are more), the same images every epoch, resized to `image_size` and normalised (no random
    augmentation). The renders use keys of a seed derived from the run seed, so their random draws (patch masks,
    chain seeds) are not any training sample's; their class parameters are those of a training instance, though
    (FDSL has no unseen instances: ofdb and onepfrac have one per class), so val/top1 measures how well the classes
    are fitted under fresh render noise, not generalisation.

    Args:
        family, settings: as FormulaDataModule; `settings` keep the family's render size unless they set one.
        augment: augmentation config (default :class:`~fdsl_app.config.AugmentCfg`).
        image_size: side S of the augmented images.
        val_classes: classes in the validation set (one image each).
        **kwargs: the other FormulaDataModule arguments (params_path, seed, param_seed, samples_per_epoch,
            batch_size, num_workers, pin_memory, persistent_workers, ...).
    """

    def __init__(
        self,
        family: str,
        settings: dict[str, Any] | None = None,
        *,
        augment: AugmentCfg | None = None,
        image_size: int = 32,
        val_classes: int = 1000,
        draw: str = "auto",
        **kwargs: Any,
    ) -> None:
        super().__init__(family, settings, **kwargs)
        if val_classes < 1:
            raise ValueError(f"val_classes must be >= 1, got {val_classes}")
        if draw not in DRAWS:
            raise ValueError(f"draw must be one of {', '.join(DRAWS)}, got {draw!r}")
        cached = cached_mode(self.family)
        if draw == "device" and not cached:
            raise ValueError(f"draw=device needs the attractor cache: {self.family.name} setting mode=cached")
        # auto: on a GPU the cached draw runs there, one call a step, with no image leaving the host.
        self.draw = "device" if draw == "device" or (draw == "auto" and cached and torch.cuda.is_available()) else "cpu"
        self._device_cache: torch.Tensor | None = None
        augment = augment if augment is not None else AugmentCfg()
        self.image_size = int(image_size)
        self.val_classes = val_classes
        self.augment = augment
        # The fastest path the family allows: IFS families in mode cached draw each sample's crop and flips from the
        # attractor cache, in fast mode on the points, straight at the training size; the device then adds only
        # photometric augmentation and erasing.
        self.path = _describe_path(self.family, self.draw)
        geometric = replace(augment, scale=[1.0, 1.0], hflip=0.0, vflip=0.0) if self.family.formula_augment else augment
        log.info("data path: %s (%s)", self.path, self.family.name)
        self.train_augment = DeviceAugment(geometric, image_size, train=True, seed=self.seed)
        self.eval_augment = DeviceAugment(augment, image_size, train=False)
        self.val_dataset: Subset | None = None
        self.trained_batches = 0  # training batches augmented in this run, resumes included

    def state_dict(self) -> dict[str, Any]:
        return {"trained_batches": self.trained_batches}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.trained_batches = int(state_dict["trained_batches"])

    def formula_augment_spec(self) -> FormulaAugmentSpec | None:
        if not self.family.formula_augment:
            return None
        a = self.augment
        return FormulaAugmentSpec(self.image_size, (a.scale[0], a.scale[1]), a.hflip, a.vflip)

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        if self.val_dataset is None:
            assert self.dataset is not None
            val_seed = int(derive(np.uint64(self.seed), _VAL_STREAM))
            # Drawn like the training images (at the training size when those are cropped in formula space), the
            # whole image: the validation set must look like what the model trains on.
            whole = None
            if self.family.formula_augment:
                whole = FormulaAugmentSpec(self.image_size, (1.0, 1.0), 0.0, 0.0)
            renders = FormulaDataset(self.family, self.dataset.params, seed=val_seed, channels_first=True,
                                     formula_augment=whole, draw_plans=self.draw == "device")  # fmt: skip
            self.val_dataset = Subset(renders, self.val_indices())
            self.dataset.draw_plans = self.draw == "device"
            if cached_mode(self.family):
                log.info("attractor cache: %s", self.family.describe_cache())

    def val_indices(self) -> list[int]:
        """Dataset indices of the validation renders: instance 0 of each chosen class."""
        classes = self.family.num_classes
        chosen = np.unique(np.linspace(0, classes - 1, min(classes, self.val_classes)).round().astype(np.int64))
        return (chosen * self.family.instances_per_class).tolist()

    def val_dataloader(self) -> DataLoader:
        """Loader of the fixed validation renders (uint8, resized on the device), in class order."""
        self.setup("validate")
        assert self.val_dataset is not None
        return self._loader(self.val_dataset)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()

    def augment_batch(
        self, batch: tuple[torch.Tensor, torch.Tensor], *, train: bool, seed: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(uint8 images, labels)`` into ``(normalised float (B, 3, S, S), labels)`` (training or eval transform)."""
        images, labels = batch
        out = self.train_augment(images, seed=seed) if train else self.eval_augment(images)
        return out, labels

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """Draw plans stay on the host, where the device draw reads them (no copy there and back each step)."""
        if self.draw != "device":
            return super().transfer_batch_to_device(batch, device, dataloader_idx)
        plans, labels = batch
        return plans, labels.to(device)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Augment training batches, resize the others, on the device they now sit on (drawing them there first when
        the loader brought draw plans)."""
        trainer = self.trainer
        train = trainer is not None and bool(trainer.training)
        if self.draw == "device":
            batch = (self.draw_on_device(batch[0], batch[1].device), batch[1])
        images, labels = self.augment_batch(batch, train=train, seed=self._batch_seed() if train else None)
        if trainer is not None:
            # Lightning cast the batch for "*-true" precisions before the transfer, when it was still uint8;
            # cast the float images now (a no-op for mixed and 32-bit precision).
            images = trainer.precision_plugin.convert_input(images)
        return images, labels

    def draw_on_device(self, plans: torch.Tensor, device: torch.device | str) -> torch.Tensor:
        """``(B, 7)`` draw plans (on the host) into ``(B, 1, S, S)`` uint8 images drawn on `device` from the
        attractor cache (copied there once) by :func:`~fdsl_app.render.torch_draw.draw_cached_torch`."""
        device = torch.device(device)
        if self._device_cache is None or self._device_cache.device != device:
            self._device_cache = cache_tensor(self.family.cache_words(), device)
        plan = DrawPlan.unpack(plans.numpy())
        images = draw_cached_torch(self._device_cache, plan.index, plan.patch_seeds, raster=self.family.settings.raster,
                                   size=self.image_size, crops=plan.crops, flips=plan.flips)  # fmt: skip
        return images.unsqueeze(1)

    def _batch_seed(self) -> int:
        """Hash of (run seed, epoch, batch index in the epoch, global rank) of the training batch now augmented."""
        trainer = self.trainer
        epoch, index = divmod(self.trained_batches, max(1, int(trainer.num_training_batches)))
        self.trained_batches += 1
        salted = int(splitmix64(np.uint64(self.seed) ^ np.uint64(_AUGMENT_SALT)))
        key = sample_keys(salted, epoch, np.array([index], dtype=np.uint64))
        return int(derive(key, int(trainer.global_rank))[0]) >> 1  # 63 bits: any torch seed


def _describe_path(family: Any, draw: str) -> str:
    """The startup line's account of where each training image comes from."""
    if cached_mode(family):
        masks = "fixed per (class, instance)" if family.settings.fixed_masks else "fresh every epoch"
        where = "on the training device, one call per step" if draw == "device" else "in the loader (C++)"
        return (f"attractor cache, each sample's patch masks ({masks}), crop and flips drawn {where}; device "
                "photometric augmentation")
    if family.formula_augment:
        return "formula-space crop + device photometric augmentation"
    return "device augmentation"


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
