"""Reading run directories back: what a run is, how far it got, its metrics with their steps, and its curves.

Everything here reads the files a fit leaves (``config.yaml``, ``state.json``, ``metrics.csv``) and imports no
Lightning, so ``fdsl_app runs`` answers at once. :func:`write_curves` draws ``curves.png`` at the end of every fit
and the comparison plot of ``fdsl_app runs --compare``.
"""

from __future__ import annotations

import csv
import dataclasses
import fnmatch
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fdsl_app.training import run_lock

#: The curves drawn, one panel each, in this order: (metrics.csv column, panel title).
CURVES = (("train/loss_step", "train loss"), ("val/loss", "val loss"), ("val/top1", "val top-1"), ("lr", "lr"))
#: The metrics a summary reports, with the step of their last value.
SUMMARY_METRICS = ("train/loss_step", "val/loss", "val/top1", "val/top5")

Series = tuple[list[int], list[float]]


def _step(row: dict[str, str]) -> int:
    """The optimiser steps done when `row` was logged: Lightning numbers metrics.csv's rows from 0 (the first
    step's row has step 0), while state.json, the checkpoints and the log count steps done."""
    return int(row["step"]) + 1


def read_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def curve_series(rows: list[dict[str, str]]) -> dict[str, Series]:
    """(steps, values) of each of :data:`CURVES` that `rows` (metrics.csv) hold a value of."""
    series: dict[str, Series] = {}
    for key, _ in CURVES:
        points = [(_step(r), float(r[key])) for r in rows if r.get(key) and r.get("step")]
        if points:
            series[key] = ([s for s, _ in points], [v for _, v in points])
    return series


@dataclass
class RunRecord:
    """One run directory as its files describe it."""

    path: Path
    config: dict[str, Any]
    state: dict[str, Any]
    rows: list[dict[str, str]] = field(repr=False)
    label: str = ""  # its name under the runs folder (a suite's runs are nested: SUITE/DATASET/ARM-seedK)

    @classmethod
    def read(cls, path: Path) -> RunRecord:
        """The run in `path` (a directory holding ``config.yaml``)."""
        config_file, state_file = path / "config.yaml", path / "state.json"
        config = yaml.safe_load(config_file.read_text()) or {} if config_file.is_file() else {}
        try:
            state = json.loads(state_file.read_text()) if state_file.is_file() else {}
        except json.JSONDecodeError:
            state = {}
        return cls(path, config, state, read_rows(path / "metrics.csv"))

    @property
    def name(self) -> str:
        return self.label or self.path.name

    @property
    def recipe(self) -> str:
        """The recipe it came from if the config says, else what it trains: task, data and model."""
        if self.config.get("recipe"):
            return str(self.config["recipe"])
        data = self.config.get("data", {})
        source = data.get("family") if data.get("source") == "family" else data.get("source")
        return f"{self.config.get('task', '?')} {source or '?'} {self.config.get('model', {}).get('name', '?')}"

    @property
    def status(self) -> str:
        """running while a live fit holds its lock; else as state.json says (finished, stopped, failed), or new."""
        lock = run_lock.status(self.path)
        if lock is not None and lock.refuses:
            return "running"
        return self.state.get("state", "new")

    @property
    def step(self) -> int | None:
        steps = [_step(r) for r in self.rows if r.get("step")]
        return self.state.get("step", max(steps, default=None))

    def last(self, key: str) -> tuple[float, int] | None:
        """The last value of `key` and its step."""
        for row in reversed(self.rows):
            if row.get(key) and row.get("step"):
                return float(row[key]), _step(row)
        return None

    def best(self, key: str = "val/top1") -> tuple[float, int] | None:
        """The highest value of `key` (lowest for a loss) and its step."""
        points = [(float(r[key]), _step(r)) for r in self.rows if r.get(key) and r.get("step")]
        if not points:
            return None
        return (min if "loss" in key else max)(points, key=lambda p: (p[0], -p[1]))

    def mean(self, key: str) -> float | None:
        values = [float(r[key]) for r in self.rows if r.get(key)]
        return sum(values) / len(values) if values else None

    def columns(self) -> dict[str, str]:
        """The run as the listing shows it."""
        final, best = self.last("val/top1"), self.best("val/top1")
        loss, speed, wait = self.last("train/loss_step"), self.mean("perf/images_per_sec"), self.mean("perf/data_wait")
        max_steps = self.state.get("max_steps")
        return {
            "run": self.name, "recipe": self.recipe, "state": self.status,
            "step": f"{self.step}/{max_steps}" if max_steps else str(self.step if self.step is not None else "-"),
            "val/top1": _at(final), "best val/top1": _at(best), "train loss": _at(loss),
            "images/s": f"{speed:.0f}" if speed is not None else "-",
            "data wait": f"{100 * wait:.1f}%" if wait is not None else "-",
        }  # fmt: skip

    def stop_line(self) -> str | None:
        """For a stopped run: at which step, why, and how to continue it."""
        if self.state.get("state") != "stopped":
            return None
        reason = self.state.get("reason") or "trainer.stop_at_step"
        return f"stopped at step {self.state.get('step')} ({reason}); resume with resume=auto"


