"""A suite file: which recipe, datasets, seeds and arms, and the runs they make.

.. code-block:: yaml

    name: digits                  # runs go to <root>/<name>/<dataset>/<arm>-seed<k>
    recipe: finetune_digits       # every run's recipe (a name in recipes/ or a path next to this file)
    seeds: [0, 1, 2]
    overrides: []                 # key=value for every run
    datasets:
      digits:
        prepare: sklearn_digits   # optional: written to data.root when missing
        recipe: ...               # optional: this dataset's recipe instead of the suite's
        overrides: [data.source=folder, data.root=data/digits]

Two arms per dataset and seed: ``pretrained`` (``model.init_from`` = the pre-training run) and ``scratch``
(``model.init_from=null``), otherwise identical.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fdsl_app.config import RECIPES_DIR, RunCfg, load_config, resource_dir

SUITES_DIR = resource_dir("suites")
ARMS = ("pretrained", "scratch")
PREPARERS = ("sklearn_digits",)


@dataclass
class Dataset:
    name: str
    recipe: Path
    overrides: list[str] = field(default_factory=list)
    prepare: str | None = None


@dataclass
class Suite:
    name: str
    path: Path
    seeds: list[int]
    datasets: list[Dataset]
    overrides: list[str] = field(default_factory=list)


@dataclass
class Run:
    """One fine-tuning run of the suite: its config, and the command-line overrides that make it."""

    dataset: Dataset
    arm: str
    seed: int
    cfg: RunCfg
    recipe: Path
    overrides: list[str]

    @property
    def label(self) -> str:
        return f"{self.dataset.name}/{self.arm}-seed{self.seed}"


def find_suite(text: str) -> Path:
    """A suite file path, or the name of one in suites/ (with or without .yaml)."""
    for candidate in (Path(text), SUITES_DIR / text, SUITES_DIR / f"{text}.yaml"):
        if candidate.is_file():
            return candidate
    known = ", ".join(sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))) if SUITES_DIR.is_dir() else "none"
    raise ValueError(f"no suite {text!r}: give a suite YAML path or one of: {known}")


def _recipe(text: str, suite_file: Path) -> Path:
    for candidate in (suite_file.parent / text, RECIPES_DIR / text, RECIPES_DIR / f"{text}.yaml"):
        if candidate.is_file():
            return candidate
    raise ValueError(f"suite {suite_file}: recipe {text!r} not found (next to the suite file or in recipes/)")


def _strings(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and "=" in v for v in value):
        raise ValueError(f"{where} must be a list of key=value strings, got {value!r}")
    return list(value)


def load_suite(path: Path) -> Suite:
    """The suite of a YAML file, checked: one-line ValueErrors name the key at fault."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"cannot read suite file {path}: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"suite file {path} must hold a mapping (name, recipe, seeds, datasets)")
    unknown = sorted(set(data) - {"name", "recipe", "seeds", "overrides", "datasets"})
    if unknown:
        raise ValueError(f"suite {path}: unknown key(s) {', '.join(unknown)}; allowed: name, recipe, seeds, overrides, "
                         "datasets")  # fmt: skip
    seeds = data.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and s >= 0 for s in seeds):
        raise ValueError(f"suite {path}: seeds must be a non-empty list of integers >= 0, got {seeds!r}")
    entries = data.get("datasets")
    if not isinstance(entries, dict) or not entries:
        raise ValueError(f"suite {path}: datasets must map each dataset's name to its recipe/overrides")
    datasets = []
    for name, entry in entries.items():
        entry = entry or {}
        recipe = entry.get("recipe", data.get("recipe"))
        if recipe is None:
            raise ValueError(f"suite {path}: dataset {name!r} has no recipe (set recipe: for the suite or the dataset)")
        prepare = entry.get("prepare")
        if prepare is not None and prepare not in PREPARERS:
            raise ValueError(f"suite {path}: dataset {name!r}: prepare must be one of {', '.join(PREPARERS)}, "
                             f"got {prepare!r}")  # fmt: skip
        overrides = _strings(entry.get("overrides"), f"suite {path}: datasets.{name}.overrides")
        datasets.append(Dataset(str(name), _recipe(str(recipe), path), overrides, prepare))
    name = str(data.get("name", path.stem))
    return Suite(name, path, seeds, datasets, _strings(data.get("overrides"), f"suite {path}: overrides"))


def plan_runs(suite: Suite, init_from: Path, extra: list[str]) -> list[Run]:
    """Every run of the suite, each config loaded and checked now (a typo fails before any training).

    `init_from`: the pre-training checkpoint, resolved; `extra`: the command line's key=value, for every run (they
    win over the suite's and the dataset's).
    """
    runs = []
    for dataset in suite.datasets:
        for seed in suite.seeds:
            for arm in ARMS:
                weights = f"model.init_from={init_from}" if arm == "pretrained" else "model.init_from=null"
                name = f"name={suite.name}/{dataset.name}/{arm}-seed{seed}"
                overrides = ["trainer.enable_progress_bar=false", *suite.overrides, *dataset.overrides, *extra,
                             f"seed={seed}", weights, "resume=auto", name]  # fmt: skip
                runs.append(Run(dataset, arm, seed, load_config(dataset.recipe, overrides), dataset.recipe, overrides))
    return runs
