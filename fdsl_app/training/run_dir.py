"""A run directory ``<root>/<name>/``: what is in it, whether a fit starts, resumes or is done, and its records.

``config.yaml`` (the resolved config), ``env.json`` (what produced the run), ``data.json`` (real data: which files
and class list were read, see :func:`fdsl_app.training.fit.record_data_source`), ``metrics.csv``, ``state.json``
(``finished``, ``stopped`` with a checkpoint to resume from and the reason, or ``failed`` with the error; and the
step), ``checkpoints/``. With several processes every rank runs the fit and rank 0 alone writes these files.
"""

from __future__ import annotations

import csv
import json
import logging
import platform
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch.utilities import rank_zero_only

from fdsl_app import provenance
from fdsl_app.config import RunCfg, to_dict, to_yaml
from fdsl_app.files import atomic_path, leftover_temporaries, write_atomic
from fdsl_app.training import run_lock
from fdsl_app.training.checkpoints import resume_point

log = logging.getLogger("fdsl_app")

# Keys a resumed run may change: where its directory lies (a run can be moved), how long it runs, where, and how
# it loads and logs. (A longer max_steps or max_epochs stretches the learning-rate schedule from the resumed step
# on; other devices or nodes change the per-rank augmentation seeds: both deliberate choices of whoever resumes.)
_RESUME_FREE = {
    "resume", "root", "trainer.max_epochs", "trainer.max_steps", "trainer.enable_progress_bar", "trainer.devices",
    "trainer.num_nodes", "trainer.strategy", "trainer.checkpoint_every_n_steps", "data.num_workers",
    "data.pin_memory", "data.persistent_workers", "log.backend", "log.wandb_mode", "log.sample_grid",
    "trainer.stop_at_step", "trainer.max_time", "trainer.cluster", "trainer.connect_timeout", "log.sample_ledger",
}  # fmt: skip


def is_rank_zero() -> bool:
    """Whether this process is rank 0 of the run, the one that writes the run directory and prints summaries (every
    rank runs fit; the rank is Lightning's, as the Trainer or the cluster launcher set it)."""
    return rank_zero_only.rank == 0


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and key != "settings":
            flat |= _flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


@contextmanager
def owned_run_dir(cfg: RunCfg) -> Iterator[tuple[Path, Path | None]]:
    """The run directory, made, locked by rank 0 (:mod:`~fdsl_app.training.run_lock`) and holding `cfg`, and the
    verified checkpoint to resume from (None: a fresh run); the lock is given back when the block ends.

    Raises:
        ValueError: as :func:`inspect_run_dir`; :class:`~fdsl_app.training.run_lock.RunLocked`: another fit holds
            the run.
    """
    run_dir = cfg.run_dir
    try:
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"cannot create run directory {run_dir}: {err.strerror or err}") from None
    holder = run_lock.acquire(run_dir) if is_rank_zero() else None
    try:
        if holder is not None:
            _remove_stale_temporaries(run_dir)
        run_dir, resume_from = inspect_run_dir(cfg, announce=True)
        if holder is not None:
            write_atomic(run_dir / "config.yaml", to_yaml(cfg))  # other ranks may be reading it
        yield run_dir, resume_from
    finally:
        if holder is not None:
            run_lock.release(run_dir, holder)


def _remove_stale_temporaries(run_dir: Path) -> None:
    """Remove the temporary files (``<name>.tmp<pid>``, see :mod:`fdsl_app.files`) an earlier fit killed mid-write
    left: only the lock's holder writes here, so none of them is being written now."""
    stale = leftover_temporaries(run_dir) + leftover_temporaries(run_dir / "checkpoints")
    for path in stale:
        path.unlink(missing_ok=True)
    if stale:
        log.warning(f"run {run_dir}: removed {len(stale)} partial file(s) of a fit killed while writing: "
                    f"{', '.join(p.name for p in stale)}")  # fmt: skip


