"""`fdsl_app bench gpu`: its logic end to end at tiny sizes on the CPU (the device draw, training fed by the default
path against a fixed batch, a DDP run stopped and resumed), and its refusal without a GPU."""

from __future__ import annotations

import os
import re

import pytest
import torch

from fdsl_app import cli

WORLD = ("LOCAL_RANK", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: the refusal does not apply")
def test_without_a_gpu_it_says_how_to_run(capsys):
    assert cli.main(["bench", "gpu"]) == 2
    assert "torch sees no CUDA GPU here" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")
def test_the_dry_run_measures_every_figure_on_the_cpu(capsys):
    before = dict(os.environ)
    assert cli.main(["bench", "gpu", "--dry-run", "--device", "cpu"]) == 0
    # Its in-process DDP runs leave no world behind: a later fit here or in a child would take itself for a rank.
    assert {k: os.environ.get(k) for k in WORLD} == {k: before.get(k) for k in WORLD}
    out = capsys.readouterr().out
    for figure in (r"1\. device draw, 1p-frac .*: [\d,]+ img/s", r"device draw, FractalDB .*: [\d,]+ img/s",
                   r"2\. torch chaos game.*: [\d,]+ img/s", r"3\. DeviceAugment .*: [\d.]+ ms per batch",
                   r"4\. .* training: [\d,]+ img/s from a fixed batch, [\d,]+ img/s fed by the default path \([\d.]+ %",
                   r"5\. DDP \(gloo\), stopped half-way and resumed: losses equal over \d+ steps"):  # fmt: skip
        assert re.search(figure, out), figure
