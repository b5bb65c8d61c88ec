"""Config -> datamodule, module, callbacks, loggers, Trainer -> fit; and validate/test of a checkpoint.

A run lives in ``<root>/<name>/``: ``config.yaml`` (the resolved config), ``env.json`` (versions, git commit,
renderer build), ``metrics.csv``, ``samples.png`` (a training batch as the model sees it), ``checkpoints/``
(``last.ckpt`` and the best by ``val/top1``), ``state.json`` (``finished``, ``stopped`` with a checkpoint to resume
from, or ``failed``, with the step reached) and, with W&B, ``wandb/`` plus ``wandb_id`` so a resumed run continues
the same W&B run. ``resume=auto`` continues from ``checkpoints/last.ckpt`` of a run with the same config.

With several processes (see :mod:`fdsl_app.cluster`) every rank runs :func:`fit`; rank 0 alone writes the run
directory's files.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import platform
import socket
import subprocess
import time
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint

from fdsl_app import cluster, render
from fdsl_app.callbacks import DataPosition, LastCheckpoint, RngState, SampleGrid, SampleLedger, Throughput
from fdsl_app.config import RunCfg, to_dict, to_yaml
from fdsl_app.data.build import build_datamodule
from fdsl_app.data.synthetic import EpochSampler
from fdsl_app.models.checkpoint import load_pretrained
from fdsl_app.models.module import ClassifierModule, NonFiniteLossError, create_network

log = logging.getLogger("fdsl_app")

# Keys a resumed run may change: how long it runs, where, and how it loads and logs. (A longer max_steps or
# max_epochs stretches the learning-rate schedule from the resumed step on; other devices or nodes change the
# per-rank augmentation seeds: both deliberate choices of whoever resumes.)
_RESUME_FREE = {
    "resume", "trainer.max_epochs", "trainer.max_steps", "trainer.enable_progress_bar", "trainer.devices",
    "trainer.num_nodes", "trainer.strategy", "trainer.checkpoint_every_n_steps", "data.num_workers",
    "data.pin_memory", "data.persistent_workers", "log.backend", "log.wandb_mode", "log.sample_grid",
    "trainer.stop_at_step", "trainer.max_time", "trainer.cluster", "trainer.connect_timeout", "log.sample_ledger",
}  # fmt: skip


@dataclass
class FitResult:
    """What a fit left behind."""

    run_dir: Path
    last_checkpoint: Path | None
    best_checkpoint: Path | None
    metrics: dict[str, float]
    perf: dict[str, float]
    seconds: float
    stopped_by: str | None = None  # what ended the run before its last step: a signal or the time limit
    terminated: bool = False  # stopped by SIGTERM (the command exits with status 143)


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and key != "settings":
            flat |= _flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def prepare_run_dir(cfg: RunCfg) -> tuple[Path, Path | None]:
    """The run directory, made and holding `cfg`, and the checkpoint to resume from (None: a fresh run)."""
    run_dir, resume_from = inspect_run_dir(cfg)
    try:
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"cannot create run directory {run_dir}: {err.strerror or err}") from None
    if cluster.is_rank_zero():
        _write_atomic(run_dir / "config.yaml", to_yaml(cfg))  # other ranks may be reading it
    return run_dir, resume_from


def inspect_run_dir(cfg: RunCfg) -> tuple[Path, Path | None]:
    """The run directory and the checkpoint a fit would resume from (None: a fresh run), writing nothing.

    Raises:
        ValueError: the directory holds a run of another config, or checkpoints without resume=auto.
    """
    run_dir = cfg.run_dir
    saved = run_dir / "config.yaml"
    last = run_dir / "checkpoints" / "last.ckpt"
    if cfg.resume not in (None, "auto"):
        resume_from: Path | None = Path(cfg.resume)
    elif cfg.resume == "auto":
        resume_from = last if last.is_file() else None
    else:
        resume_from = None
    if saved.is_file():
        if cfg.resume is None and last.is_file():
            raise ValueError(
                f"{run_dir} already holds a run with checkpoints; continue it with resume=auto, or start a new one "
                "with another name=..."
            )
        old = _flatten(yaml.safe_load(saved.read_text()) or {})
        new = _flatten(to_dict(cfg))
        differ = sorted(k for k in old.keys() | new.keys() if k not in _RESUME_FREE and old.get(k) != new.get(k))
        if differ and resume_from is not None:
            detail = "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in differ[:6])
            raise ValueError(f"{run_dir} belongs to a different config ({detail}); use another name=... for it")
    return run_dir, resume_from


def run_status(cfg: RunCfg) -> str:
    """One line on what a fit of `cfg` would do: start, resume (from which step), or nothing (finished).

    Raises:
        ValueError: as :func:`inspect_run_dir`.
    """
    run_dir, resume_from = inspect_run_dir(cfg)
    state_file = run_dir / "state.json"
    state = json.loads(state_file.read_text()) if state_file.is_file() else {}
    if resume_from is None:
        return f"run {run_dir}: new"
    saved = yaml.safe_load((run_dir / "config.yaml").read_text()) or {} if (run_dir / "config.yaml").is_file() else {}
    limits = {k: saved.get("trainer", {}).get(k) for k in ("max_steps", "max_epochs")}
    same_length = limits == {"max_steps": cfg.trainer.max_steps, "max_epochs": cfg.trainer.max_epochs}
    if state.get("state") == "finished" and cfg.resume == "auto" and same_length:
        return f"run {run_dir}: finished at step {state.get('step')}"
    by = f" by {state['reason']}" if state.get("reason") else ""
    at = f" (state {state.get('state')} at step {state.get('step')}{by})" if state else ""
    return f"run {run_dir}: resumes from {resume_from}{at}"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _write_state(
    run_dir: Path, state: str, step: int, max_steps: int, error: str | None = None, reason: str | None = None
) -> None:
    """``state.json``: whether the run finished, stopped early (resume=auto continues it; `reason`: what stopped
    it, if not stop_at_step) or failed (`error`)."""
    if cluster.is_rank_zero():
        record = {"state": state, "step": step, "max_steps": max_steps, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        if error is not None:
            record["error"] = error
        if reason is not None:
            record["reason"] = reason
        _write_atomic(run_dir / "state.json", json.dumps(record, indent=2))


def _read_metrics(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _merge_metrics(path: Path, earlier: list[dict[str, str]]) -> None:
    """Put the rows of the sessions before a resume back in front of this session's (Lightning's CSV logger starts
    the file afresh). Earlier rows from steps this session redid (after the checkpoint it resumed from) are dropped."""
    if not earlier:
        return
    new = _read_metrics(path)
    first = min((int(r["step"]) for r in new if r.get("step")), default=None)
    kept = [r for r in earlier if first is None or not r.get("step") or int(r["step"]) < first]
    fields = list(dict.fromkeys(k for row in (*kept, *new) for k in row))
    tmp = path.with_name(path.name + ".tmp")  # replaced atomically: a job killed now keeps the old file
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows([*kept, *new])
    tmp.replace(path)


def environment() -> dict[str, Any]:
    """What produced a run: package versions, git commit, renderer build, hardware."""
    versions = {}
    for name in ("fdsl_app", "torch", "torchvision", "timm", "lightning", "torchmetrics", "numpy", "wandb"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                                cwd=Path(__file__).parent).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        commit = None
    gpus = range(torch.cuda.device_count()) if torch.cuda.is_available() else range(0)
    cuda = [torch.cuda.get_device_name(i) for i in gpus]
    return {
        "versions": versions, "git_commit": commit, "python": platform.python_version(), "host": socket.gethostname(),
        "renderer": {"build_flags": render.build_flags(), "fast_kernel": render.fast_kernel()},
        "cpus": render.cpu_count(), "cuda_devices": cuda, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }  # fmt: skip


def _precision(value: str) -> str:
    if value != "auto":
        return value
    return "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "32-true"


def _logger(cfg: RunCfg, run_dir: Path) -> Any:
    if cfg.log.backend == "none":
        return False
    if cfg.log.backend == "csv":
        return L.pytorch.loggers.CSVLogger(save_dir=run_dir, name="", version="")
    import wandb  # imported only when asked for
    from lightning.pytorch.loggers import WandbLogger

    # The run id is kept in the run directory, so that a resumed run continues the same W&B run.
    id_file = run_dir / "wandb_id"
    if not id_file.is_file() and cluster.is_rank_zero():  # other ranks log nothing to W&B
        id_file.write_text(wandb.sdk.lib.runid.generate_id())
    run_id = id_file.read_text().strip() if id_file.is_file() else None
    return WandbLogger(project=cfg.log.project, name=cfg.name, save_dir=str(run_dir), id=run_id,
                       resume="allow", offline=cfg.log.wandb_mode == "offline", config=to_dict(cfg))  # fmt: skip


def make_trainer(cfg: RunCfg, run_dir: Path, callbacks: list[L.Callback], logger: Any, env: Any = None) -> L.Trainer:
    """The Trainer of `cfg`; `env`: the cluster environment (:func:`fdsl_app.cluster.select_environment`)."""
    t = cfg.trainer
    return L.Trainer(
        default_root_dir=run_dir, max_epochs=t.max_epochs, max_steps=t.max_steps, accelerator=t.accelerator,
        devices=t.devices, num_nodes=t.num_nodes, strategy=t.strategy, precision=_precision(t.precision),
        accumulate_grad_batches=t.accumulate_grad_batches, log_every_n_steps=t.log_every_n_steps,
        limit_train_batches=t.limit_train_batches, limit_val_batches=t.limit_val_batches,
        check_val_every_n_epoch=t.val_every_n_epochs, gradient_clip_val=cfg.optim.clip_grad,
        enable_progress_bar=t.enable_progress_bar, callbacks=callbacks, logger=logger, enable_model_summary=False,
        plugins=[env] if env is not None else None,
    )  # fmt: skip


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
        load_pretrained(net, cfg.model.init_from, report=log.info)
    module = ClassifierModule(net, num_classes, cfg.optim, cfg.data.augment, global_batch_size=cfg.data.batch_size,
                              steps_per_epoch=steps_per_epoch, max_steps=max_steps)  # fmt: skip
    return datamodule, module


def fit(cfg: RunCfg) -> FitResult:
    """Train as `cfg` says; returns where the run went and its final metrics."""
    start = time.perf_counter()
    env = cluster.select_environment(cfg.trainer.cluster)  # first: it tells which rank writes the files
    cluster.adopt_rank(env)
    run_dir, resume_from = prepare_run_dir(cfg)
    if cluster.is_rank_zero():
        _write_atomic(run_dir / "env.json", json.dumps(environment(), indent=2))
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    logger = _logger(cfg, run_dir)
    # `last` at a training step (see LastCheckpoint), `best` by val/top1 after validation.
    last = LastCheckpoint(run_dir / "checkpoints" / "last.ckpt", cfg.trainer.checkpoint_every_n_steps,
                          cfg.trainer.stop_at_step)  # fmt: skip
    best = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best-{epoch:03d}-{step:08d}",
                           monitor="val/top1", mode="max", save_top_k=1, save_on_train_epoch_end=False)  # fmt: skip
    throughput = Throughput()
    preemption = cluster.Preemption(cfg.trainer.max_time)
    # Order matters: stop requests (time limit, job signals) before LastCheckpoint, so that the stop is saved; the
    # ledger starts recording before DataPosition starts the loader's first iterator.
    ledger = [SampleLedger(run_dir / "ledger")] if cfg.log.sample_ledger else []
    callbacks: list[L.Callback] = [preemption, last, best, throughput, *ledger, DataPosition(), RngState()]
    if cfg.log.sample_grid:
        wandb = logger if cfg.log.backend == "wandb" else None
        callbacks.append(SampleGrid(run_dir / "samples.png", cfg.data.augment.mean, cfg.data.augment.std, wandb))
    trainer = make_trainer(cfg, run_dir, callbacks, logger, env)
    cluster.check_world(env, trainer)
    if trainer.world_size > 1:
        log.info(cluster.describe(env, trainer), extra={"all_ranks": True})
    datamodule, module = build(cfg, trainer)
    # Stop by steps, the schedule's length: Lightning's epoch counter can skip an epoch on a resume (DataPosition).
    trainer.fit_loop.epoch_loop.max_steps, trainer.fit_loop.max_epochs = module.max_steps, -1
    if env is not None and trainer.world_size > 1 and trainer.global_rank != 0:
        cluster.wait_for_main(env.main_address, env.main_port, cfg.trainer.connect_timeout, trainer.global_rank)
    earlier_metrics = _read_metrics(run_dir / "metrics.csv") if resume_from is not None else []
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
        _write_state(run_dir, "failed", trainer.global_step, module.max_steps, str(err))
        raise RuntimeError(f"{err}; the last good state is in {good}") from None
    except BaseException as err:
        _write_state(run_dir, "failed", trainer.global_step, module.max_steps, f"{type(err).__name__}: {err}")
        raise
    else:
        finished = trainer.global_step >= module.max_steps
        _write_state(run_dir, "finished" if finished else "stopped", trainer.global_step, module.max_steps,
                     reason=None if finished else preemption.reason or "trainer.stop_at_step")  # fmt: skip
    finally:
        if cluster.is_rank_zero():
            _merge_metrics(run_dir / "metrics.csv", earlier_metrics)
        if cfg.log.backend == "wandb" and trainer.is_global_zero:
            import wandb

            wandb.finish()  # close this run's files; a resumed fit reopens the same run id
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if torch.is_tensor(v) and v.numel() == 1}
    last_path = last.path if last.path.is_file() else None
    best_path = Path(best.best_model_path) if best.best_model_path else None
    if preemption.requeue_requested:
        preemption.requeue()  # last: Slurm ends this job's processes when it requeues it
    return FitResult(run_dir, last_path, best_path, metrics, throughput.summary(), time.perf_counter() - start,
                     preemption.reason, preemption.terminated)  # fmt: skip


def evaluate(cfg: RunCfg, checkpoint: str | Path, stage: str = "validate") -> dict[str, float]:
    """Validate or test a checkpoint on `cfg`'s data; returns the metrics."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise ValueError(f"checkpoint {checkpoint} does not exist")
    env = cluster.select_environment(cfg.trainer.cluster)
    os.makedirs(cfg.run_dir, exist_ok=True)
    trainer = make_trainer(cfg, cfg.run_dir, [], False, env)
    datamodule, module = build(cfg, trainer, training=False)
    try:
        stored = torch.load(checkpoint, map_location="cpu", weights_only=True)
        module.on_load_checkpoint(stored)  # EMA weights in or out, as a resume handles them
        module.load_state_dict(stored["state_dict"])
    except (RuntimeError, KeyError, TypeError, OSError, EOFError) as err:  # pickle errors are RuntimeErrors here
        reason = " ".join(str(err).split())[:300] or type(err).__name__
        raise ValueError(f"{checkpoint} is not a checkpoint of this config's model ({reason})") from None
    run = trainer.validate if stage == "validate" else trainer.test
    results = run(module, datamodule=datamodule)
    return {k: float(v) for k, v in (results[0] if results else {}).items()}
