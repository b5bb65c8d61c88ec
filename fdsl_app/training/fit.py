"""Config -> datamodule, module, callbacks, loggers, Trainer -> fit; and validate/test of a checkpoint.

A run lives in ``<root>/<name>/`` (:mod:`fdsl_app.training.run_dir`): besides the run directory's records,
``samples.png`` (a training batch as the model sees it), ``curves.png`` (loss, accuracy and learning rate by step,
drawn at the end), ``checkpoints/`` (``last.ckpt`` and the best by ``val/top1``), with W&B ``wandb/`` plus
``wandb_id`` so a resumed run continues the same W&B run, and with TensorBoard ``tensorboard/``.
``resume=auto`` continues from ``checkpoints/last.ckpt`` of a run with the same config.

With several processes every rank runs :func:`fit`; :mod:`fdsl_app.cluster.launch` says which launcher started
them (``env``) and checks the world before the fit starts (``before_fit``). Rank 0 alone writes the run directory.
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.environments import ClusterEnvironment
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.strategies import StrategyRegistry
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from fdsl_app.config import RunCfg, to_dict
from fdsl_app.data.build import build_datamodule
from fdsl_app.data.class_lists import load_class_list
from fdsl_app.data.real import RealDataModule
from fdsl_app.data.synthetic import EpochSampler
from fdsl_app.families import resolve_family
from fdsl_app.files import write_atomic
from fdsl_app.models.checkpoint import load_pretrained
from fdsl_app.models.module import ClassifierModule, NonFiniteLossError, create_network
from fdsl_app.training.callbacks import DataPosition, LastCheckpoint, RngState, SampleGrid, SampleLedger, Throughput
from fdsl_app.training.checkpoints import check_fits, read_checkpoint
from fdsl_app.training.evaluation import final_test
from fdsl_app.training.lightning_internals import drop_wandb_anonymous, stop_by_steps
from fdsl_app.training.preemption import Preemption, StopCause
from fdsl_app.training.pretrained import normalisation_report, resolve_init_from, unfinished_warning
from fdsl_app.training.run_dir import (
    environment,
    is_rank_zero,
    merge_metrics,
    owned_run_dir,
    read_metrics,
    write_state,
)
from fdsl_app.training.runs import write_run_curves
from fdsl_app.training.terminal import StepBar, interactive, progress_callbacks, quiet_libraries

log = logging.getLogger("fdsl_app")


@dataclass
class FitResult:
    """What a fit left behind."""

    run_dir: Path
    last_checkpoint: Path | None
    best_checkpoint: Path | None
    metrics: dict[str, float]
    perf: dict[str, float]
    seconds: float
    stop: StopCause = StopCause.NONE  # what ended the run before its last step, if a signal or the time limit did
    results: dict[str, Any] | None = None  # results.json: the final test of a finished run on real data

    @property
    def stopped_by(self) -> str | None:
        return self.stop.reason if self.stop else None

    @property
    def terminated(self) -> bool:
        """Stopped by SIGTERM: the command exits with status 143, as a SIGTERM'd process."""
        return self.stop == StopCause.SIGTERM

    @property
    def interrupted(self) -> bool:
        """Stopped by Ctrl-C: the command exits with status 130, as an interrupted process."""
        return self.stop == StopCause.INTERRUPT

    @property
    def requeue_requested(self) -> bool:
        """Stopped by the requeue signal: the job should go back in the queue."""
        return self.stop == StopCause.REQUEUE_SIGNAL


def _precision(value: str) -> str:
    if value != "auto":
        return value
    return "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "32-true"


def _loggers(cfg: RunCfg, run_dir: Path) -> list[Any] | bool:
    """metrics.csv first (the run's own record, which ``fdsl_app runs`` and curves.png read), then W&B and
    TensorBoard as asked."""
    backends = cfg.log.backends
    if "none" in backends:
        return False
    loggers: list[Any] = [L.pytorch.loggers.CSVLogger(save_dir=run_dir, name="", version="")]
    if "wandb" in backends:
        loggers.append(_wandb_logger(cfg, run_dir))
    if "tensorboard" in backends:
        loggers.append(L.pytorch.loggers.TensorBoardLogger(save_dir=run_dir, name="tensorboard", version="",
                                                           default_hp_metric=False))  # fmt: skip
    return loggers


