"""`fdsl_app suite` end to end on the CPU suite (scikit-learn's digits) at a tiny size: a pre-training run, then the
suite killed after its first run and started again; the table against the runs' own results.json; the checkpoint
chosen on validation."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fdsl_app.config import QUICKSTART, load_config
from fdsl_app.suite.spec import find_suite, load_suite
from fdsl_app.training.fit import fit

pytestmark = pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")  # Lightning's, with this torch
TINY = ["trainer.limit_train_batches=3", "trainer.max_epochs=2", "trainer.limit_val_batches=2", "data.batch_size=32",
        "trainer.log_every_n_steps=1"]  # fmt: skip
SUITE = """name: tiny
recipe: finetune_digits
seeds: [0, 1]
datasets:
  digits:
    prepare: sklearn_digits
    overrides: [data.root=data/digits]
"""


def _suite(cwd: Path, **kwargs):  # noqa: ANN202
    command = [sys.executable, "-m", "fdsl_app", "suite", "--config", "tiny.yaml", "--init-from", "pre", *TINY]
    return subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


@pytest.fixture(scope="module")
def suite_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    cwd = tmp_path_factory.mktemp("suite")
    fit(load_config(QUICKSTART, [
        f"root={cwd / 'runs'}", "name=pre", "trainer.max_steps=3", "data.samples_per_epoch=64", "data.num_workers=0",
        "data.settings.n_points=500", "trainer.enable_progress_bar=false", "log.sample_grid=false",
        "trainer.log_every_n_steps=1",
    ]))  # fmt: skip
    (cwd / "tiny.yaml").write_text(SUITE)
    first = _suite(cwd)
    seen = []
    assert first.stdout is not None
    for line in first.stdout:  # kill the suite as its second run starts
        seen.append(line)
        if "digits/scratch-seed0: starts" in line:
            first.send_signal(signal.SIGINT)
            break
    first.communicate(timeout=300)
    finished = cwd / "runs" / "tiny" / "digits" / "pretrained-seed0" / "results.json"
    stamp = finished.stat().st_mtime_ns
    second = _suite(cwd)
    out, _ = second.communicate(timeout=1800)
    return {"cwd": cwd, "first": "".join(seen), "second": out, "code": second.returncode, "stamp": stamp,
            "finished": finished}  # fmt: skip


@pytest.mark.slow
def test_suite_resumes_and_skips_finished_runs(suite_run: dict[str, object]) -> None:
    out = str(suite_run["second"])
    assert suite_run["code"] == 0, out
    assert "digits/pretrained-seed0: finished" in str(suite_run["first"])
    assert "4 runs: 1 finished, 3 to run" in out and "digits/pretrained-seed0: starts" not in out
    assert Path(str(suite_run["finished"])).stat().st_mtime_ns == suite_run["stamp"]  # not rerun
    suite_dir = Path(str(suite_run["cwd"])) / "runs" / "tiny"
    assert (suite_dir / "logs" / "digits-pretrained-seed0.log").read_text().count("run directory:") == 1
    assert "| digits |" in (suite_dir / "results.md").read_text() and "| digits |" in out


@pytest.mark.slow
def test_table_matches_the_runs_results(suite_run: dict[str, object]) -> None:
    suite_dir = Path(str(suite_run["cwd"])) / "runs" / "tiny"
    def top1_of(arm: str, seed: int) -> float:  # straight from the run's own record
        record = json.loads((suite_dir / "digits" / f"{arm}-seed{seed}" / "results.json").read_text())
        return 100 * record["test"]["top1"]

    top1 = {arm: [top1_of(arm, s) for s in (0, 1)] for arm in ("pretrained", "scratch")}
    with open(suite_dir / "results.csv", newline="") as f:
        rows = {row["arm"]: row for row in csv.DictReader(f)}
    for arm, values in top1.items():
        assert int(rows[arm]["runs"]) == 2
        assert float(rows[arm]["top1_mean"]) == pytest.approx(np.mean(values))
        assert float(rows[arm]["top1_std"]) == pytest.approx(np.std(values, ddof=1))
    assert float(rows["pretrained"]["gap"]) == pytest.approx(np.mean(top1["pretrained"]) - np.mean(top1["scratch"]))
    assert rows["scratch"]["gap"] == ""


@pytest.mark.slow
def test_best_checkpoint_is_chosen_on_validation_and_tested_once(suite_run: dict[str, object]) -> None:
    run = Path(str(suite_run["cwd"])) / "runs" / "tiny" / "digits" / "scratch-seed1"
    record = json.loads((run / "results.json").read_text())
    with open(run / "metrics.csv", newline="") as f:
        val = [(int(r["epoch"]), float(r["val/top1"])) for r in csv.DictReader(f) if r.get("val/top1")]
    assert len(val) == 2  # one validation an epoch
    best_epoch, best = max(val, key=lambda row: row[1])  # the first of equal scores, as ModelCheckpoint keeps it
    assert record["selected_by"] == "best val/top1" and record["val_top1"] == pytest.approx(best)
    assert f"best-epoch={best_epoch:03d}-" in record["checkpoint"]
    images = record["data"]["images"]
    assert record["data"]["splits"] == {"test": "test", "val": "carved"} and images["test"] == 359
    assert images["train"] + images["val"] == 1438  # the 1,797 digits less the test fifth
    confusion = np.array(record["confusion_matrix"])
    assert confusion.sum() == 359 and np.trace(confusion) / 359 == pytest.approx(record["test"]["top1"], abs=1e-6)
    assert record["normalisation"] == {"mean": [0.5] * 3, "std": [0.5] * 3}


def test_shipped_suites_load() -> None:
    for name in ("digits", "fdsl_finetune"):
        suite = load_suite(find_suite(name))
        assert suite.datasets and suite.seeds
    with pytest.raises(ValueError, match="no suite 'nope'"):
        find_suite("nope")