def _at(point: tuple[float, int] | None) -> str:
    return f"{point[0]:.4f} @{point[1]}" if point is not None else "-"


def find_runs(root: Path, pattern: str = "*") -> list[RunRecord]:
    """The runs under `root` (a folder holding ``config.yaml``, at any depth: a suite nests its runs) whose name,
    the path below `root`, matches the shell pattern; by name."""
    if not root.is_dir():
        raise ValueError(f"no runs folder {root}: pass --root (the fits' root=...)")
    found: list[RunRecord] = []

    def visit(folder: Path) -> None:
        for d in sorted(p for p in folder.iterdir() if p.is_dir()):
            if (d / "config.yaml").is_file():  # a run: its own folders hold no runs
                label = d.relative_to(root).as_posix()
                if fnmatch.fnmatch(label, pattern):
                    found.append(dataclasses.replace(RunRecord.read(d), label=label))
            else:
                visit(d)

    visit(root)
    return found


def table(rows: list[dict[str, str]]) -> str:
    """Aligned columns under a header, from dicts with the same keys."""
    if not rows:
        return ""
    keys = list(rows[0])
    widths = {k: max(len(k), *(len(r[k]) for r in rows)) for k in keys}
    lines = ["  ".join(k.ljust(widths[k]) for k in keys)]
    lines += ["  ".join(r[k].ljust(widths[k]) for k in keys) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def side_by_side(runs: list[RunRecord]) -> str:
    """One row per field, one column per run."""
    columns = [run.columns() for run in runs]
    fields = [k for k in columns[0] if k != "run"]
    rows = [{"": f, **{c["run"]: c[f] for c in columns}} for f in fields]
    return table([{"": "run", **{c["run"]: c["run"] for c in columns}}, *rows]).split("\n", 1)[1]


def write_curves(path: Path, runs: dict[str, dict[str, Series]]) -> dict[str, list[str]]:
    """Draw each curve of :data:`CURVES` in its panel, one line per run (label -> series), into the PNG `path`;
    returns what was drawn: panel key -> labels of its lines."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a cluster node
    import matplotlib.pyplot as plt

    keys = [key for key, _ in CURVES if any(key in series for series in runs.values())]
    drawn: dict[str, list[str]] = {key: [] for key in keys}
    if not keys:
        return drawn
    cols = min(2, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 3.5 * rows), squeeze=False)
    titles = dict(CURVES)
    for ax, key in zip(axes.flat, keys, strict=False):  # more panels than curves: the rest are blanked
        for label, series in runs.items():
            if key in series:
                steps, values = series[key]
                ax.plot(steps, values, marker="o" if len(steps) < 20 else None, markersize=3, label=label)
                drawn[key].append(label)
        ax.set_title(titles[key])
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if key == "lr":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
        if len(runs) > 1:
            ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return drawn


def write_run_curves(run_dir: Path) -> dict[str, list[str]]:
    """``curves.png`` of the run in `run_dir`, from its ``metrics.csv``."""
    return write_curves(run_dir / "curves.png", {run_dir.name: curve_series(read_rows(run_dir / "metrics.csv"))})