def _wandb_logger(cfg: RunCfg, run_dir: Path) -> Any:
    import wandb  # imported only when asked for

    # The run id is kept in the run directory, so that a resumed run continues the same W&B run.
    id_file = run_dir / "wandb_id"
    if not id_file.is_file() and is_rank_zero():  # other ranks log nothing to W&B
        id_file.write_text(wandb.sdk.lib.runid.generate_id())
    run_id = id_file.read_text().strip() if id_file.is_file() else None
    logger = WandbLogger(project=cfg.log.project, name=cfg.name, save_dir=str(run_dir), id=run_id,
                         resume="allow", offline=cfg.log.wandb_mode == "offline", config=to_dict(cfg))  # fmt: skip
    drop_wandb_anonymous(logger)
    return logger


def preflight(cfg: RunCfg) -> None:
    """What can be refused before the run directory is made, in one line each: a GPU accelerator where torch sees
    none (Lightning's own refusal is a traceback; checked here, not at config load, so that a GPU recipe can be
    checked on a login node), the family with its parameter file, and the network's name and patch grid (built on
    the meta device: no memory, no init)."""
    accelerator = cfg.trainer.accelerator
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ValueError(f"trainer.accelerator={accelerator} but torch sees no CUDA GPU here: run on a GPU node, or "
                         "set trainer.accelerator=cpu (or auto)")  # fmt: skip
    strategy = cfg.trainer.strategy
    if "tensorboard" in cfg.log.backends and not _tensorboard_available():
        raise ValueError("log.backend includes tensorboard, which is not installed: pip install tensorboard (or "
                         "drop tensorboard from log.backend)")  # fmt: skip
    if strategy != "auto" and strategy not in StrategyRegistry:
        close = ", ".join(difflib.get_close_matches(strategy, StrategyRegistry.available_strategies(), n=3))
        raise ValueError(f"unknown trainer.strategy={strategy!r}; close matches: {close or 'none'} (or auto)")
    if cfg.data.source == "family":  # its settings and parameter file (shapes, family), read again by the build
        resolve_family(cfg.data.family, dict(cfg.data.settings), cfg.data.params)
    if cfg.data.source == "imagenet100":
        load_class_list(cfg.data.class_list)
    if cfg.model.init_from is not None:
        resolve_init_from(cfg.model.init_from, cfg.root)
    if not cfg.model.pretrained:  # timm's own weights would be loaded: the real build checks the same
        with torch.device("meta"):
            create_network(cfg.model, 2, cfg.data.image_size)


def record_data_source(datamodule: L.LightningDataModule, run_dir: Path | None) -> None:
    """Real data, once set up: ``data.json`` in the run directory (what was read: CIFAR files' MD5s, the ImageNet-100
    class list and image counts; rewritten by each session of a run, as env.json; `run_dir` None: not written) and
    its one-line summary in the output, a warning when the data is not what its source expects."""
    if not isinstance(datamodule, RealDataModule):
        return
    record = datamodule.source_record()  # read once: it hashes CIFAR's files and counts ImageNet's folders
    line, as_expected = datamodule.source_summary(record)
    if run_dir is not None:
        write_atomic(run_dir / "data.json", json.dumps(record, indent=2))
        line += f" (details: {run_dir / 'data.json'})"
    (log.info if as_expected else log.warning)(line)


def _tensorboard_available() -> bool:
    import importlib.util

    return any(importlib.util.find_spec(name) is not None for name in ("tensorboard", "tensorboardX"))


