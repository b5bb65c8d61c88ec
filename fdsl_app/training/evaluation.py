"""The final test of a fine-tuning run: the checkpoint chosen on validation, tested once on the held-out test split,
its metrics, per-class accuracy and confusion matrix written to ``<run>/results.json``.

Validation (``val/top1``) alone chooses the checkpoint; the test split is read only here, after training ends.
Runs on rendered data (``data.source=family``) have no test split and no ``results.json``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from fdsl_app.config import RunCfg
from fdsl_app.files import write_atomic
from fdsl_app.models.module import ClassifierModule
from fdsl_app.training.run_dir import is_rank_zero

RESULTS = "results.json"


def per_class_accuracy(confusion: torch.Tensor) -> list[float | None]:
    """Recall of each class (row: true class): None for a class without test images."""
    rows = confusion.sum(dim=1)
    return [float(confusion[i, i] / rows[i]) if rows[i] > 0 else None for i in range(len(rows))]


def final_test(
    cfg: RunCfg, trainer: L.Trainer, module: ClassifierModule, datamodule: Any, run_dir: Path, best: ModelCheckpoint,
    last: Path, init_from: Path | None,
) -> dict[str, Any] | None:  # fmt: skip
    """Test the best checkpoint by ``val/top1`` (the last one where no validation ran) on the test split and write
    ``results.json`` (rank 0); returns its record, None for rendered data. Every rank calls it (the test is
    collective)."""
    if cfg.data.source == "family":
        return None
    checkpoint = Path(best.best_model_path) if best.best_model_path else last
    trainer.loggers = []  # metrics.csv stays the fit's record; the test goes to results.json
    results = trainer.test(module, datamodule=datamodule, ckpt_path=checkpoint, verbose=False)
    confusion = module.test_confusion.compute().cpu()  # collective: synced over ranks
    score = best.best_model_score
    images = {split: len(getattr(datamodule, f"{split}_set") or []) for split in ("train", "val", "test")}
    record = {
        "test": {key.removeprefix("test/"): float(value) for key, value in (results[0] if results else {}).items()},
        "checkpoint": str(checkpoint.relative_to(run_dir) if checkpoint.is_relative_to(run_dir) else checkpoint),
        "selected_by": "best val/top1" if best.best_model_path else "last (no validation score)",
        "val_top1": float(score) if score is not None and math.isfinite(float(score)) else None,
        "step": int(trainer.global_step),
        "seed": cfg.seed,
        "init_from": str(init_from) if init_from is not None else None,
        "data": {"source": cfg.data.source, "root": cfg.data.root, "splits": datamodule.split_sources(),
                 "images": images,
                 "val_fraction": cfg.data.val_fraction, "split_seed": cfg.data.split_seed},  # fmt: skip
        "normalisation": {"mean": list(cfg.data.augment.mean), "std": list(cfg.data.augment.std)},
        "per_class_top1": per_class_accuracy(confusion),
        "confusion_matrix": confusion.tolist(),
    }
    if is_rank_zero():
        write_atomic(run_dir / RESULTS, json.dumps(record, indent=2))
    return record
