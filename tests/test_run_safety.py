"""Nothing lost, nothing disguised: one owner per run directory, unreadable checkpoints named with what to do, and
the records a kill -9 would otherwise lose (metrics rows, partial files)."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_train import TINY, losses, tiny_cfg

from fdsl_app import cli
from fdsl_app.training import run_lock
from fdsl_app.training.fit import fit

pytestmark = [
    pytest.mark.filterwarnings("ignore::lightning.fabric.utilities.warnings.PossibleUserWarning"),
    pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning"),
]


def _fit_cli(tmp_path: Path, *extra: str) -> list[str]:
    return ["fit", "--config", "quickstart", *TINY, f"root={tmp_path}", *extra]


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def _write_lock(run_dir: Path, **fields) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    record = {"host": "elsewhere", "pid": 1, "pid_started": None, "job": None, "since": "2026-01-01T00:00:00"}
    (run_dir / "lock.json").write_text(json.dumps(record | fields))


# -- the lock -------------------------------------------------------------------------------------------------------


def test_a_run_held_by_a_live_process_is_refused_naming_the_holder(tmp_path, capsys):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        me = run_lock.this_process()
        _write_lock(tmp_path / "r", host=me.host, pid=holder.pid, pid_started=run_lock._process_start(holder.pid),
                    job="slurm:4242")  # fmt: skip
        assert cli.main(_fit_cli(tmp_path, "name=r", "trainer.max_steps=1")) == 2
        err = _one_line_error(capsys)
        assert f"is in use by PID {holder.pid} on {me.host}, slurm job 4242, since 2026-01-01T00:00:00" in err
        assert "delete " in err and "lock.json" in err
        assert cli.main([*_fit_cli(tmp_path, "name=r"), "--check"]) == 0
        assert f"in use by PID {holder.pid}" in capsys.readouterr().out
        assert not (tmp_path / "r" / "config.yaml").exists()  # nothing written into the held directory
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_of_a_dead_process_is_taken_over_and_said_so(tmp_path, capsys):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    _write_lock(tmp_path / "r", host=run_lock.this_process().host, pid=gone.pid, pid_started="1")
    assert cli.main(_fit_cli(tmp_path, "name=r", "trainer.max_steps=1")) == 0
    out = capsys.readouterr().out
    assert f"took over the lock of PID {gone.pid}" in out and "its process is gone" in out
    assert not (tmp_path / "r" / "lock.json").exists()  # given back at the end


@pytest.mark.parametrize("text", ["", "{not json", '{"host": "h"}'], ids=["empty", "truncated", "no-pid"])
def test_an_unreadable_lock_file_is_taken_over_and_said_so(tmp_path, capsys, text):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "lock.json").write_text(text)  # a kill while it was written
    assert cli.main(_fit_cli(tmp_path, "name=r", "trainer.max_steps=1")) == 0
    assert "took over the lock of an unknown holder: its lock file is unreadable" in capsys.readouterr().out
    assert not (tmp_path / "r" / "lock.json").exists()


def test_a_lock_of_an_earlier_run_of_this_job_is_taken_over(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "777")  # a requeued job runs again under its id, maybe on another node
    _write_lock(tmp_path / "r", job="slurm:777")
    lock = run_lock.status(tmp_path / "r")
    assert lock.line.endswith("(it is an earlier run of this job, which was requeued)") and not lock.refuses
    monkeypatch.setenv("SLURM_JOB_ID", "778")
    monkeypatch.setenv("PATH", str(tmp_path / "no-scheduler-here"))  # squeue cannot be asked: no judgement
    lock = run_lock.status(tmp_path / "r")
    assert lock.line.startswith("in use by PID 1 on elsewhere, slurm job 777") and lock.refuses


def test_two_fits_on_one_run_the_second_refuses_and_a_kill_leaves_a_lock_the_next_takes_over(tmp_path, capsys):
    command = [sys.executable, "-m", "fdsl_app", *_fit_cli(tmp_path, "name=r", "trainer.max_steps=100000",
                                                         "trainer.checkpoint_every_n_steps=2")]  # fmt: skip
    # cwd: not the checkout, whose fdsl_app/ (without the built renderer) would shadow the installed package
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    try:
        last = tmp_path / "r" / "checkpoints" / "last.ckpt"
        deadline = time.monotonic() + 120
        while not last.is_file() and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.2)
        assert last.is_file(), "the first fit wrote no checkpoint"
        assert cli.main(_fit_cli(tmp_path, "name=r", "trainer.max_steps=100000", "resume=auto")) == 2
        assert f"is in use by PID {first.pid}" in _one_line_error(capsys)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert (tmp_path / "r" / "lock.json").is_file()  # a kill -9 gives nothing back
    assert cli.main(_fit_cli(tmp_path, "name=r", "trainer.max_steps=4", "trainer.max_epochs=1", "resume=auto")) == 0
    assert f"took over the lock of PID {first.pid}" in capsys.readouterr().out


# -- checkpoints ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished 4-step run with last.ckpt at step 4 and a copy of its step-2 checkpoint."""
    root = tmp_path_factory.mktemp("trained")
    fit(tiny_cfg(root, "name=r", "trainer.max_steps=4", "trainer.stop_at_step=2"))
    subprocess.run(["cp", str(root / "r" / "checkpoints" / "last.ckpt"), str(root / "step2.ckpt")], check=True)
    fit(tiny_cfg(root, "name=r", "trainer.max_steps=4", "resume=auto"))
    return root