def inspect_run_dir(cfg: RunCfg, *, announce: bool = False) -> tuple[Path, Path | None]:
    """The run directory and the checkpoint a fit would resume from (None: a fresh run), verified, writing nothing
    (`announce`: log a fall back, see :func:`~fdsl_app.training.checkpoints.resume_point`).

    Raises:
        ValueError: the directory holds a run of another config, or checkpoints without resume=auto; or no
            checkpoint to resume from can be read.
    """
    run_dir = cfg.run_dir
    saved = run_dir / "config.yaml"
    last = run_dir / "checkpoints" / "last.ckpt"
    resume_from = resume_point(run_dir, cfg.resume, announce=announce)
    if saved.is_file():
        if cfg.resume is None and last.is_file():
            raise ValueError(
                f"{run_dir} already holds a run with checkpoints; continue it with resume=auto, or start a new one "
                "with another name=..."
            )
        # A setting that an older version did not write had its default then: compare with that.
        old = _flatten(to_dict(RunCfg())) | _flatten(yaml.safe_load(saved.read_text()) or {})
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
    lock = run_lock.status(run_dir)
    if lock is not None:
        return f"run {run_dir}: {lock.line}" if lock.refuses else f"{_plan(cfg, run_dir, resume_from)}; {lock.line}"
    return _plan(cfg, run_dir, resume_from)


def _plan(cfg: RunCfg, run_dir: Path, resume_from: Path | None) -> str:
    state_file = run_dir / "state.json"
    state = json.loads(state_file.read_text()) if state_file.is_file() else {}
    if resume_from is None:
        return f"run {run_dir}: new"
    saved = yaml.safe_load((run_dir / "config.yaml").read_text()) or {} if (run_dir / "config.yaml").is_file() else {}
    limits = {k: saved.get("trainer", {}).get(k) for k in ("max_steps", "max_epochs")}
    same_length = limits == {"max_steps": cfg.trainer.max_steps, "max_epochs": cfg.trainer.max_epochs}
    last = run_dir / "checkpoints" / "last.ckpt"
    fell_back = cfg.resume == "auto" and resume_from != last
    if state.get("state") == "finished" and cfg.resume == "auto" and same_length and not fell_back:
        return f"run {run_dir}: finished at step {state.get('step')}"
    by = f" by {state['reason']}" if state.get("reason") else ""
    at = f" (state {state.get('state')} at step {state.get('step')}{by})" if state else ""
    fallback = f", as {last.name} is {'unreadable' if last.is_file() else 'missing'}" if fell_back else ""
    return f"run {run_dir}: resumes from {resume_from}{fallback}{at}"


def write_state(
    run_dir: Path, state: str, step: int, max_steps: int, error: str | None = None, reason: str | None = None
) -> None:
    """``state.json``: whether the run finished, stopped early (resume=auto continues it; `reason`: what stopped
    it, if not stop_at_step) or failed (`error`)."""
    if is_rank_zero():
        record = {"state": state, "step": step, "max_steps": max_steps, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        if error is not None:
            record["error"] = error
        if reason is not None:
            record["reason"] = reason
        write_atomic(run_dir / "state.json", json.dumps(record, indent=2))


def read_metrics(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def merge_metrics(path: Path, earlier: list[dict[str, str]], recovered: dict[str, float] | None = None) -> None:
    """Put the rows of the sessions before a resume back in front of this session's (Lightning's CSV logger starts
    the file afresh). Earlier rows from steps this session redid (after the checkpoint it resumed from) are dropped.
    `recovered`: the row of the checkpoint's own step, kept in the checkpoint (a kill right after it can have lost
    it from the file)."""
    if recovered is not None and not any(r.get("step") == str(int(recovered["step"])) for r in earlier):
        row = {k: str(int(v)) if k in ("step", "epoch") else repr(v) for k, v in recovered.items()}
        at = next((i for i, r in enumerate(earlier) if r.get("step") and int(r["step"]) > int(recovered["step"])),
                  len(earlier))  # fmt: skip
        earlier = [*earlier[:at], row, *earlier[at:]]
    if not earlier:
        return
    new = read_metrics(path)
    first = min((int(r["step"]) for r in new if r.get("step")), default=None)
    kept = [r for r in earlier if first is None or not r.get("step") or int(r["step"]) < first]
    fields = list(dict.fromkeys(k for row in (*kept, *new) for k in row))
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:  # a job killed now keeps the old file
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows([*kept, *new])


def environment() -> dict[str, Any]:
    """What produced a run: package versions, git commit, renderer build, hardware."""
    import torch

    gpus = range(torch.cuda.device_count()) if torch.cuda.is_available() else range(0)
    machine = provenance.machine()
    names = ("fdsl_app", "torch", "torchvision", "timm", "lightning", "torchmetrics", "numpy", "wandb")
    return {
        "versions": provenance.versions(names), "git_commit": provenance.git_commit(),
        "python": platform.python_version(), "host": socket.gethostname(),
        "renderer": {"build_flags": machine["build_flags"], "fast_kernel": machine["fast_kernel"]},
        "cpus": machine["cores"], "cuda_devices": [torch.cuda.get_device_name(i) for i in gpus],
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }  # fmt: skip
