"""What ``fdsl_app fit --check`` verifies, in a second or two and before a job's ranks start: everything a fit would
otherwise refuse only after start-up, each in one line that says what to fix.

The config itself is checked at load (:func:`fdsl_app.config.load_config`); :func:`check_run` adds fit's own
preflight (accelerator, strategy, family settings and parameter file, the network's name on the meta device) and the
files a fit reads later (the checkpoint to fine-tune from, the real data folder).
"""

from __future__ import annotations

from fdsl_app.config import RunCfg
from fdsl_app.data.real import REAL_DATAMODULES
from fdsl_app.training.fit import preflight


def check_run(cfg: RunCfg) -> None:
    """Raise the first reason a fit of `cfg` would fail after start-up (ValueError, one line), else return.

    Fit's preflight also finds the checkpoint ``model.init_from`` names (a file or a run, under ``root`` first:
    :func:`~fdsl_app.training.pretrained.resolve_init_from`); its contents are read, and checked, by the fit."""
    preflight(cfg)
    check_data(cfg)


def check_data(cfg: RunCfg) -> None:
    """A real data source's folder holds its dataset: the DataModule checks the layout when it is made, reading no
    image (:class:`~fdsl_app.data.real.DatasetNotFoundError` says where to put it)."""
    data = cfg.data
    if data.source != "family":
        REAL_DATAMODULES[data.source](data.root, image_size=data.image_size, augment=data.augment)
