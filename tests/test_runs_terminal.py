"""Issue 15, runs and terminal: `fdsl_app runs` and --compare, curves.png, several loggers at once, validate from a
run directory, plain progress lines without a TTY, no library noise, and Ctrl-C at a step boundary."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from test_train import TINY, tiny_cfg

from fdsl_app import cli
from fdsl_app.training.checkpoints import read_checkpoint
from fdsl_app.training.fit import fit
from fdsl_app.training.runs import RunRecord, curve_series, read_rows, write_run_curves

pytestmark = [
    pytest.mark.filterwarnings("ignore::lightning.fabric.utilities.warnings.PossibleUserWarning"),
    pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning"),
]

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# What the issue names as noise: Lightning's checkpoint message, the pytree deprecation, the litlogger/litmodels
# tips, W&B's anonymity warning, Lightning's srun hint.
NOISE = ("weights_only", "LeafSpec", "litlogger", "litmodels", "anonymous", "srun")


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> Path:
    """A finished run "a" (validated at its epoch's end, step 16) and a run "b" stopped by stop_at_step at 4."""
    root = tmp_path_factory.mktemp("runs")
    fit(tiny_cfg(root, "name=a", "trainer.max_steps=16"))
    fit(tiny_cfg(root, "name=b", "trainer.max_steps=16", "trainer.stop_at_step=4"))
    return root


def test_runs_lists_each_run_with_state_step_and_metrics(two_runs, capsys):
    assert cli.main(["runs", "--root", str(two_runs)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["run", "recipe", "state", "step"]
    a, b = (line.split() for line in lines[1:])
    assert a[0] == "a" and "finished" in a and "16/16" in a
    assert b[0] == "b" and "stopped" in b and "4/16" in b
    top1, step = RunRecord.read(two_runs / "a").last("val/top1")
    assert step == 16 and f"{top1:.4f}" in a
    assert cli.main(["runs", "b*", "--root", str(two_runs)]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]] == ["b"]


def test_runs_finds_a_suites_nested_runs_by_their_path(two_runs, tmp_path, capsys):
    root = tmp_path / "runs"
    shutil.copytree(two_runs / "a", root / "suite" / "digits" / "pretrained-seed0")
    shutil.copytree(two_runs / "b", root / "b")
    (root / "suite" / "logs").mkdir()  # a folder without runs
    assert cli.main(["runs", "--root", str(root)]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]
    assert listed == ["b", "suite/digits/pretrained-seed0"]
    assert cli.main(["runs", "suite/*", "--root", str(root)]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]] == ["suite/digits/pretrained-seed0"]
    assert cli.main(["runs", "--root", str(root), "--compare", "b", "suite/digits/pretrained-seed0"]) == 0


def test_compare_tabulates_runs_side_by_side_and_plots_their_curves(two_runs, tmp_path, capsys):
    plot = tmp_path / "ab.png"
    assert cli.main(["runs", "--root", str(two_runs), "--compare", "a", "b", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["run", "a", "b"]
    assert "16/16" in out and "4/16" in out and f"curves: {plot}" in out
    assert plot.read_bytes().startswith(PNG_MAGIC)
    assert cli.main(["runs", "--root", str(two_runs), "--compare", "a", "nope"]) == 2
    assert "no run 'nope'" in capsys.readouterr().err


def test_every_run_writes_its_curves_from_its_metrics(two_runs):
    for name in ("a", "b"):
        png = two_runs / name / "curves.png"
        assert png.read_bytes().startswith(PNG_MAGIC)
        series = curve_series(read_rows(two_runs / name / "metrics.csv"))
        drawn = write_run_curves(two_runs / name)
        assert drawn == {key: [name] for key in series}
    assert set(curve_series(read_rows(two_runs / "a" / "metrics.csv"))) == {"train/loss_step", "val/loss",
                                                                           "val/top1", "lr"}  # fmt: skip
    steps, _ = curve_series(read_rows(two_runs / "b" / "metrics.csv"))["train/loss_step"]
    assert steps == [1, 2, 3, 4]  # log_every_n_steps=1: a point per step, counted as state.json counts


def test_csv_and_tensorboard_at_once(tmp_path):
    fit(tiny_cfg(tmp_path, "name=tb", "trainer.max_steps=2", "log.backend=tensorboard"))
    run = tmp_path / "tb"
    assert len(read_rows(run / "metrics.csv")) >= 2
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))


def test_a_bad_logger_name_is_one_line():
    with pytest.raises(ValueError, match="log.backend must be one of .* got 'tensorbord'"):
        tiny_cfg(Path("unused"), "log.backend=wandb+tensorbord")


@pytest.mark.slow
def test_csv_wandb_and_tensorboard_at_once_without_the_anonymity_warning(tmp_path, capfd):
    fit(tiny_cfg(tmp_path, "name=all", "trainer.max_steps=2", "log.backend=wandb+tensorboard"))
    run = tmp_path / "all"
    assert read_rows(run / "metrics.csv") and list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert list((run / "wandb").glob("offline-run-*"))
    assert "anonymous" not in capfd.readouterr().err


def test_validate_a_run_directory_with_its_own_config_saves_the_results(two_runs, tmp_path, capsys):
    # No --config and no overrides: the run's config.yaml (the tiny model) is the config; the quick start's would
    # refuse the checkpoint.
    assert cli.main(["validate", "--ckpt", str(two_runs / "a")]) == 0
    out = capsys.readouterr().out
    assert "best-" in out and "config.yaml" in out
    saved = json.loads((two_runs / "a" / "validate.json").read_text())
    assert saved["checkpoint"].endswith(".ckpt") and "best-" in saved["checkpoint"]
    assert 0 <= saved["metrics"]["val/top1"] <= 1
    assert cli.main(["test", "--ckpt", str(two_runs / "b" / "checkpoints" / "last.ckpt")]) == 0
    assert "test/top1" in json.loads((two_runs / "b" / "test.json").read_text())["metrics"]


def _fit_command(tmp_path: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "fdsl_app", "fit", "--config", "quickstart", *TINY, f"root={tmp_path}", *extra]


def test_without_a_tty_a_plain_line_every_n_steps_and_no_library_noise(tmp_path):
    # The bar is enabled, but stdout is a pipe (a Slurm .out file): plain lines instead.
    done = subprocess.run(_fit_command(tmp_path, "name=plain", "trainer.max_steps=6", "trainer.log_every_n_steps=2",
                                       "trainer.enable_progress_bar=true"),
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    steps = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("step ") and "loss" in line]
    assert steps == ["2/6", "4/6", "6/6"]
    assert "\r" not in done.stdout
    assert not [word for word in NOISE if word in done.stderr], done.stderr
    assert "finished at step 6" in done.stdout


def _lines(stream, into: list[str]) -> threading.Thread:
    thread = threading.Thread(target=lambda: into.extend(iter(stream.readline, "")), daemon=True)
    thread.start()
    return thread


def _end(process: subprocess.Popen, readers: list[threading.Thread]) -> None:
    process.kill()
    process.wait()
    for reader in readers:
        reader.join(timeout=10)
    process.stdout.close()
    process.stderr.close()


def _wait_for(lines: list[str], text: str, process: subprocess.Popen, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while not any(text in line for line in lines):
        assert process.poll() is None and time.monotonic() < deadline, f"no {text!r} in {lines}"
        time.sleep(0.05)


def test_ctrl_c_checkpoints_at_a_step_boundary_and_says_how_to_resume(tmp_path):
    fit_run = subprocess.Popen(_fit_command(tmp_path, "name=int", "trainer.max_steps=100000",
                                            "trainer.checkpoint_every_n_steps=100000"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)  # fmt: skip
    out: list[str] = []
    readers = [_lines(fit_run.stdout, out), _lines(fit_run.stderr, [])]
    try:
        _wait_for(out, "step 3/", fit_run)
        fit_run.send_signal(signal.SIGINT)
        assert fit_run.wait(timeout=120) == 128 + signal.SIGINT
    finally:
        _end(fit_run, readers)
    state = json.loads((tmp_path / "int" / "state.json").read_text())
    assert state["state"] == "stopped" and state["reason"] == "Ctrl-C"
    assert f"stopped at step {state['step']} (Ctrl-C); resume with resume=auto\n" in out
    checkpoint = read_checkpoint(tmp_path / "int" / "checkpoints" / "last.ckpt")
    assert checkpoint["global_step"] == state["step"] >= 3  # saved at the step the run stopped at


def test_a_second_ctrl_c_exits_at_once(tmp_path):
    fit_run = subprocess.Popen(_fit_command(tmp_path, "name=int2", "trainer.max_steps=100000"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)  # fmt: skip
    out: list[str] = []
    err: list[str] = []
    readers = [_lines(fit_run.stdout, out), _lines(fit_run.stderr, err)]
    try:
        _wait_for(out, "step 2/", fit_run)
        fit_run.send_signal(signal.SIGINT)
        _wait_for(err, "Ctrl-C: stopping at the next step", fit_run)
        fit_run.send_signal(signal.SIGINT)
        assert fit_run.wait(timeout=30) == 128 + signal.SIGINT
    finally:
        _end(fit_run, readers)
    assert any("second Ctrl-C: exiting now" in line for line in err)
    assert not any(line.startswith("run directory:") for line in out)  # no summary: it exited at once
