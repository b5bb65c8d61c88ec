"""Reading a run's checkpoints safely: every path that loads one (resume, ``fit --check``, validate/test) reads it
here first, so that an unreadable file is named with what to do, never a loader's traceback.

A checkpoint is read with ``weights_only=True`` (no code runs) and ``mmap=True`` (tensors are mapped, not copied:
verifying a large checkpoint costs little). ``resume=auto`` takes the newest readable checkpoint of the run
directory, ``last.ckpt`` first, and says when it had to fall back.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger("fdsl_app")


class UnreadableCheckpoint(ValueError):
    """A checkpoint file that cannot be read, or is not a Lightning checkpoint."""


def read_checkpoint(path: Path) -> Mapping[str, Any]:
    """The checkpoint in `path`, its tensors memory-mapped.

    Raises:
        UnreadableCheckpoint: no such file, an empty, truncated or foreign file, or no Lightning checkpoint.
    """
    if not path.is_file():
        raise UnreadableCheckpoint(f"checkpoint {path} does not exist")
    if path.stat().st_size == 0:
        raise UnreadableCheckpoint(f"checkpoint {path} is unreadable: the file is empty (a kill while it was written?)")
    with open(path, "rb") as f:
        zipped = f.read(4) == b"PK\x03\x04"  # torch.save's format since 1.6; mmap needs it
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True, mmap=zipped)
    except Exception as err:  # the zip reader and the weights-only unpickler fail on bad bytes with many error types
        detail = " ".join(str(err).split()).split(". ")[0][:160] or type(err).__name__
        what = f"truncated, or damaged ({detail})" if zipped else "not a file torch.save wrote"
        raise UnreadableCheckpoint(f"checkpoint {path} is unreadable: {what}") from None
    if not isinstance(stored, Mapping) or not isinstance(stored.get("state_dict"), Mapping):
        raise UnreadableCheckpoint(f"{path} is not a Lightning checkpoint: it holds no state_dict")
    return stored


def checkpoint_step(stored: Mapping[str, Any]) -> int:
    return int(stored.get("global_step", 0))


def newest_readable(checkpoint_dir: Path) -> tuple[Path | None, list[str]]:
    """The checkpoint to resume `checkpoint_dir`'s run from: ``last.ckpt`` if it can be read (it is taken at a step
    boundary, for an exact resume), else the readable one with the highest stored step; and why each file passed
    over on the way could not be read."""
    unreadable: list[str] = []
    last = checkpoint_dir / "last.ckpt"
    if last.is_file():
        try:
            read_checkpoint(last)
            return last, unreadable
        except UnreadableCheckpoint as err:
            unreadable.append(str(err))
    best: tuple[int, Path] | None = None
    for path in sorted(p for p in checkpoint_dir.glob("*.ckpt") if p != last):
        try:
            step = checkpoint_step(read_checkpoint(path))
        except UnreadableCheckpoint as err:
            unreadable.append(str(err))
            continue
        if best is None or step > best[0]:
            best = (step, path)
    return (best[1] if best else None), unreadable


def resume_point(run_dir: Path, resume: str | None, *, announce: bool = True) -> Path | None:
    """The checkpoint a fit of `run_dir` resumes from (None: it starts at step 0), every candidate verified.

    `resume`: None (a fresh run), ``auto`` (the newest readable checkpoint of the run, if any) or a path.
    `announce`: log a fall back from an unreadable ``last.ckpt``, or a restart from step 0 of a run that has
    records but no checkpoint.

    Raises:
        UnreadableCheckpoint: a given checkpoint cannot be read, or none of the run's checkpoints can.
    """
    checkpoint_dir = run_dir / "checkpoints"
    if resume is None:
        return None
    if resume != "auto":
        path = Path(resume)
        try:
            read_checkpoint(path)
        except UnreadableCheckpoint as err:
            raise UnreadableCheckpoint(f"{err}; {_alternative(path.parent, path)}") from None
        return path
    found, unreadable = newest_readable(checkpoint_dir)
    if found is None and unreadable:
        raise UnreadableCheckpoint(
            f"resume=auto: no checkpoint of {run_dir} can be read ({'; '.join(unreadable)}); delete them to start "
            "the run again from step 0, or pass resume=<a checkpoint> from elsewhere"
        )
    if announce and found is not None and found.name != "last.ckpt":
        why = unreadable[0] if unreadable else f"there is no {checkpoint_dir / 'last.ckpt'}"
        log.warning(f"resume=auto: {why}; resuming from {found}, the newest readable checkpoint")
    if announce and found is None and _has_records(run_dir):
        log.warning(f"resume=auto: {run_dir} has records of an earlier session but no checkpoint (it stopped "
                    "before its first one was written): the run starts again from step 0")  # fmt: skip
    return found


def _alternative(checkpoint_dir: Path, bad: Path) -> str:
    """What to do instead of reading `bad`: another readable checkpoint of the run, if there is one."""
    found, _ = newest_readable(checkpoint_dir) if checkpoint_dir.is_dir() else (None, [])
    if found is not None and found.resolve() != bad.resolve():
        return f"delete it, or use {found}, the run's newest readable checkpoint"
    return "delete it, or give another checkpoint"


def _has_records(run_dir: Path) -> bool:
    metrics = run_dir / "metrics.csv"
    return (run_dir / "state.json").is_file() or (metrics.is_file() and len(metrics.read_text().splitlines()) > 1)


def check_fits(checkpoint: Mapping[str, Any], path: Path, module: torch.nn.Module) -> None:
    """Refuse `checkpoint` (read from `path`) if its weights do not fit `module` (another model, another number of
    classes), in one line instead of one line per tensor.

    Raises:
        ValueError: tensors missing or of other shapes.
    """
    # The network's tensors only: the EMA's are reconciled on load (ClassifierModule.on_load_checkpoint).
    stored = {k: v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")}
    own = {k: v for k, v in module.state_dict().items() if k.startswith("net.")}
    missing = [k for k in own if k not in stored]
    unexpected = [k for k in stored if k not in own]
    shapes = [k for k in own if k in stored and tuple(stored[k].shape) != tuple(own[k].shape)]
    if not (missing or unexpected or shapes):
        return
    parts = [f"{len(shapes)} tensors differ in shape" if shapes else "",
             f"{len(missing)} of the model's are missing" if missing else "",
             f"{len(unexpected)} are not in the model" if unexpected else ""]  # fmt: skip
    example = (f" (e.g. {shapes[0]}: {tuple(stored[shapes[0]].shape)} in the file, {tuple(own[shapes[0]].shape)} "
               "here)" if shapes else f" (e.g. {(missing or unexpected)[0]})")  # fmt: skip
    raise ValueError(f"{path} is a checkpoint of another model: {', '.join(p for p in parts if p)}{example}; use "
                     "the config that wrote it (its run's config.yaml), or fine-tune from it with "
                     "model.init_from=<it>")  # fmt: skip