def make_trainer(
    cfg: RunCfg, run_dir: Path, callbacks: list[L.Callback], logger: Any, env: Any = None, profiler: Any = None
) -> L.Trainer:
    """The Trainer of `cfg`; `env`: the launcher's environment (:mod:`fdsl_app.cluster.environments`); `profiler`:
    a :class:`Throughput`'s ``fetch_timer`` when it is among the callbacks."""
    t = cfg.trainer
    try:
        return L.Trainer(
            default_root_dir=run_dir, max_epochs=t.max_epochs, max_steps=t.max_steps, accelerator=t.accelerator,
            devices=t.devices, num_nodes=t.num_nodes, strategy=t.strategy, precision=_precision(t.precision),
            accumulate_grad_batches=t.accumulate_grad_batches, log_every_n_steps=t.log_every_n_steps,
            limit_train_batches=t.limit_train_batches, limit_val_batches=t.limit_val_batches,
            check_val_every_n_epoch=t.val_every_n_epochs, gradient_clip_val=cfg.optim.clip_grad,
            enable_progress_bar=any(isinstance(c, StepBar) for c in callbacks), callbacks=callbacks, logger=logger,
            enable_model_summary=False,
            plugins=[env] if env is not None else None, profiler=profiler,
        )  # fmt: skip
    except (MisconfigurationException, ValueError, TypeError, ImportError) as err:  # settings Lightning refuses
        detail = " ".join(str(err).split())[:300]
        raise ValueError(f"Lightning refuses the trainer settings (trainer.accelerator={t.accelerator}, devices="
                         f"{t.devices}, strategy={t.strategy}, precision={t.precision}): {detail}") from None


def _steps_per_epoch(cfg: RunCfg, batches: int) -> int:
    limit = cfg.trainer.limit_train_batches
    if limit is not None:
        batches = min(batches, int(limit)) if limit > 1 or isinstance(limit, int) else int(batches * limit)
    return max(1, math.ceil(batches / cfg.trainer.accumulate_grad_batches))


def _rank_batches(loader: Any, world_size: int) -> int:
    """Batches of one rank's epoch, from a loader built before the trainer is attached (over one process): the
    EpochSampler gives each of `world_size` ranks ceil(n / W) samples (n // W with drop_last), in batches of the
    per-device size."""
    sampler = loader.sampler
    n = len(sampler.dataset) if isinstance(sampler, EpochSampler) else len(loader.dataset)
    per_rank = n // world_size if getattr(sampler, "drop_last", False) else math.ceil(n / world_size)
    return per_rank // loader.batch_size if loader.drop_last else math.ceil(per_rank / loader.batch_size)


def build(cfg: RunCfg, trainer: L.Trainer, *, training: bool = True) -> tuple[L.LightningDataModule, ClassifierModule]:
    """The datamodule and the module for `cfg`, sized for `trainer`'s world (for evaluation: no schedule, no init)."""
    datamodule, num_classes = build_datamodule(cfg, world_size=trainer.world_size)
    steps_per_epoch = max_steps = 1
    if training:
        datamodule.setup("fit")
        steps_per_epoch = _steps_per_epoch(cfg, _rank_batches(datamodule.train_dataloader(), trainer.world_size))
        max_steps = cfg.trainer.max_steps if cfg.trainer.max_steps > 0 else steps_per_epoch * cfg.trainer.max_epochs
    net = create_network(cfg.model, num_classes, cfg.data.image_size)
    if training and cfg.model.init_from is not None:
        load_pretrained(net, resolve_init_from(cfg.model.init_from, cfg.root), report=log.info)
    module = ClassifierModule(net, num_classes, cfg.optim, cfg.data.augment, global_batch_size=cfg.data.batch_size,
                              steps_per_epoch=steps_per_epoch, max_steps=max_steps)  # fmt: skip
    return datamodule, module


