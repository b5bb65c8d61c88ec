"""The network factory and the one LightningModule that pre-trains and fine-tunes it.

:func:`create_network` builds any timm model (plus the small-image ViTs of :mod:`fdsl_app.models.vit`).
:class:`ClassifierModule` receives that network and owns the rest of the recipe: loss (cross-entropy, soft-target
with mixup/cutmix), metrics, AdamW/SGD without weight decay on norms, biases, position embeddings and tokens, the
per-iteration warmup + cosine schedule, the learning-rate scaling rule, and an optional weight EMA. Pre-training
and fine-tuning differ only in the data and in the network's initial weights (:func:`load_pretrained`).
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import math
from collections.abc import Mapping
from typing import Any, TypeVar

import lightning as L
import timm
import torch
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from timm.data import Mixup
from timm.data.mixup import mixup_target
from timm.loss import SoftTargetCrossEntropy
from timm.utils import ModelEmaV3
from torch import Tensor, nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

import fdsl_app.models.vit  # noqa: F401 - registers the small-image ViTs
from fdsl_app.config import AugmentCfg, ModelCfg, OptimCfg
from fdsl_app.errors import RunFailure

log = logging.getLogger(__name__)

LR_REFERENCE_BATCH = 512  # the linear scaling rule's reference batch (DeiT: lr * global_batch / 512)

_Cfg = TypeVar("_Cfg", OptimCfg, AugmentCfg)


class NonFiniteLossError(RunFailure):
    """The training loss became NaN or infinite; raised before backward, so the weights are the last good ones."""


def create_network(cfg: ModelCfg, num_classes: int, image_size: int, *, in_chans: int = 3) -> nn.Module:
    """A timm network for `num_classes` classes at `image_size` pixels.

    Args:
        cfg: the model section (timm name, stochastic depth rate, whether to load timm's own weights).
        num_classes: classifier outputs.
        image_size: input resolution; passed as ``img_size`` to models that take it (ViTs), ignored otherwise.
        in_chans: input channels.

    Returns:
        The network, in train mode, with freshly initialised (or timm's pretrained) weights.

    Raises:
        ValueError: unknown model name (with close matches), or ``pretrained`` for a model without weights.
    """
    if not cfg.name.startswith(("hf-hub:", "hf_hub:")) and not timm.is_model(cfg.name):
        raise ValueError(_unknown_model_message(cfg.name))
    if cfg.pretrained and not timm.models.is_model_pretrained(cfg.name):
        raise ValueError(
            f"model.name={cfg.name!r} has no pretrained weights in timm, but model.pretrained=true; "
            "set model.pretrained=false, or start from a checkpoint of your own with model.init_from=PATH"
        )
    kwargs: dict[str, Any] = {
        "pretrained": cfg.pretrained,
        "num_classes": num_classes,
        "drop_path_rate": cfg.drop_path,
        "in_chans": in_chans,
    }
    try:
        net = timm.create_model(cfg.name, img_size=image_size, **kwargs)
    except TypeError as err:
        if "img_size" not in str(err):
            raise
    else:
        _check_patch_grid(net, cfg.name, image_size)
        return net
    # CNNs and other models without a fixed input size take no img_size: they run at any resolution.
    log.debug("%s takes no img_size; built without it", cfg.name)
    return timm.create_model(cfg.name, **kwargs)


def _check_patch_grid(net: nn.Module, name: str, image_size: int) -> None:
    """Refuse a resolution the patch grid does not tile: the patch embedding would drop the last pixels unseen."""
    patch = getattr(getattr(net, "patch_embed", None), "patch_size", None)
    if patch is None:
        return
    side = int(patch[0] if isinstance(patch, tuple | list) else patch)
    if image_size % side:
        low, high = image_size // side * side, -(-image_size // side) * side
        nearest = f"{low} or {high}" if low else str(high)
        raise ValueError(f"data.image_size={image_size} is not a multiple of {name}'s patch size {side}: the last "
                         f"{image_size % side} px would be dropped unseen; use {nearest}")  # fmt: skip


def _unknown_model_message(name: str) -> str:
    # Names sharing the family prefix first (vit_, resnet...), so a typo in a suffix finds its siblings.
    candidates = timm.list_models(f"{name.split('_')[0]}*") or timm.list_models()
    close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.5)
    hint = f"close matches: {', '.join(close)}" if close else "no close match"
    return f"unknown model.name={name!r}; {hint}. timm.list_models() lists all, timm.list_models('vit_*') a family"


def effective_lrs(optim: OptimCfg, global_batch_size: int) -> tuple[float, float, float]:
    """The (lr, warmup_lr, min_lr) a run uses: as configured, or scaled by global_batch / 512 ("linear")."""
    scale = global_batch_size / LR_REFERENCE_BATCH if optim.lr_scaling == "linear" else 1.0
    return optim.lr * scale, optim.warmup_lr * scale, optim.min_lr * scale


def lr_at_step(step: int, *, lr: float, warmup_lr: float, min_lr: float, warmup_steps: int, max_steps: int) -> float:
    """Learning rate of optimizer step `step`: linear warmup_lr -> lr over `warmup_steps`, then cosine to min_lr.

    The cosine reaches min_lr at `max_steps` and stays there after it.
    """
    if step < warmup_steps:
        return warmup_lr + (lr - warmup_lr) * step / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def param_groups(net: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Trainable parameters in two groups: with weight decay, and without.

    Without: every parameter with ``ndim <= 1`` (biases, norm scales and shifts) and those the model names in
    ``no_weight_decay()`` (timm ViTs: position embeddings, class/distillation/register tokens).
    """
    skip = set(net.no_weight_decay()) if hasattr(net, "no_weight_decay") else set()
    decay, no_decay = [], []
    for name, param in net.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim <= 1 or name in skip else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _as_cfg(cls: type[_Cfg], value: _Cfg | Mapping[str, Any]) -> _Cfg:
    # Hyperparameters are saved as plain dicts; load_from_checkpoint passes them back as dicts.
    return value if isinstance(value, cls) else cls(**dict(value))


class ClassifierModule(L.LightningModule):
    """Image classification for pre-training and fine-tuning; the module receives its network.

    Batches are ``(images, labels)``: augmented, normalised float images ``(B, C, H, W)`` and int64 class ids
    ``(B,)``. With mixup or cutmix on (``augment.mixup`` or ``augment.cutmix`` > 0) the loss is soft-target
    cross-entropy against timm's mixed, smoothed targets; mixup needs an even batch, so an odd batch (the last,
    partial one without ``drop_last``) trains that step on smoothed one-hot targets instead. Without mixup the loss
    is cross-entropy with ``augment.label_smoothing``. Validation and test use plain cross-entropy, and the EMA weights
    when ``optim.ema_decay`` is set.

    Gradient clipping is the Trainer's job: pass ``gradient_clip_val=optim.clip_grad`` to it.

    Args:
        net: the network (:func:`create_network`, possibly with :func:`load_pretrained` weights).
        num_classes: classes of the task (the network's outputs).
        optim: optimiser, learning-rate rule, schedule and EMA settings.
        augment: mixup/cutmix and label smoothing (the image augmentation runs before the module).
        global_batch_size: samples per optimizer step over all devices (the linear scaling rule's batch).
        steps_per_epoch: optimizer steps per epoch (converts ``optim.warmup_epochs`` to steps).
        max_steps: optimizer steps of the whole run (the cosine reaches ``min_lr`` there).
    """

    def __init__(
        self,
        net: nn.Module,
        num_classes: int,
        optim: OptimCfg | Mapping[str, Any],
        augment: AugmentCfg | Mapping[str, Any],
        *,
        global_batch_size: int,
        steps_per_epoch: int,
        max_steps: int,
    ) -> None:
        super().__init__()
        for name, value in (("global_batch_size", global_batch_size), ("steps_per_epoch", steps_per_epoch)):
            if value < 1:
                raise ValueError(f"ClassifierModule: {name} must be >= 1, got {value}")
        if max_steps < 1:
            raise ValueError(f"ClassifierModule: max_steps must be >= 1 (the schedule's length), got {max_steps}")
        self.optim_cfg = optim = _as_cfg(OptimCfg, optim)
        self.augment_cfg = augment = _as_cfg(AugmentCfg, augment)
        self.save_hyperparameters(
            {
                "num_classes": num_classes,
                "optim": dataclasses.asdict(optim),
                "augment": dataclasses.asdict(augment),
                "global_batch_size": global_batch_size,
                "steps_per_epoch": steps_per_epoch,
                "max_steps": max_steps,
            }
        )
        self.net = net
        self.num_classes = num_classes
        self.max_steps = max_steps
        self.lr, self.warmup_lr, self.min_lr = effective_lrs(optim, global_batch_size)
        self.warmup_steps = min(max_steps, round(optim.warmup_epochs * steps_per_epoch))
        self.mixup = self._make_mixup(augment, num_classes)
        self.train_criterion: nn.Module = (
            SoftTargetCrossEntropy() if self.mixup else nn.CrossEntropyLoss(label_smoothing=augment.label_smoothing)
        )
        self.val_criterion = nn.CrossEntropyLoss()
        self.ema = self._make_ema(net, optim.ema_decay)
        self._warned_odd_batch = False
        self._init_metrics(num_classes)
        self._log_lrs(optim, global_batch_size)

    @staticmethod
    def _make_mixup(augment: AugmentCfg, num_classes: int) -> Mixup | None:
        if augment.mixup <= 0 and augment.cutmix <= 0:
            return None
        return Mixup(
            mixup_alpha=augment.mixup,
            cutmix_alpha=augment.cutmix,
            switch_prob=augment.mixup_switch_prob,
            label_smoothing=augment.label_smoothing,
            num_classes=num_classes,
        )

    @staticmethod
    def _make_ema(net: nn.Module, decay: float | None) -> ModelEmaV3 | None:
        if decay is None:
            return None
        # A submodule, so it follows the module across devices and into the checkpoint's state_dict (ema.module.*).
        ema = ModelEmaV3(net, decay=decay)
        ema.requires_grad_(False)  # DDP must not wait for gradients of the copy
        # timm leaves the copy in eval mode; Lightning warns about eval-mode modules at the start of fit, and it
        # switches the whole module to eval for validation anyway (the only place the copy runs).
        ema.train()
        return ema

    def _init_metrics(self, num_classes: int) -> None:
        top_k = min(5, num_classes)
        for stage in ("train", "val", "test"):
            # MeanMetric and the accuracies sync across ranks when the epoch value is computed, not every step.
            setattr(self, f"{stage}_loss", MeanMetric())
            setattr(self, f"{stage}_top1", MulticlassAccuracy(num_classes, top_k=1, average="micro"))
            setattr(self, f"{stage}_top5", MulticlassAccuracy(num_classes, top_k=top_k, average="micro"))
        # Test only, read after trainer.test (results.json): rows are true classes, columns predictions. Its state is
        # not persistent, so checkpoints are unchanged.
        self.test_confusion = MulticlassConfusionMatrix(num_classes)

    @rank_zero_only
    def _log_lrs(self, optim: OptimCfg, global_batch_size: int) -> None:
        rule = f"x {global_batch_size}/{LR_REFERENCE_BATCH} (linear)" if optim.lr_scaling == "linear" else "(as set)"
        log.info(
            "learning rate %s: lr %.3g, warmup_lr %.3g, min_lr %.3g; warmup %d of %d steps",
            rule,
            self.lr,
            self.warmup_lr,
            self.min_lr,
            self.warmup_steps,
            self.max_steps,
        )

    def forward(self, images: Tensor) -> Tensor:
        return self.net(images)

    def mix(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """The training inputs and targets: mixed images and soft targets ``(B, num_classes)`` with mixup/cutmix,
        else the images and hard labels ``(B,)``."""
        if self.mixup is None:
            return images, labels
        if images.shape[0] % 2 == 0:
            return self.mixup(images, labels)
        if not self._warned_odd_batch:
            log.warning("odd batch of %d: mixup/cutmix skipped for it (use drop_last=True)", images.shape[0])
            self._warned_odd_batch = True
        return images, mixup_target(labels, self.num_classes, smoothing=self.augment_cfg.label_smoothing)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images, labels = batch
        inputs, targets = self.mix(images, labels)
        logits = self.net(inputs)
        loss = self.train_criterion(logits, targets)
        self._check_finite(loss)
        self._log_metrics("train", loss, logits, labels, on_step=True)
        lr = self.trainer.optimizers[0].param_groups[0]["lr"]
        self.log("lr", lr, on_step=True, on_epoch=False, batch_size=labels.shape[0])
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate("val", batch)

    def on_test_epoch_start(self) -> None:
        self.test_confusion.reset()

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        logits = self._evaluate("test", batch)
        self.test_confusion.update(logits.detach(), batch[1])

    def _evaluate(self, stage: str, batch: tuple[Tensor, Tensor]) -> Tensor:
        images, labels = batch
        logits = (self.ema.module if self.ema is not None else self.net)(images)
        self._log_metrics(stage, self.val_criterion(logits, labels), logits, labels, on_step=False)
        return logits

    def _log_metrics(self, stage: str, loss: Tensor, logits: Tensor, labels: Tensor, *, on_step: bool) -> None:
        logits = logits.detach()
        inputs = {"loss": (loss.detach(),), "top1": (logits, labels), "top5": (logits, labels)}
        metrics = {}
        for name, args in inputs.items():
            metric = getattr(self, f"{stage}_{name}")
            if on_step:
                metric(*args)  # forward() also caches the batch's own value: Lightning's step value
            else:
                metric.update(*args)
            metrics[f"{stage}/{name}"] = metric
        # Lightning logs each metric object's compute() at the epoch end, synced across ranks by torchmetrics.
        self.log_dict(metrics, on_step=on_step, on_epoch=True, sync_dist=True, batch_size=labels.shape[0])

    def _check_finite(self, loss: Tensor) -> None:
        bad = not bool(torch.isfinite(loss.detach()).all())
        # Every rank must take the same branch, or the others would wait for this one's gradients forever.
        bad = self.trainer.strategy.reduce_boolean_decision(bad, all=False)
        if bad:
            raise NonFiniteLossError(
                f"training loss is not finite (value {loss.item()}) at step {self.global_step}; the weights are "
                "those of the last good step. Try a lower optim.lr, set optim.clip_grad (e.g. 1.0), or a longer "
                "optim.warmup_epochs"
            )

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        # Right after each optimiser step, before any callback can checkpoint it: a checkpoint then always holds the
        # EMA of its own step, and a resumed run's EMA equals an uninterrupted run's.
        if self.ema is not None:
            self.ema.update(self.net, step=self.global_step)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        cfg = self.optim_cfg
        groups = param_groups(self.net, cfg.weight_decay)
        optimizer: torch.optim.Optimizer
        if cfg.name == "adamw":
            optimizer = torch.optim.AdamW(groups, lr=self.lr, betas=(cfg.betas[0], cfg.betas[1]))
        else:
            optimizer = torch.optim.SGD(groups, lr=self.lr, momentum=cfg.momentum, nesterov=False)
        return optimizer

    def scheduled_lr(self, step: int) -> float:
        """Learning rate of optimiser step `step`: linear warmup from warmup_lr, then cosine to min_lr."""
        return lr_at_step(step, lr=self.lr, warmup_lr=self.warmup_lr, min_lr=self.min_lr,
                          warmup_steps=self.warmup_steps, max_steps=self.max_steps)  # fmt: skip

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # The learning rate is a pure function of the global step, set before each step: no scheduler state, so a
        # run resumed from a checkpoint taken after a step (Lightning steps schedulers only after the batch-end
        # hooks that save checkpoints) follows exactly the schedule of an uninterrupted run, and a resumed run with
        # a longer max_steps follows its new schedule from the restored step.
        lr = self.scheduled_lr(self.trainer.global_step)
        for group in self.trainer.optimizers[0].param_groups:
            group["lr"] = lr

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Lets load_pretrained name the architecture a checkpoint was trained with.
        cfg = getattr(self.net, "pretrained_cfg", None) or {}
        checkpoint["net_architecture"] = cfg.get("architecture") or type(self.net).__name__

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Reconcile the EMA with the checkpoint, so that turning ``optim.ema_decay`` on or off can resume a run."""
        state = checkpoint.get("state_dict", {})
        ema_keys = [k for k in state if k.startswith("ema.")]
        if self.ema is None and ema_keys:
            log.info("checkpoint has EMA weights but optim.ema_decay is unset: EMA weights dropped")
            for key in ema_keys:
                del state[key]
        elif self.ema is not None and not ema_keys:
            log.warning("checkpoint has no EMA weights: the EMA starts from the checkpoint's weights")
            for key in [k for k in state if k.startswith("net.")]:
                state["ema.module." + key.removeprefix("net.")] = state[key].clone()
