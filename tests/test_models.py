"""Models: registered small ViTs, the network factory, ClassifierModule's recipe, and checkpoint transfer (CPU)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import timm
import torch
import torch.nn.functional as F
from timm.loss import SoftTargetCrossEntropy
from torch.utils.data import DataLoader, TensorDataset

from fdsl_app.config import AugmentCfg, ModelCfg, OptimCfg
from fdsl_app.models import (
    ClassifierModule,
    NonFiniteLossError,
    create_network,
    effective_lrs,
    load_pretrained,
    lr_at_step,
    param_groups,
)

# Lightning 2.6.6 on torch 2.15 warns about its own pytree use on every fit; nothing to fix on our side.
FIT_WARNINGS = pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")

NANO = "vit_nano_patch4_32"
NO_MIXUP = AugmentCfg(mixup=0.0, cutmix=0.0, label_smoothing=0.1)


def make_module(
    num_classes: int = 10,
    *,
    optim: OptimCfg | None = None,
    augment: AugmentCfg | None = None,
    image_size: int = 32,
    global_batch_size: int = 8,
    steps_per_epoch: int = 2,
    max_steps: int = 3,
) -> ClassifierModule:
    net = create_network(ModelCfg(name=NANO, drop_path=0.0), num_classes, image_size)
    return ClassifierModule(
        net,
        num_classes,
        optim or OptimCfg(warmup_epochs=1.0),
        augment or AugmentCfg(),
        global_batch_size=global_batch_size,
        steps_per_epoch=steps_per_epoch,
        max_steps=max_steps,
    )


def make_trainer(root: Path, max_steps: int = 3) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=max_steps,
        default_root_dir=root,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
        limit_val_batches=1,
    )


def loader(num_classes: int = 10, n: int = 16, batch_size: int = 8, fill: float | None = None) -> DataLoader:
    images = torch.randn(n, 3, 32, 32) if fill is None else torch.full((n, 3, 32, 32), fill)
    return DataLoader(TensorDataset(images, torch.randint(0, num_classes, (n,))), batch_size=batch_size)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> tuple[ClassifierModule, Path]:
    """A vit_nano pre-trained for 3 steps at 32 px on 10 classes with EMA, and its Lightning checkpoint."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("pretrain")
    module = make_module(optim=OptimCfg(warmup_epochs=1.0, ema_decay=0.5))
    trainer = make_trainer(root)
    trainer.fit(module, loader(), loader())
    path = root / "pretrain.ckpt"
    trainer.save_checkpoint(path)
    return module, path


# --- networks -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "size"), [("vit_nano_patch4_32", 32), ("vit_tiny_patch4_32", 32), ("vit_tiny_patch8_64", 64)]
)
def test_registered_variants_create_and_forward(name: str, size: int) -> None:
    net = timm.create_model(name, num_classes=7, drop_path_rate=0.1)
    assert net(torch.randn(2, 3, size, size)).shape == (2, 7)
    assert name in timm.list_models("vit_*_patch*_[36][24]")


def test_variant_takes_timm_kwargs() -> None:
    net = timm.create_model(NANO, num_classes=5, img_size=64, in_chans=1)
    assert net.pos_embed.shape == (1, 1 + 16 * 16, 64)
    assert net(torch.randn(2, 1, 64, 64)).shape == (2, 5)


def test_create_network_sets_size_and_falls_back_without_img_size() -> None:
    vit = create_network(ModelCfg(name=NANO, drop_path=0.2), 100, 64)
    assert vit.patch_embed.grid_size == (16, 16) and vit.num_classes == 100
    assert vit.blocks[1].drop_path1.drop_prob == pytest.approx(0.2)
    cnn = create_network(ModelCfg(name="resnet18"), 3, 32)  # takes no img_size
    assert cnn(torch.randn(2, 3, 32, 32)).shape == (2, 3)


def test_unknown_model_name_lists_close_matches() -> None:
    with pytest.raises(ValueError, match=r"vit_tiny_patch4_32.*timm\.list_models\(\) lists all"):
        create_network(ModelCfg(name="vit_tiny_patch4_23"), 10, 32)


def test_pretrained_without_weights_is_refused() -> None:
    with pytest.raises(ValueError, match="has no pretrained weights"):
        create_network(ModelCfg(name=NANO, pretrained=True), 10, 32)


# --- optimiser and schedule ---------------------------------------------------------------------------------------


def test_param_groups_exempt_biases_norms_and_tokens() -> None:
    net = timm.create_model(NANO, num_classes=10)
    decay, no_decay = param_groups(net, 0.05)
    ids = {id(p) for p in no_decay["params"]}
    named = dict(net.named_parameters())
    for name in ("pos_embed", "cls_token", "norm.weight", "norm.bias", "blocks.0.norm1.weight", "head.bias"):
        assert id(named[name]) in ids, name
    for name in ("patch_embed.proj.weight", "blocks.0.attn.qkv.weight", "blocks.1.mlp.fc1.weight", "head.weight"):
        assert id(named[name]) not in ids, name
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert len(decay["params"]) + len(no_decay["params"]) == len(named)


