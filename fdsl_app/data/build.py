"""The DataModule of a run: rendered formula families (augmented on the device) or real fine-tuning sets.

Whatever the source, batches reach ``training_step`` / ``validation_step`` as ``(float32 images (B, 3, S, S)
normalised with data.augment.mean/std, int64 labels (B,))`` with ``S = data.image_size``: real data is transformed
in the loader workers, rendered data in :meth:`FamilyDataModule.on_after_batch_transfer` on the training device.
"""

from __future__ import annotations

import lightning as L

from fdsl_app.config import RunCfg, per_device_batch_size
from fdsl_app.data.datamodule import FamilyDataModule
from fdsl_app.data.real import REAL_DATAMODULES


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
            cache_dir=data.cache_dir,
            draw=data.draw,
            **loader,
        )
        return family, family.num_classes
    only_imagenet = {"class_list": data.class_list} if data.source == "imagenet100" else {}
    real = REAL_DATAMODULES[data.source](
        data.root, image_size=data.image_size, augment=data.augment, seed=cfg.seed, val_fraction=data.val_fraction,
        split_seed=data.split_seed, **loader, **only_imagenet,
    )
    return real, real.num_classes
