"""Launch a fit or an evaluation on whatever started this process: pick the environment, adopt the rank, check
the world and wait for rank 0 before fitting, and put a Slurm job back in the queue after a requeue signal."""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

import lightning as L
from lightning.fabric.plugins.environments import ClusterEnvironment

from fdsl_app.cluster.environments import adopt_rank, check_world, describe, select_environment, wait_for_main
from fdsl_app.config import RunCfg
from fdsl_app.training.fit import FitResult, evaluate, fit
from fdsl_app.training.run_dir import is_rank_zero

log = logging.getLogger("fdsl_app")


def launch_fit(cfg: RunCfg) -> FitResult:
    """:func:`~fdsl_app.training.fit.fit` on this process's launcher (``trainer.cluster``); requeues the Slurm job
    when the run stopped on the requeue signal."""
    env = select_environment(cfg.trainer.cluster)  # first: it tells which rank writes the files
    adopt_rank(env)
    result = fit(cfg, env=env, before_fit=lambda trainer: join_world(env, trainer, cfg.trainer.connect_timeout))
    if result.requeue_requested:
        requeue_slurm_job()  # last: Slurm ends this job's processes when it requeues it
    return result


def launch_evaluate(cfg: RunCfg, checkpoint: str | Path, stage: str) -> dict[str, float]:
    """:func:`~fdsl_app.training.fit.evaluate` on this process's launcher."""
    env = select_environment(cfg.trainer.cluster)
    adopt_rank(env)
    return evaluate(cfg, checkpoint, stage, env=env)


def join_world(env: ClusterEnvironment | None, trainer: L.Trainer, connect_timeout: float) -> None:
    """Refuse a launcher that disagrees with the config, say where this rank sits, and wait until rank 0 listens."""
    check_world(env, trainer)
    if trainer.world_size > 1:
        log.info(describe(env, trainer), extra={"all_ranks": True})
        if env is not None and trainer.global_rank != 0:
            wait_for_main(env.main_address, env.main_port, connect_timeout, trainer.global_rank)


def requeue_slurm_job() -> None:
    """Put this Slurm job back in the queue (rank 0 only; a no-op outside Slurm)."""
    job = os.environ.get("SLURM_JOB_ID")
    if not is_rank_zero() or not job:
        return
    if os.environ.get("SLURM_ARRAY_JOB_ID"):
        job = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
    if result.returncode == 0:
        log.info("requeued Slurm job %s: it resumes from the checkpoint when it starts again", job)
    else:
        log.warning("scontrol requeue %s failed (%s): resubmit the job to resume", job, result.stderr.strip())
