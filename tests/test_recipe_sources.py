"""Every paper recipe names, in its header, where the values of each hyper-parameter group it sets come from.

A recipe's header has a block

    # Sources (hyper-parameter group: where its values come from):
    #   data.settings: owner/repo@commit path (values) ...
    #   data (batch, augment), model: owner/repo@commit path ...
    #   optim: the same script (...)          <- "the same" refers back to a source named above it
    #   data, optim, trainer: as finetune_cifar10 (see its sources).

and each group the recipe sets (its own top-level keys and those of its defaults, followed through other recipes)
must be named on one of its lines. A new recipe without provenance fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from fdsl_app.config import RECIPES_DIR, find_default

SOURCES_HEADING = "# Sources (hyper-parameter group: where its values come from):"
#: A citation: owner/repo@commit (7 to 40 hex digits).
REPO_AT_COMMIT = re.compile(r"\b[\w.-]+/[\w.-]+@[0-9a-f]{7,40}\b")
#: Keys of a recipe that are not hyper-parameters.
NOT_HYPER_PARAMETERS = {"defaults", "name", "task", "root"}
#: Recipes of our own, reproducing no paper: the CPU quick start and the digits suite.
OURS = ("quickstart", "digits")


def paper_recipes() -> list[Path]:
    return sorted(
        p
        for p in RECIPES_DIR.glob("*.yaml")
        if p.stem.startswith(("pretrain_", "finetune_", "scratch_")) and not any(own in p.stem for own in OURS)
    )


def groups_set(path: Path) -> set[str]:
    """Top-level hyper-parameter groups `path` sets, its defaults' included."""
    doc = yaml.safe_load(path.read_text()) or {}
    groups = set(doc) - NOT_HYPER_PARAMETERS
    for entry in doc.get("defaults", []):
        groups |= groups_set(find_default(entry, path))
    return groups


def sources(path: Path) -> dict[str, str]:
    """The header's Sources block: group name -> the text naming its source (continuation lines joined)."""
    lines = [line for line in path.read_text().splitlines() if line.startswith("#")]
    assert SOURCES_HEADING in lines, f"{path.name}: no '{SOURCES_HEADING}' block in its header"
    entries: list[tuple[str, str]] = []
    for line in lines[lines.index(SOURCES_HEADING) + 1 :]:
        if line.startswith("#     ") and entries:  # continuation
            entries[-1] = (entries[-1][0], entries[-1][1] + " " + line[6:].strip())
        elif line.startswith("#   ") and ":" in line:
            label, text = line[4:].split(":", 1)
            entries.append((label, text.strip()))
        else:
            break
    named: dict[str, str] = {}
    cited = False
    for label, text in entries:
        refers = re.search(r"\bas (\w+)\b", text)
        cited_here = bool(REPO_AT_COMMIT.search(text)) or (refers and (RECIPES_DIR / f"{refers[1]}.yaml").is_file())
        assert cited_here or (cited and "the same" in text), (
            f"{path.name}: sources of '{label}' name no owner/repo@commit, recipe ('as NAME') or earlier source "
            f"('the same ...'): {text!r}"
        )
        cited = cited or cited_here
        for group in re.sub(r"\([^)]*\)", "", label).split(","):
            named[group.strip().split(".")[0]] = text
    return named


@pytest.mark.parametrize("recipe", paper_recipes(), ids=lambda p: p.stem)
def test_paper_recipe_names_a_source_for_every_group_it_sets(recipe: Path) -> None:
    missing = groups_set(recipe) - set(sources(recipe))
    assert not missing, f"{recipe.name}: its Sources block names no source for {sorted(missing)}"


def test_the_paper_recipes_are_found() -> None:
    stems = {p.stem for p in paper_recipes()}
    assert {"pretrain_1pfrac_deit_tiny", "finetune_cifar10", "scratch_cifar10"} <= stems
    assert not any(own in s for s in stems for own in OURS)


def test_a_recipe_without_sources_fails(tmp_path: Path) -> None:
    bare = tmp_path / "pretrain_bare.yaml"
    bare.write_text("# fdsl_app fit --config pretrain_bare\ndefaults: [optim/adamw_pretrain.yaml]\nname: bare\n")
    with pytest.raises(AssertionError, match="no '# Sources"):
        sources(bare)
    partial = tmp_path / "pretrain_partial.yaml"
    partial.write_text(
        f"# fdsl_app fit --config pretrain_partial\n{SOURCES_HEADING}\n#   optim: somebody/repo@abcdef0 run.sh\n"
        "defaults: [optim/adamw_pretrain.yaml]\nname: partial\ntrainer: {max_epochs: 3}\n"
    )
    assert groups_set(partial) - set(sources(partial)) == {"trainer"}
    uncited = tmp_path / "pretrain_uncited.yaml"
    uncited.write_text(f"# fdsl_app fit\n{SOURCES_HEADING}\n#   optim: the paper, probably\nname: x\n")
    with pytest.raises(AssertionError, match="name no owner/repo@commit"):
        sources(uncited)
