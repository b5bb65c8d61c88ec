"""``fdsl_app bench gpu``: the figures only a GPU can give, in one command (under 8 minutes on one H100/H200).

1. the device draw from an attractor cache (1p-frac: 512 px caches; FractalDB-1k: 362 px, 200k points), images/s
   at 224 px in batches of 256;
2. the torch chaos game (fast mode, 100k points) at 224 px, images/s;
3. DeviceAugment (DeiT: crop, flips, RandAugment, erasing) in ms per batch of 256;
4. DeiT-Tiny bf16 training images/s fed (i) from one fixed batch already on the GPU and (ii) by fdsl_app's default
   path (the 1p-frac recipe: cache drawn on the device), and their ratio (target >= 95 %);
5. a one-GPU DDP (NCCL) run that checkpoints, stops and resumes, with the losses of an uninterrupted run.

``--dry-run`` does all of it at tiny sizes on whatever device there is (the CPU with gloo in the tests), so the
logic is tested where no GPU is.
"""

from __future__ import annotations

import contextlib
import csv
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from fdsl_app.config import RECIPES_DIR, AugmentCfg, load_config
from fdsl_app.data.augment import DeviceAugment
from fdsl_app.families import create_family
from fdsl_app.render.keys import sample_keys
from fdsl_app.render.torch_draw import cache_tensor, draw_cached_torch
from fdsl_app.render.torch_ifs import render_ifs_torch
from fdsl_app.training.callbacks import Throughput
from fdsl_app.training.fit import build, fit, make_trainer
from fdsl_app.training.lightning_internals import stop_by_steps


@dataclass(frozen=True)
class Sizes:
    """How big each measurement is."""

    batch: int
    size: int
    systems: int
    onepfrac_side: int
    fractaldb_side: int
    points: int
    fractaldb_points: int
    repeats: int
    train_steps: int
    model: str


FULL = Sizes(batch=256, size=224, systems=64, onepfrac_side=512, fractaldb_side=362, points=100_000,
             fractaldb_points=200_000, repeats=20, train_steps=120, model="deit_tiny_patch16_224")  # fmt: skip
DRY = Sizes(batch=8, size=32, systems=4, onepfrac_side=64, fractaldb_side=48, points=2000, fractaldb_points=2000,
            repeats=2, train_steps=6, model="vit_nano_patch4_32")  # fmt: skip


