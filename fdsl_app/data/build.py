"""The DataModule of a run: rendered formula families (augmented on the device) or real fine-tuning sets.

Whatever the source, batches reach ``training_step`` / ``validation_step`` as ``(float32 images (B, 3, S, S)
normalised with data.augment.mean/std, int64 labels (B,))`` with ``S = data.image_size``: real data is transformed
in the loader workers, rendered data in :meth:`FamilyDataModule.on_after_batch_transfer` on the training device.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from fdsl_app.cluster import ignore_job_signals
from fdsl_app.config import AugmentCfg, RunCfg, per_device_batch_size
from fdsl_app.data.augment import DeviceAugment
from fdsl_app.data.datamodule import FormulaDataModule
from fdsl_app.data.real import REAL_DATAMODULES
from fdsl_app.data.synthetic import FormulaAugmentSpec, FormulaDataset, collate_samples
from fdsl_app.render.keys import derive, sample_keys, splitmix64

_VAL_STREAM = 0x7A1  # sub-key of the run seed for the validation renders: never a training key
_AUGMENT_SALT = 0xA06_0E47  # keeps batch-augmentation seeds apart from the per-sample render keys


log = logging.getLogger(__name__)


class FamilyDataModule(FormulaDataModule):
    """:class:`~fdsl_app.data.datamodule.FormulaDataModule` with device augmentation and a fixed validation set.

    Training batches leave the loader as uint8 renders (the family's own render size) and are augmented after the
    transfer by :class:`~fdsl_app.data.augment.DeviceAugment` (random resized crop to `image_size`, flips,
    RandAugment, normalisation, random erasing). Each batch's augmentation seed is a hash of (run seed, epoch,
    batch index within the epoch, global rank); the batch index is Lightning's progress counter, which a resumed
    run restores, so a run and its resume augment alike.

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
        **kwargs: Any,
    ) -> None:
        super().__init__(family, settings, **kwargs)
        if val_classes < 1:
            raise ValueError(f"val_classes must be >= 1, got {val_classes}")
        augment = augment if augment is not None else AugmentCfg()
        self.image_size = int(image_size)
        self.val_classes = val_classes
        self.augment = augment
        # The fastest path the family allows: IFS families in fast mode crop and flip the points and draw at the
        # training size (no pixel resampling); the device then adds only photometric augmentation and erasing.
        self.path = "formula-space crop + device photometric" if self.family.formula_augment else "device"
        geometric = replace(augment, scale=[1.0, 1.0], hflip=0.0, vflip=0.0) if self.family.formula_augment else augment
        log.info("data path: %s augmentation (%s)", self.path, self.family.name)
        self.train_augment = DeviceAugment(geometric, image_size, train=True, seed=self.seed)
        self.eval_augment = DeviceAugment(augment, image_size, train=False)
        self.val_dataset: Subset | None = None

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
                                     formula_augment=whole)  # fmt: skip
            self.val_dataset = Subset(renders, self.val_indices())

    def val_indices(self) -> list[int]:
        """Dataset indices of the validation renders: instance 0 of each chosen class."""
        classes = self.family.num_classes
        chosen = np.unique(np.linspace(0, classes - 1, min(classes, self.val_classes)).round().astype(np.int64))
        return (chosen * self.family.instances_per_class).tolist()

    def val_dataloader(self) -> DataLoader:
        """Loader of the fixed validation renders (uint8, resized on the device), in class order."""
        self.setup("validate")
        assert self.val_dataset is not None
        return DataLoader(
            self.val_dataset,
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=collate_samples,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
            worker_init_fn=ignore_job_signals,
            # Starting its iterator must not draw from the global torch RNG (dropout, mixup): a resumed run starts
            # its validation iterators at other moments than an uninterrupted one.
            generator=torch.Generator().manual_seed(self.seed),
        )

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()

    def augment_batch(
        self, batch: tuple[torch.Tensor, torch.Tensor], *, train: bool, seed: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(uint8 images, labels)`` into ``(normalised float (B, 3, S, S), labels)`` (training or eval transform)."""
        images, labels = batch
        out = self.train_augment(images, seed=seed) if train else self.eval_augment(images)
        return out, labels

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Augment training batches, resize the others, on the device they now sit on."""
        trainer = self.trainer
        train = trainer is not None and bool(trainer.training)
        images, labels = self.augment_batch(batch, train=train, seed=self._batch_seed() if train else None)
        if trainer is not None:
            # Lightning cast the batch for "*-true" precisions before the transfer, when it was still uint8;
            # cast the float images now (a no-op for mixed and 32-bit precision).
            images = trainer.precision_plugin.convert_input(images)
        return images, labels

    def _batch_seed(self) -> int | None:
        """Hash of (run seed, epoch, batch index in the epoch, global rank); None without a fit loop to ask."""
        trainer = self.trainer
        try:
            # Lightning counts a batch "ready" right after this hook, so `ready` is the index of the current one.
            index = int(trainer.fit_loop.epoch_loop.batch_progress.current.ready)
            epoch, rank = int(trainer.current_epoch), int(trainer.global_rank)
        except AttributeError:  # no trainer, or a Lightning whose loop internals moved: the module's generator
            return None
        salted = int(splitmix64(np.uint64(self.seed) ^ np.uint64(_AUGMENT_SALT)))
        key = sample_keys(salted, epoch, np.array([index], dtype=np.uint64))
        return int(derive(key, rank)[0]) >> 1  # 63 bits: any torch seed


def build_datamodule(cfg: RunCfg, *, world_size: int = 1) -> tuple[L.LightningDataModule, int]:
    """The DataModule of `cfg` and its number of classes.

    The per-device batch follows :func:`per_device_batch_size`: ``data.batch_size`` is the GLOBAL batch, each
    device loads ``data.batch_size / (world_size * trainer.accumulate_grad_batches)``.

    Args:
        cfg: the run configuration (``data``, ``seed``, ``trainer.accumulate_grad_batches``).
        world_size: data-parallel processes, ``devices * num_nodes`` (Lightning's ``trainer.world_size``).

    Returns:
        ``(datamodule, num_classes)``: a :class:`FamilyDataModule` for ``data.source=family``, else the real
        DataModule of the source (:mod:`fdsl_app.data.real`).

    Raises:
        ValueError: the batch does not split evenly, a family setting is invalid, or the real data is not found
            (:class:`~fdsl_app.data.real.DatasetNotFoundError`, which says where to put it).
    """
    data = cfg.data
    batch_size = per_device_batch_size(data.batch_size, world_size, cfg.trainer.accumulate_grad_batches)
    loader = {
        "batch_size": batch_size,
        "num_workers": data.num_workers,
        "pin_memory": data.pin_memory,
        "persistent_workers": data.persistent_workers,
    }
    if data.source == "family":
        family = FamilyDataModule(
            data.family,
            dict(data.settings),
            augment=data.augment,
            image_size=data.image_size,
            params_path=data.params,
            seed=cfg.seed,
            param_seed=data.param_seed,
            samples_per_epoch=data.samples_per_epoch,
            **loader,
        )
        return family, family.num_classes
    real = REAL_DATAMODULES[data.source](
        data.root, image_size=data.image_size, augment=data.augment, seed=cfg.seed, **loader
    )
    return real, real.num_classes
