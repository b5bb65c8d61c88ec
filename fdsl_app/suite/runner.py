"""Run a suite: what is not finished, one subprocess (``fdsl_app fit``) per run and device.

The suite's state is its run directories: a run with ``state.json`` finished and ``results.json`` is skipped, one
with a checkpoint resumes (``resume=auto``), the rest start. So a killed suite, rerun, continues where it stopped.
With N GPUs N runs go at once, each seeing one device (``CUDA_VISIBLE_DEVICES``); on the CPU one at a time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from fdsl_app.errors import RunFailure
from fdsl_app.suite.digits import write_digits
from fdsl_app.suite.spec import Run, Suite

RESULTS = "results.json"  # training/evaluation.py writes it; read here without importing Lightning


def run_status(run: Run) -> str:
    """``done`` (finished and tested), ``resume`` (has a checkpoint) or ``new``."""
    run_dir = run.cfg.run_dir
    state_file = run_dir / "state.json"
    state = json.loads(state_file.read_text()).get("state") if state_file.is_file() else None
    if state == "finished" and (run_dir / RESULTS).is_file():
        return "done"
    return "resume" if (run_dir / "checkpoints" / "last.ckpt").is_file() else "new"


def prepare_data(suite: Suite, runs: list[Run], say: Callable[[str], None]) -> None:
    """Write the datasets the suite prepares itself (the digits) where their data.root says, once."""
    for dataset in suite.datasets:
        if dataset.prepare is None:
            continue
        root = next(r.cfg.data.root for r in runs if r.dataset is dataset)
        if write_digits(Path(str(root))):
            say(f"{dataset.name}: wrote scikit-learn's digits to {root} (train/ and test/ class folders)")


def _command(run: Run) -> list[str]:
    return [sys.executable, "-m", "fdsl_app", "fit", "--config", str(run.recipe), *run.overrides]


def run_all(runs: list[Run], log_dir: Path, jobs: int, gpus: int, say: Callable[[str], None]) -> list[Run]:
    """Run every run not done, `jobs` at a time (each on its own GPU when `gpus` > 0); returns the failed ones.

    Each run's output goes to ``log_dir/<dataset>-<arm>-seed<k>.log`` (appended over reruns). On an interrupt the
    running fits get SIGTERM, so they stop with a checkpoint that the next invocation resumes from.
    """
    pending = [run for run in runs if run_status(run) != "done"]
    resumes = sum(run_status(run) == "resume" for run in pending)
    say(f"{len(runs)} runs: {len(runs) - len(pending)} finished, {len(pending)} to run ({resumes} resume)")
    log_dir.mkdir(parents=True, exist_ok=True)
    free = list(range(max(1, jobs)))
    active: dict[subprocess.Popen[bytes], tuple[Run, int]] = {}
    failed: list[Run] = []
    try:
        while pending or active:
            while pending and free:
                run, slot = pending.pop(0), free.pop(0)
                env = dict(os.environ)
                if gpus > 0:
                    env["CUDA_VISIBLE_DEVICES"] = str(slot % gpus)
                log_file = log_dir / f"{run.label.replace('/', '-')}.log"
                with open(log_file, "ab") as out:
                    process = subprocess.Popen(_command(run), stdout=out, stderr=subprocess.STDOUT, env=env)
                active[process] = (run, slot)
                say(f"{run.label}: {'resumes' if run_status(run) == 'resume' else 'starts'}"
                    f"{f' on GPU {slot % gpus}' if gpus > 0 else ''} (log {log_file})")  # fmt: skip
            time.sleep(0.2)
            for process in [p for p in active if p.poll() is not None]:
                run, slot = active.pop(process)
                free.append(slot)
                if process.returncode == 0 and run_status(run) == "done":
                    top1 = json.loads((run.cfg.run_dir / RESULTS).read_text())["test"]["top1"]
                    say(f"{run.label}: finished, test top-1 {100 * top1:.2f}%")
                else:
                    failed.append(run)
                    say(f"{run.label}: did not finish (exit status {process.returncode}); see its log")
    finally:
        for process in active:  # interrupted: the fits stop at a step with a checkpoint
            process.terminate()
        for process in active:
            process.wait()
    return failed


def check_failed(failed: list[Run], log_dir: Path) -> None:
    if failed:
        labels = ", ".join(r.label for r in failed)
        raise RunFailure(f"{len(failed)} run(s) did not finish: {labels}; their logs are in {log_dir}; rerun the suite "
                         "to resume them")  # fmt: skip