@pytest.mark.parametrize("name", ["adamw", "sgd"])
def test_schedule_warmup_then_cosine(name: str) -> None:
    optim = OptimCfg(name=name, lr=1e-3, warmup_lr=1e-6, min_lr=1e-5, warmup_epochs=2.0)
    module = make_module(optim=optim, steps_per_epoch=5, max_steps=30)
    optimizer = module.configure_optimizers()
    assert type(optimizer).__name__ == {"adamw": "AdamW", "sgd": "SGD"}[name]
    lr = module.scheduled_lr

    assert lr(0) == pytest.approx(1e-6)  # step 0: warmup_lr
    assert lr(5) == pytest.approx((1e-6 + 1e-3) / 2)
    assert lr(10) == pytest.approx(1e-3)  # end of the 2 x 5 warmup steps
    assert 1e-5 < lr(20) < 1e-3
    assert lr(30) == pytest.approx(1e-5) and lr(40) == pytest.approx(1e-5)
    assert [lr(s) for s in range(10, 31)] == sorted((lr(s) for s in range(10, 31)), reverse=True)


def test_lr_scaling_rule() -> None:
    optim = OptimCfg(lr=1e-3, warmup_lr=1e-6, min_lr=1e-5, lr_scaling="linear")
    assert effective_lrs(optim, 256) == pytest.approx((5e-4, 5e-7, 5e-6))
    module = make_module(optim=optim, global_batch_size=1024)
    assert (module.lr, module.warmup_lr, module.min_lr) == pytest.approx((2e-3, 2e-6, 2e-5))
    fixed = OptimCfg(lr=1e-3, warmup_lr=1e-6, min_lr=1e-5, lr_scaling="none")
    assert effective_lrs(fixed, 8192) == pytest.approx((1e-3, 1e-6, 1e-5))
    assert lr_at_step(0, lr=1.0, warmup_lr=0.0, min_lr=0.0, warmup_steps=0, max_steps=10) == pytest.approx(1.0)


# --- loss ---------------------------------------------------------------------------------------------------------


def test_mixup_gives_soft_targets_and_finite_loss() -> None:
    torch.manual_seed(0)
    module = make_module(augment=AugmentCfg(mixup=0.8, cutmix=1.0, label_smoothing=0.1))
    images, labels = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    mixed, targets = module.mix(images.clone(), labels)
    assert targets.shape == (8, 10) and targets.dtype.is_floating_point
    assert torch.allclose(targets.sum(1), torch.ones(8))
    assert isinstance(module.train_criterion, SoftTargetCrossEntropy)
    assert torch.isfinite(module.train_criterion(module(mixed), targets))
    # An odd batch cannot be mixed: smoothed one-hot targets, same loss type.
    _, odd = module.mix(images[:7], labels[:7])
    assert torch.allclose(odd.argmax(1), labels[:7]) and odd.max() == pytest.approx(0.91)


def test_without_mixup_hard_labels_and_label_smoothing() -> None:
    module = make_module(augment=NO_MIXUP)
    images, labels = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    same, targets = module.mix(images, labels)
    assert same is images and targets is labels
    logits = module(images)
    expected = F.cross_entropy(logits, labels, label_smoothing=0.1)
    assert module.train_criterion(logits, targets).item() == pytest.approx(expected.item())


# --- training with Lightning --------------------------------------------------------------------------------------