def _copy_run(trained: Path, tmp_path: Path) -> Path:
    subprocess.run(["cp", "-r", str(trained / "r"), str(tmp_path / "r")], check=True)
    return tmp_path / "r" / "checkpoints"


def _damage(path: Path, how: str) -> None:
    if how == "empty":
        path.write_bytes(b"")
    elif how == "text":
        path.write_text("not a checkpoint\n")
    else:  # truncated: the zip directory at the end is gone
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGE = [("empty", "the file is empty"), ("text", "not a file torch.save wrote"),
          ("truncated", r"truncated, or damaged \(PytorchStreamReader failed")]  # fmt: skip


@pytest.mark.parametrize(("how", "message"), DAMAGE, ids=[d[0] for d in DAMAGE])
def test_an_unreadable_last_checkpoint_alone_is_refused_by_check_and_fit(trained, tmp_path, capsys, how, message):
    checkpoints = _copy_run(trained, tmp_path)
    for other in checkpoints.glob("best-*.ckpt"):
        other.unlink()
    _damage(checkpoints / "last.ckpt", how)
    for check in (["--check"], []):
        assert cli.main([*_fit_cli(tmp_path, "name=r", "trainer.max_steps=6", "resume=auto"), *check]) == 2
        err = _one_line_error(capsys)
        assert f"resume=auto: no checkpoint of {tmp_path / 'r'} can be read" in err
        assert re.search(message, err) and "delete them to start the run again from step 0" in err
    assert json.loads((tmp_path / "r" / "state.json").read_text())["state"] == "finished"  # not rewritten


@pytest.mark.filterwarnings("ignore:The dirpath has changed:UserWarning")  # the run was copied to another root
def test_resume_auto_falls_back_to_the_newest_readable_checkpoint_and_says_so(trained, tmp_path, capsys):
    checkpoints = _copy_run(trained, tmp_path)
    for other in checkpoints.glob("best-*.ckpt"):
        other.unlink()
    subprocess.run(["cp", str(trained / "step2.ckpt"), str(checkpoints / "older-step=2.ckpt")], check=True)
    _damage(checkpoints / "last.ckpt", "truncated")
    assert cli.main([*_fit_cli(tmp_path, "name=r", "trainer.max_steps=4", "resume=auto"), "--check"]) == 0
    assert "resumes from" in (out := capsys.readouterr().out) and "older-step=2.ckpt, as last.ckpt is unreadable" in out
    assert cli.main(_fit_cli(tmp_path, "name=r", "trainer.max_steps=4", "resume=auto")) == 0
    out = capsys.readouterr().out
    assert "last.ckpt is unreadable" in out and "resuming from" in out and "older-step=2.ckpt" in out
    np.testing.assert_allclose(losses(tmp_path / "r"), losses(trained / "r"), rtol=1e-5)  # steps 3, 4 redone alike


def test_a_run_with_records_but_no_checkpoint_says_it_starts_again(trained, tmp_path, capsys):
    checkpoints = _copy_run(trained, tmp_path)  # as a kill during the first checkpoint's write leaves it
    for path in checkpoints.iterdir():
        path.unlink()
    assert cli.main(_fit_cli(tmp_path, "name=r", "trainer.max_steps=2", "resume=auto")) == 0
    assert "has records of an earlier session but no checkpoint" in capsys.readouterr().out


@pytest.mark.parametrize(("stop", "source"), [(10, "last"), (16, "last"), (10, "best")],
                         ids=["last-mid-epoch", "last-at-epoch-end", "best"])  # fmt: skip
