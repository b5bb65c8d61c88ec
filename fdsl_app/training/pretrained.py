"""Where ``model.init_from`` points, and what the pre-training run it comes from normalised its images with.

``init_from`` is a checkpoint file or a run: tried under ``root`` first, then as given (relative to the working
directory); a run directory stands for its ``checkpoints/last.ckpt`` (the weights at the end of pre-training).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import yaml

from fdsl_app.config import RunCfg

log = logging.getLogger("fdsl_app")


def resolve_init_from(init_from: str | Path, root: str | Path) -> Path:
    """The checkpoint file `init_from` names: a file or a run directory, under `root` first, then as given.

    Raises:
        ValueError: neither names a checkpoint file nor a run directory with ``checkpoints/last.ckpt``.
    """
    given = Path(init_from).expanduser()
    candidates = [given] if given.is_absolute() else [Path(root) / given, given]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
        if (candidate / "checkpoints" / "last.ckpt").is_file():
            return candidate / "checkpoints" / "last.ckpt"
    tried = " and ".join(str(c) for c in candidates)
    raise ValueError(f"model.init_from={str(init_from)!r} names no checkpoint (tried {tried}): give a checkpoint file, "
                     f"or a run under root={root} that has checkpoints/last.ckpt")  # fmt: skip


def source_run(checkpoint: Path) -> Path | None:
    """The run directory a checkpoint was saved in (``<run>/checkpoints/<file>`` next to ``config.yaml``), if any."""
    run = checkpoint.parent.parent
    return run if checkpoint.parent.name == "checkpoints" and (run / "config.yaml").is_file() else None


def normalisation_report(cfg: RunCfg, checkpoint: Path | None) -> tuple[str, bool]:
    """The line stating the normalisation `cfg` uses and, for a fine-tune, the pre-training run's; and whether the
    two differ (a deliberate choice of the recipe, but one to state: the papers pre-train at 0.5 and fine-tune with
    ImageNet's statistics)."""
    augment = cfg.data.augment
    line = f"normalisation: mean {augment.mean}, std {augment.std}"
    run = source_run(checkpoint) if checkpoint is not None else None
    if run is None:
        return line, False
    saved = (yaml.safe_load((run / "config.yaml").read_text()) or {}).get("data", {}).get("augment", {})
    mean, std = saved.get("mean"), saved.get("std")
    if mean is None or std is None:
        return line, False
    differs = [float(v) for v in mean] != [float(v) for v in augment.mean] or [float(v) for v in std] != [
        float(v) for v in augment.std
    ]
    return f"{line}; pre-training run {run} used mean {mean}, std {std}", differs


def unfinished_warning(checkpoint: Path) -> str | None:
    """A warning when the checkpoint's run has not finished (its last.ckpt is then a mid-run state)."""
    run = source_run(checkpoint)
    state_file = run / "state.json" if run is not None else None
    if state_file is None or not state_file.is_file():
        return None
    state = json.loads(state_file.read_text())
    if state.get("state") == "finished":
        return None
    return (f"model.init_from: pre-training run {run} is {state.get('state')} at step {state.get('step')} of "
            f"{state.get('max_steps')}: fine-tuning from a mid-run state")  # fmt: skip