def _timed(fn: Callable[[], Any], device: torch.device, repeats: int) -> float:
    """Median seconds of `fn` after one warm-up, synchronised on a CUDA device."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def draw_rate(device: torch.device, family: str, side: int, points: int, s: Sizes) -> float:
    """Images/s of the device draw (patch raster, random crops and flips) from a cache of `s.systems` systems."""
    fam = create_family(family, classes=s.systems, image_size=side, n_points=points, mode="cached")
    params = fam.generate(0) if family == "onepfrac" else create_family(
        family, classes=s.systems, search_size=64, search_points=2000, fill_threshold=0.05).generate(0)  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        fam.prepare(params, cache_dir=folder)
        words = cache_tensor(fam.cache_words(), device)
    keys = sample_keys(0, 0, np.arange(s.batch))
    from fdsl_app.render.formula_space import sample_formula_augment

    augment = sample_formula_augment(keys, (0.08, 1.0), 0.5, 0.5, side)
    classes = np.arange(s.batch) % s.systems
    plan = fam.draw_plan(params, classes, np.zeros(s.batch, np.int64), keys, augment)
    seconds = _timed(lambda: draw_cached_torch(words, plan.index, plan.patch_seeds, raster="patch", size=s.size,
                                               crops=plan.crops, flips=plan.flips), device, s.repeats)  # fmt: skip
    return s.batch / seconds


def chaos_rate(device: torch.device, s: Sizes) -> float:
    """Images/s of the torch chaos game (fast mode, patch raster) at the output size."""
    fam = create_family("onepfrac", classes=s.systems, mode="fast")
    arrays = fam.generate(0).arrays
    params = arrays["params"][np.arange(s.batch) % s.systems]
    seeds = np.arange(s.batch, dtype=np.uint64)
    seconds = _timed(lambda: render_ifs_torch(params, None, size=s.size, n_points=s.points, seeds=seeds,
                                              raster="patch", device=device), device, s.repeats)  # fmt: skip
    return s.batch / seconds


def augment_ms(device: torch.device, s: Sizes) -> float:
    """Milliseconds of DeviceAugment (DeiT's crop, flips, RandAugment, normalisation, erasing) per batch."""
    augment = DeviceAugment(AugmentCfg(rand_augment="rand-m9-mstd0.5-inc1", re_prob=0.25), s.size).to(device)
    images = torch.randint(0, 128, (s.batch, 1, s.size, s.size), dtype=torch.uint8, device=device)
    return 1e3 * _timed(lambda: augment(images, seed=1), device, s.repeats)


def _config(root: Path, s: Sizes, device: torch.device, name: str, *extra: str) -> Any:
    accelerator = "gpu" if device.type == "cuda" else "cpu"
    precision = "bf16-mixed" if device.type == "cuda" else "32-true"
    side = s.onepfrac_side
    overrides = [
        f"root={root}", f"name={name}", f"model.name={s.model}", f"trainer.accelerator={accelerator}",
        "trainer.devices=1", f"trainer.precision={precision}", f"trainer.max_steps={s.train_steps}",
        "trainer.enable_progress_bar=false", "trainer.val_every_n_epochs=100000",
        f"trainer.log_every_n_steps={max(1, s.train_steps // 6)}",
        f"data.batch_size={s.batch}", f"data.image_size={s.size}", f"data.settings.classes={s.systems}",
        f"data.settings.image_size={side}", f"data.settings.n_points={s.points}", "data.samples_per_epoch=100000",
        "log.backend=csv", "log.sample_grid=false", "data.num_workers=0", "data.persistent_workers=false", *extra,
    ]  # fmt: skip
    return load_config(RECIPES_DIR / "pretrain_1pfrac_deit_tiny.yaml", overrides)


class _FixedBatch(L.LightningDataModule):
    """One augmented batch, made once on the device and handed out again and again: training with no data cost."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, steps: int) -> None:
        super().__init__()
        self.batch, self.steps = (images, labels), steps

    def train_dataloader(self) -> Any:
        return _Repeat(self.batch, self.steps)


class _Repeat:
    """An iterable of `count` times the same batch (a list would read as a list of loaders to Lightning)."""

    def __init__(self, batch: Any, count: int) -> None:
        self.batch, self.count = batch, count

    def __iter__(self) -> Any:
        return iter([self.batch] * self.count)

    def __len__(self) -> int:
        return self.count


def train_rates(device: torch.device, s: Sizes, root: Path) -> tuple[float, float, float]:
    """Training images/s fed (i) from a fixed on-device batch and (ii) by the default path; and (ii)'s data wait."""
    cfg = _config(root, s, device, "default-path", "data.draw=device")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fed = fit(cfg)
        throughput = Throughput(window=max(1, s.train_steps // 6))
        trainer = make_trainer(_config(root, s, device, "fixed-batch"), root / "fixed", [throughput], False,
                               profiler=throughput.fetch_timer)  # fmt: skip
        datamodule, module = build(cfg, trainer)
        images = torch.randn(s.batch, 3, s.size, s.size, device=device)
        labels = torch.randint(0, s.systems, (s.batch,), device=device)
        stop_by_steps(trainer, s.train_steps)
        trainer.fit(module, datamodule=_FixedBatch(images, labels, s.train_steps))
    fixed = throughput.summary().get("perf/images_per_sec", float("nan"))
    return fixed, fed.perf.get("perf/images_per_sec", float("nan")), fed.perf.get("perf/data_wait", float("nan"))


def _losses(run_dir: Path) -> list[float]:
    with open(run_dir / "metrics.csv") as f:
        return [float(r["train/loss_step"]) for r in csv.DictReader(f) if r.get("train/loss_step")]


@contextlib.contextmanager
def _environ_restored() -> Iterator[None]:
    """Lightning's DDP writes its world into os.environ (LOCAL_RANK, NODE_RANK, MASTER_PORT, ...); left there, a
    later fit in this process, or any process it starts, would take itself for an already launched rank."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def ddp_resume(device: torch.device, s: Sizes, root: Path) -> tuple[bool, int]:
    """A one-process DDP run (NCCL on a GPU, gloo on the CPU) stopped with a checkpoint half-way and resumed,
    against an uninterrupted one: whether the losses agree step for step, and the steps compared."""
    steps = max(4, s.train_steps // 2 * 2)
    ddp = ["trainer.strategy=ddp", f"trainer.max_steps={steps}"]
    with warnings.catch_warnings(), _environ_restored():
        warnings.simplefilter("ignore")
        straight = fit(_config(root, s, device, "ddp-straight", *ddp))
        fit(_config(root, s, device, "ddp-split", *ddp, f"trainer.stop_at_step={steps // 2}"))
        resumed = fit(_config(root, s, device, "ddp-split", *ddp, "resume=auto"))
    a, b = _losses(straight.run_dir), _losses(resumed.run_dir)
    return len(a) == len(b) == steps and np.allclose(a, b, rtol=0, atol=1e-5), len(b)


def run(device_name: str, dry_run: bool, say: Callable[..., None]) -> dict[str, Any]:
    """Measure and print everything; return the figures."""
    device = torch.device(device_name)
    s = DRY if dry_run else FULL
    say(f"bench gpu on {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}"
        f"{' (dry run: tiny sizes)' if dry_run else ''}")  # fmt: skip
    figures: dict[str, Any] = {}
    figures["draw_1pfrac"] = draw_rate(device, "onepfrac", s.onepfrac_side, s.points, s)
    say(f"1. device draw, 1p-frac ({s.onepfrac_side} px cache) -> {s.size} px: {figures['draw_1pfrac']:,.0f} img/s")
    figures["draw_fractaldb"] = draw_rate(device, "fractaldb", s.fractaldb_side, s.fractaldb_points, s)
    say(f"   device draw, FractalDB ({s.fractaldb_side} px cache) -> {s.size} px: "
        f"{figures['draw_fractaldb']:,.0f} img/s")  # fmt: skip
    figures["chaos_game"] = chaos_rate(device, s)
    say(f"2. torch chaos game, {s.points:,} points -> {s.size} px: {figures['chaos_game']:,.0f} img/s")
    figures["device_augment_ms"] = augment_ms(device, s)
    say(f"3. DeviceAugment (DeiT) on {s.batch} images: {figures['device_augment_ms']:.2f} ms per batch")
    with tempfile.TemporaryDirectory(prefix="fdsl_bench_gpu_") as folder:
        fixed, fed, wait = train_rates(device, s, Path(folder))
        figures.update(train_fixed=fixed, train_default=fed, data_wait=wait, ratio=fed / fixed)
        say(f"4. {s.model} training: {fixed:,.0f} img/s from a fixed batch, {fed:,.0f} img/s fed by the default "
            f"path ({100 * fed / fixed:.1f} %, target >= 95 %), data wait {100 * wait:.1f} % of step time")
        same, steps = ddp_resume(device, s, Path(folder))
        figures.update(ddp_resume_equal=same, ddp_steps=steps)
        say(f"5. DDP ({'NCCL' if device.type == 'cuda' else 'gloo'}), stopped half-way and resumed: losses "
            f"{'equal' if same else 'DIFFER'} over {steps} steps")  # fmt: skip
    return figures