def test_a_resume_keeps_the_step_of_every_row_of_an_uninterrupted_run(tmp_path, caplog, stop, source):
    # Lightning's count of the loggers' step is restored one short from either checkpoint; it adds the one back itself
    # for last.ckpt (saved at a batch's end), not for the best one (saved by the validation that ends a stopped
    # session). An epoch is 16 steps.
    straight = fit(tiny_cfg(tmp_path, "name=straight", "trainer.max_steps=20"))
    fit(tiny_cfg(tmp_path, "name=r", "trainer.max_steps=20", f"trainer.stop_at_step={stop}"))
    checkpoints = tmp_path / "r" / "checkpoints"
    if source == "best":
        assert [p.name for p in checkpoints.glob("best-*.ckpt")] == ["best-epoch=000-step=00000010.ckpt"]
        (checkpoints / "last.ckpt").unlink()
    resumed = fit(tiny_cfg(tmp_path, "name=r", "trainer.max_steps=20", "resume=auto"))
    if source == "best":
        assert "there is no" in caplog.text and "best-epoch=000-step=00000010.ckpt, the newest readable" in caplog.text
    with open(straight.run_dir / "metrics.csv") as a, open(resumed.run_dir / "metrics.csv") as b:
        rows = [[(r["step"], float(r["train/loss_step"])) for r in csv.DictReader(f) if r.get("train/loss_step")]
                for f in (a, b)]  # fmt: skip
    assert [s for s, _ in rows[1]] == [s for s, _ in rows[0]] == [str(i) for i in range(20)]
    np.testing.assert_allclose([v for _, v in rows[1]], [v for _, v in rows[0]], rtol=1e-5)


@pytest.mark.parametrize("verb", ["fit", "validate"])
def test_a_given_unreadable_checkpoint_names_the_runs_readable_one(trained, tmp_path, capsys, verb):
    checkpoints = _copy_run(trained, tmp_path)
    bad = checkpoints / "copy.ckpt"
    bad.write_text("garbage")
    if verb == "fit":
        args = _fit_cli(tmp_path, "name=other", "trainer.max_steps=6", f"resume={bad}")
    else:
        args = ["validate", "--config", "quickstart", *TINY, f"root={tmp_path}", "name=ev", "--ckpt", str(bad)]
    assert cli.main(args) == 2
    err = _one_line_error(capsys)
    assert f"checkpoint {bad} is unreadable: not a file torch.save wrote" in err
    if verb == "fit":
        assert f"use {checkpoints / 'last.ckpt'}, the run's newest readable checkpoint" in err


@pytest.mark.parametrize("verb", ["fit", "validate"])
def test_a_checkpoint_of_another_model_is_one_line(trained, tmp_path, capsys, verb):
    theirs = trained / "r" / "checkpoints" / "last.ckpt"
    if verb == "fit":
        args = _fit_cli(tmp_path, "name=other", "data.settings.classes=10", "trainer.max_steps=6", f"resume={theirs}")
    else:
        args = ["validate", "--config", "quickstart", *TINY, "data.settings.classes=10", f"root={tmp_path}",
                "name=ev", "--ckpt", str(theirs)]  # fmt: skip
    assert cli.main(args) == 2
    err = _one_line_error(capsys)
    assert "is a checkpoint of another model: 2 tensors differ in shape (e.g. net.head.weight: (8, 64) in the " \
           "file, (10, 64) here)" in err  # fmt: skip


# -- what a kill -9 leaves ------------------------------------------------------------------------------------------

KILL_AFTER_CHECKPOINT = """
import os, signal, sys
from fdsl_app import cli
from fdsl_app.training.callbacks import LastCheckpoint

save = LastCheckpoint.save
def save_then_die(self, trainer):
    save(self, trainer)
    if trainer.global_step == int(os.environ["KILL_AT"]):
        os.kill(os.getpid(), signal.SIGKILL)  # right after the checkpoint, before Lightning logs the step's row
LastCheckpoint.save = save_then_die
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_a_kill_right_after_a_checkpoint_loses_no_metrics_row(tmp_path):
    straight = fit(tiny_cfg(tmp_path, "name=straight", "trainer.max_steps=8"))
    args = _fit_cli(tmp_path, "name=killed", "trainer.max_steps=8", "trainer.checkpoint_every_n_steps=3")
    died = subprocess.run([sys.executable, "-c", KILL_AFTER_CHECKPOINT, *args], env=os.environ | {"KILL_AT": "6"},
                          capture_output=True, text=True, cwd=tmp_path)  # fmt: skip
    assert died.returncode == -signal.SIGKILL, died.stderr[-2000:]
    assert len(losses(tmp_path / "killed")) < 6  # the rows of the last steps were not yet on disk
    (tmp_path / "killed" / "checkpoints" / "last.ckpt.tmp999999").write_bytes(b"partial")  # a kill mid-write
    resumed = fit(tiny_cfg(tmp_path, "name=killed", "trainer.max_steps=8", "trainer.checkpoint_every_n_steps=3",
                           "resume=auto"))  # fmt: skip
    np.testing.assert_allclose(losses(resumed.run_dir), losses(straight.run_dir), rtol=1e-5)
    assert len(losses(resumed.run_dir)) == 8
    assert not list((tmp_path / "killed").rglob("*.tmp*"))