@dataclass
class _Callbacks:
    """The callbacks of a fit, in the order they must run: stop requests (time limit, job signals) before
    LastCheckpoint, so that the stop is saved; the ledger records before DataPosition starts the loader's first
    iterator."""

    preemption: Preemption
    last: LastCheckpoint
    best: ModelCheckpoint
    throughput: Throughput
    others: list[L.Callback]

    @classmethod
    def of(cls, cfg: RunCfg, run_dir: Path, logger: Any) -> _Callbacks:
        # `last` at a training step (see LastCheckpoint), `best` by val/top1 after validation.
        last = LastCheckpoint(run_dir / "checkpoints" / "last.ckpt", cfg.trainer.checkpoint_every_n_steps,
                              cfg.trainer.stop_at_step)  # fmt: skip
        best = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best-{epoch:03d}-{step:08d}",
                               monitor="val/top1", mode="max", save_top_k=1, save_on_train_epoch_end=False)  # fmt: skip
        others: list[L.Callback] = [SampleLedger(run_dir / "ledger")] if cfg.log.sample_ledger else []
        others += [DataPosition(), RngState()]
        if cfg.log.sample_grid:
            wandb = next((x for x in logger if isinstance(x, WandbLogger)), None) if logger else None
            others.append(SampleGrid(run_dir / "samples.png", cfg.data.augment.mean, cfg.data.augment.std, wandb))
        throughput = Throughput(window=cfg.trainer.log_every_n_steps)  # a figure per logged step
        others += progress_callbacks(cfg.trainer.enable_progress_bar, cfg.trainer.log_every_n_steps)[0]
        return cls(Preemption(cfg.trainer.max_time), last, best, throughput, others)

    @property
    def all(self) -> list[L.Callback]:
        return [self.preemption, self.last, self.best, self.throughput, *self.others]


def fit(
    cfg: RunCfg,
    *,
    env: ClusterEnvironment | None = None,
    before_fit: Callable[[L.Trainer], None] | None = None,
) -> FitResult:
    """Train as `cfg` says; returns where the run went and its final metrics.

    Args:
        cfg: the run.
        env: the Lightning environment of the launcher that started the processes (None: Lightning starts them).
        before_fit: called with the Trainer right before fitting, once the data and the model are built (the
            cluster launcher checks the world there and waits for rank 0).
    """
    start = time.perf_counter()
    quiet_libraries()
    preflight(cfg)  # before the run directory is made
    with owned_run_dir(cfg) as (run_dir, resume_from):
        if is_rank_zero():
            write_atomic(run_dir / "env.json", json.dumps(environment(), indent=2))
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        init_from = _announce_init(cfg)
        logger = _loggers(cfg, run_dir)
        callbacks = _Callbacks.of(cfg, run_dir, logger)
        trainer = make_trainer(cfg, run_dir, callbacks.all, logger, env, profiler=callbacks.throughput.fetch_timer)
        datamodule, module = build(cfg, trainer)
        if is_rank_zero():
            record_data_source(datamodule, run_dir)
        if resume_from is not None:
            checkpoint = read_checkpoint(resume_from)  # mapped: reading it again costs little
            check_fits(checkpoint, resume_from, module)
            if is_rank_zero():  # Lightning's own "Restored all states" line is among the library noise left out
                log.info(f"resuming from {resume_from} at step {checkpoint.get('global_step', '?')}")
        stop_by_steps(trainer, module.max_steps)  # the schedule's length (see DataPosition)
        if before_fit is not None:
            before_fit(trainer)
        _run(cfg, trainer, module, datamodule, run_dir, resume_from, callbacks)
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if torch.is_tensor(v) and v.numel() == 1}
        results = None
        if trainer.global_step >= module.max_steps and callbacks.last.path.is_file():  # finished: test it once
            results = final_test(cfg, trainer, module, datamodule, run_dir, callbacks.best, callbacks.last.path,
                                 init_from)  # fmt: skip
    last = callbacks.last.path if callbacks.last.path.is_file() else None
    best = Path(callbacks.best.best_model_path) if callbacks.best.best_model_path else _newest_best(run_dir)
    return FitResult(run_dir, last, best, metrics, callbacks.throughput.summary(), time.perf_counter() - start,
                     callbacks.preemption.cause, results)  # fmt: skip


def _announce_init(cfg: RunCfg) -> Path | None:
    """Log where the fine-tuning weights come from and the normalisation against the pre-training run's; returns the
    resolved checkpoint (None: from scratch)."""
    init_from = resolve_init_from(cfg.model.init_from, cfg.root) if cfg.model.init_from is not None else None
    line, differs = normalisation_report(cfg, init_from)
    (log.warning if differs else log.info)(line + (" (they differ: intended?)" if differs else ""))
    unfinished = unfinished_warning(init_from) if init_from is not None else None
    if unfinished:
        log.warning(unfinished)
    return init_from


