"""What ``fdsl_app fit --check`` verifies, in a second or two and before a job's ranks start: everything a fit would
otherwise refuse only after start-up, each in one line that says what to fix.

The config itself is checked at load (:func:`fdsl_app.config.load_config`); :func:`check_run` adds fit's own
preflight (accelerator, strategy, family settings and parameter file, the network's name on the meta device) and the
files a fit reads later (the checkpoint to fine-tune from, the real data folder).
"""

from __future__ import annotations

from pathlib import Path

from fdsl_app.config import RunCfg
from fdsl_app.data.real import REAL_DATAMODULES
from fdsl_app.training.fit import preflight


def check_run(cfg: RunCfg) -> None:
    """Raise the first reason a fit of `cfg` would fail after start-up (ValueError, one line), else return."""
    preflight(cfg)
    check_init_from(cfg)
    check_data(cfg)


def check_init_from(cfg: RunCfg) -> None:
    """The checkpoint ``model.init_from`` names exists (its contents are read, and checked, by the fit)."""
    init_from = cfg.model.init_from
    if init_from is not None and not Path(init_from).expanduser().is_file():
        raise ValueError(f"model.init_from={init_from}: no such file; give a checkpoint (e.g. runs/NAME/checkpoints/"
                         "last.ckpt), or model.init_from=null to train from scratch")  # fmt: skip


def check_data(cfg: RunCfg) -> None:
    """A real data source's folder holds its dataset: the DataModule checks the layout when it is made, reading no
    image (:class:`~fdsl_app.data.real.DatasetNotFoundError` says where to put it)."""
    data = cfg.data
    if data.source != "family":
        REAL_DATAMODULES[data.source](data.root, image_size=data.image_size, augment=data.augment)
