"""The suite's results table from its runs' ``results.json``: test top-1 mean and sample standard deviation per
dataset and arm, the gap (pre-trained minus scratch) and the number of runs, as ``results.md`` and ``results.csv``;
``runs.csv`` lists every run's own figures."""

from __future__ import annotations

import csv
import io
import json
import statistics
from pathlib import Path

from fdsl_app.files import write_atomic
from fdsl_app.suite.spec import ARMS, Run
from fdsl_app.training.evaluation import RESULTS


def run_rows(runs: list[Run]) -> list[dict[str, object]]:
    """One row per run with a results.json: dataset, arm, seed, test top-1/top-5 and val top-1 (%), its folder."""
    rows = []
    for run in runs:
        path = run.cfg.run_dir / RESULTS
        if not path.is_file():
            continue
        record = json.loads(path.read_text())
        rows.append({"dataset": run.dataset.name, "arm": run.arm, "seed": run.seed,
                     "test_top1": 100 * record["test"]["top1"], "test_top5": 100 * record["test"]["top5"],
                     "val_top1": None if record.get("val_top1") is None else 100 * record["val_top1"],
                     "step": record.get("step"), "run_dir": str(run.cfg.run_dir)})  # fmt: skip
    return rows


def summarise(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """Per dataset and arm: runs, mean and sample std (None under two runs) of test top-1; the pre-trained row
    carries the gap to scratch (None unless both arms have runs)."""
    table = []
    for dataset in dict.fromkeys(str(r["dataset"]) for r in rows):
        means = {}
        for arm in ARMS:
            values = [float(r["test_top1"]) for r in rows if r["dataset"] == dataset and r["arm"] == arm]  # type: ignore[arg-type]
            if not values:
                continue
            means[arm] = statistics.fmean(values)
            std = statistics.stdev(values) if len(values) > 1 else None
            table.append({"dataset": dataset, "arm": arm, "runs": len(values), "top1_mean": means[arm], "top1_std": std,
                          "gap": None})  # fmt: skip
        if len(means) == 2:
            next(r for r in table if r["dataset"] == dataset and r["arm"] == "pretrained")["gap"] = (
                means["pretrained"] - means["scratch"]
            )
    return table


def _cell(mean: float, std: float | None) -> str:
    return f"{mean:.2f} ± {std:.2f}" if std is not None else f"{mean:.2f}"


def markdown(table: list[dict[str, object]], title: str) -> str:
    """The table a paper reports: one line per dataset, both arms, the gap and the runs behind each figure."""
    lines = [f"# {title}", "", "Test top-1 (%), mean ± sample std over seeds; gap = pre-trained − scratch.", "",
             "| dataset | pre-trained | scratch | gap | runs (pre-trained + scratch) |",
             "|---|---|---|---|---|"]  # fmt: skip
    for dataset in dict.fromkeys(str(r["dataset"]) for r in table):
        arms = {r["arm"]: r for r in table if r["dataset"] == dataset}
        cells = [_cell(arms[a]["top1_mean"], arms[a]["top1_std"]) if a in arms else "–" for a in ARMS]  # type: ignore[arg-type]
        gap = arms.get("pretrained", {}).get("gap")
        counts = " + ".join(str(arms[a]["runs"]) if a in arms else "0" for a in ARMS)
        lines.append(f"| {dataset} | {cells[0]} | {cells[1]} | {'–' if gap is None else f'{gap:+.2f}'} | {counts} |")
    return "\n".join(lines) + "\n"


def _csv(rows: list[dict[str, object]], fields: list[str]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
    return out.getvalue()


def write_tables(suite_dir: Path, runs: list[Run], title: str) -> str:
    """Write results.md, results.csv and runs.csv under `suite_dir`; returns the markdown."""
    rows = run_rows(runs)
    table = summarise(rows)
    text = markdown(table, title)
    suite_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(suite_dir / "results.md", text)
    write_atomic(suite_dir / "results.csv", _csv(table, ["dataset", "arm", "runs", "top1_mean", "top1_std", "gap"]))
    write_atomic(suite_dir / "runs.csv", _csv(rows, ["dataset", "arm", "seed", "test_top1", "test_top5", "val_top1",
                                                     "step", "run_dir"]))  # fmt: skip
    return text