@FIT_WARNINGS
def test_fit_logs_metrics(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = make_module(optim=OptimCfg(lr_scaling="linear", warmup_epochs=1.0))
    trainer = make_trainer(tmp_path)
    trainer.fit(module, loader(), loader())
    assert trainer.global_step == 3
    logged = trainer.logged_metrics
    for key in ("train/loss_step", "train/top1_step", "train/top5_step", "lr", "val/loss", "val/top1", "val/top5"):
        assert key in logged, key
    assert torch.isfinite(logged["train/loss_step"])
    assert module.hparams["optim"]["lr_scaling"] == "linear" and "net" not in module.hparams
    (results,) = trainer.test(module, loader(), verbose=False)
    assert set(results) == {"test/loss", "test/top1", "test/top5"}


@FIT_WARNINGS
def test_nan_loss_raises_before_backward(tmp_path: Path) -> None:
    module = make_module(augment=NO_MIXUP)
    before = module.net.blocks[0].attn.qkv.weight.detach().clone()
    with pytest.raises(NonFiniteLossError, match=r"step 0.*optim\.lr.*optim\.clip_grad"):
        make_trainer(tmp_path).fit(module, loader(fill=float("nan")), loader())
    assert torch.equal(module.net.blocks[0].attn.qkv.weight, before)


@FIT_WARNINGS
def test_ema_differs_validates_and_round_trips(pretrained: tuple[ClassifierModule, Path], tmp_path: Path) -> None:
    module, path = pretrained
    live, ema = module.net.blocks[0].attn.qkv.weight, module.ema.module.blocks[0].attn.qkv.weight
    assert not torch.allclose(live, ema)
    images, labels = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    batches = DataLoader(TensorDataset(images, labels), batch_size=8)
    (results,) = make_trainer(tmp_path).validate(module, batches, verbose=False)
    with torch.no_grad():
        expected = F.cross_entropy(module.ema.module.eval()(images), labels)  # validation runs the EMA weights
    assert results["val/loss"] == pytest.approx(expected.item(), rel=1e-5)
    state = torch.load(path, weights_only=True)["state_dict"]
    assert torch.equal(state["ema.module.blocks.0.attn.qkv.weight"], ema)

    fresh = create_network(ModelCfg(name=NANO, drop_path=0.0), 10, 32)
    restored = ClassifierModule.load_from_checkpoint(path, net=fresh)
    assert torch.equal(restored.ema.module.blocks[0].attn.qkv.weight, ema)
    assert torch.equal(restored.net.blocks[0].attn.qkv.weight, live)
    assert restored.optim_cfg.ema_decay == 0.5  # hyperparameters come back as the typed config

    # Resuming with the EMA switched off drops the EMA weights instead of failing the strict load.
    plain = create_network(ModelCfg(name=NANO, drop_path=0.0), 10, 32)
    no_ema = ClassifierModule.load_from_checkpoint(path, net=plain, optim=OptimCfg(warmup_epochs=1.0))
    assert no_ema.ema is None and torch.equal(no_ema.net.blocks[0].attn.qkv.weight, live)


# --- checkpoint transfer ------------------------------------------------------------------------------------------


@FIT_WARNINGS
def test_load_pretrained_drops_head_and_resizes_pos_embed(pretrained: tuple[ClassifierModule, Path]) -> None:
    source, path = pretrained
    net = create_network(ModelCfg(name=NANO), 100, 64)
    lines: list[str] = []
    report = load_pretrained(net, path, report=lines.append)

    assert set(report.skipped) == {"head.weight", "head.bias"}
    assert all("classifier head" in reason for reason in report.skipped.values())
    assert report.missing == ["head.bias", "head.weight"]
    assert report.resized == ["pos_embed"] and "pos_embed" in report.loaded
    assert net.pos_embed.shape == (1, 1 + 16 * 16, 64)
    assert torch.equal(net.pos_embed[:, :1], source.net.pos_embed[:, :1])  # class token's embedding kept
    assert torch.equal(net.blocks[1].mlp.fc2.weight, source.net.blocks[1].mlp.fc2.weight)
    assert net.head.weight.shape == (100, 64)
    text = "\n".join(lines)
    assert "loaded" in text and "resized 1" in text and "skipped 2: head.weight, head.bias (classifier head" in text

    ema_net = create_network(ModelCfg(name=NANO), 100, 32)
    load_pretrained(ema_net, path, ema=True, report=lines.append)
    assert torch.equal(ema_net.blocks[0].attn.qkv.weight, source.ema.module.blocks[0].attn.qkv.weight)


def test_load_pretrained_accepts_a_plain_state_dict(tmp_path: Path) -> None:
    source = timm.create_model(NANO, num_classes=10)
    torch.save({"model": {f"module.{k}": v for k, v in source.state_dict().items()}}, tmp_path / "deit.pth")
    net = timm.create_model(NANO, num_classes=3)
    report = load_pretrained(net, tmp_path / "deit.pth", report=lambda _: None)
    assert torch.equal(net.blocks[0].norm1.weight, source.blocks[0].norm1.weight)
    assert report.missing == ["head.bias", "head.weight"] and not report.resized


def test_load_pretrained_rejects_files_that_are_not_checkpoints(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"this is not a torch file\n" * 10)
    net = timm.create_model(NANO, num_classes=3)
    with pytest.raises(ValueError, match="is not a checkpoint"):
        load_pretrained(net, garbage)
    torch.save({"epoch": 3, "note": "no tensors"}, tmp_path / "empty.pt")
    with pytest.raises(ValueError, match="is not a checkpoint with a state dict"):
        load_pretrained(net, tmp_path / "empty.pt")
    with pytest.raises(ValueError, match="no such file"):
        load_pretrained(net, tmp_path / "missing.ckpt")


@FIT_WARNINGS
def test_load_pretrained_rejects_another_architecture(pretrained: tuple[ClassifierModule, Path]) -> None:
    _, path = pretrained
    net = create_network(ModelCfg(name="vit_tiny_patch4_32"), 10, 32)  # embed 192, the checkpoint has 64
    before = net.blocks[0].norm1.weight.detach().clone()
    with pytest.raises(ValueError, match=r"\(trained as vit_nano_patch4_32\) does not fit model vit_tiny_patch4_32"):
        load_pretrained(net, path)
    assert torch.equal(net.blocks[0].norm1.weight, before)
