"""Networks and the training module: timm models (plus small-image ViTs), ClassifierModule, checkpoint transfer.

Importing this package registers ``vit_nano_patch4_32``, ``vit_tiny_patch4_32`` and ``vit_tiny_patch8_64`` with
timm, so ``timm.create_model`` and ``create_network`` find them.
"""

from __future__ import annotations

from fdsl_app.models.checkpoint import LoadReport, load_pretrained
from fdsl_app.models.module import (
    ClassifierModule,
    NonFiniteLossError,
    create_network,
    effective_lrs,
    lr_at_step,
    param_groups,
)
from fdsl_app.models.vit import SMALL_VIT_VARIANTS

__all__ = [
    "SMALL_VIT_VARIANTS",
    "ClassifierModule",
    "LoadReport",
    "NonFiniteLossError",
    "create_network",
    "effective_lrs",
    "load_pretrained",
    "lr_at_step",
    "param_groups",
]