def _newest_best(run_dir: Path) -> Path | None:
    """The best checkpoint an earlier session saved, when this one validated nothing (a resume that stopped first)."""
    saved = sorted((run_dir / "checkpoints").glob("best-*.ckpt"), key=lambda p: p.stat().st_mtime)
    return saved[-1] if saved else None


def _run(
    cfg: RunCfg, trainer: L.Trainer, module: ClassifierModule, datamodule: L.LightningDataModule, run_dir: Path,
    resume_from: Path | None, callbacks: _Callbacks,
) -> None:  # fmt: skip
    """``trainer.fit``, recording in ``state.json`` how it ended and keeping ``metrics.csv`` whole over resumes."""
    preemption = callbacks.preemption
    earlier_metrics = read_metrics(run_dir / "metrics.csv") if resume_from is not None else []
    ended = False
    try:
        with warnings.catch_warnings():
            # metrics.csv and the checkpoints live in the run directory and a resumed run adds to them, as intended.
            warnings.filterwarnings("ignore", message="Experiment logs directory .* exists and is not empty")
            warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")
            # The data position is restored by DataPosition (EpochSampler, every data source), which Lightning
            # does not know about.
            warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch")
            trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from)
    except NonFiniteLossError as err:
        good = run_dir / "checkpoints" / "last-good.ckpt"
        trainer.save_checkpoint(good)  # the loss is checked before backward: these weights are the last good ones
        write_state(run_dir, "failed", trainer.global_step, module.max_steps, str(err))
        raise NonFiniteLossError(f"{err}; the last good state is in {good}") from None
    except BaseException as err:
        write_state(run_dir, "failed", trainer.global_step, module.max_steps, f"{type(err).__name__}: {err}")
        raise
    else:
        finished = trainer.global_step >= module.max_steps
        write_state(run_dir, "finished" if finished else "stopped", trainer.global_step, module.max_steps,
                    reason=None if finished else preemption.reason or "trainer.stop_at_step")  # fmt: skip
        ended = True
    finally:
        if is_rank_zero():
            merge_metrics(run_dir / "metrics.csv", earlier_metrics, callbacks.last.recovered_row)
            if ended:  # a failed run gives its lock back at once: its launcher may kill it any moment
                write_run_curves(run_dir)
        if "wandb" in cfg.log.backends and trainer.is_global_zero:
            import wandb

            wandb.finish()  # close this run's files; a resumed fit reopens the same run id


def evaluate(
    cfg: RunCfg, checkpoint: str | Path, stage: str = "validate", *, env: ClusterEnvironment | None = None
) -> dict[str, float]:
    """Validate or test a checkpoint on `cfg`'s data; returns the metrics (`env`: as for :func:`fit`)."""
    checkpoint = Path(checkpoint)
    quiet_libraries()
    stored = dict(read_checkpoint(checkpoint))  # unreadable: refused before anything is built
    stored["state_dict"] = dict(stored["state_dict"])  # on_load_checkpoint edits it
    os.makedirs(cfg.run_dir, exist_ok=True)
    bar = [StepBar()] if cfg.trainer.enable_progress_bar and interactive() else []
    trainer = make_trainer(cfg, cfg.run_dir, bar, False, env)
    datamodule, module = build(cfg, trainer, training=False)
    check_fits(stored, checkpoint, module)
    module.on_load_checkpoint(stored)  # EMA weights in or out, as a resume handles them
    module.load_state_dict(stored["state_dict"])
    if isinstance(datamodule, RealDataModule) and is_rank_zero():
        datamodule.setup(stage)  # Lightning's own setup then finds the split read
        record_data_source(datamodule, None)
    run = trainer.validate if stage == "validate" else trainer.test
    results = run(module, datamodule=datamodule)
    return {k: float(v) for k, v in (results[0] if results else {}).items()}
