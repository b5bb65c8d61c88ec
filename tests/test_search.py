"""run_search: a restartable category search that writes the parameter file and equals ``generate``."""

from __future__ import annotations

import numpy as np
import pytest

from fdsl_app.families import ClassParams, create_family, load_params, save_params
from fdsl_app.families.search import CategorySearch, format_stats, partial_path, run_search

#: About a third of candidates pass at these settings; 40 classes need two batches of candidates.
SMALL = {"search_size": 128, "search_points": 5000, "fill_threshold": 0.1}


def _same(a: ClassParams, b: ClassParams) -> bool:
    arrays_equal = a.arrays.keys() == b.arrays.keys() and all(
        np.array_equal(v, b.arrays[k]) for k, v in a.arrays.items()
    )
    same_counts = all(a.stats[k] == b.stats[k] for k in ("candidates", "accepted", "per_maps"))
    return arrays_equal and same_counts and (a.family, a.seed) == (b.family, b.seed)


def _interrupt_after(steps: int, monkeypatch, seen: list | None = None) -> None:
    """Make category searches raise KeyboardInterrupt after `steps` batches, as Ctrl-C would."""
    original = CategorySearch.steps

    def steps_then_interrupt(search, state):
        for done, new_state in enumerate(original(search, state), 1):
            if seen is not None:
                seen.append(new_state)
            yield new_state
            if done == steps:
                raise KeyboardInterrupt

    monkeypatch.setattr(CategorySearch, "steps", steps_then_interrupt)


def test_run_search_writes_what_generate_returns(tmp_path):
    family = create_family("fractaldb", classes=5, **SMALL)
    params = run_search(family, 3, tmp_path / "classes", progress=False)
    assert _same(params, family.generate(3))
    assert _same(load_params(tmp_path / "classes.npz", family="fractaldb"), params)
    assert not partial_path(tmp_path / "classes").exists()


def test_resume_after_an_exhausted_budget_equals_an_uninterrupted_search(tmp_path):
    output = tmp_path / "classes.npz"
    tight = create_family("fractaldb", classes=20, max_candidates=20, **SMALL)
    with pytest.raises(RuntimeError, match=r"in 20 candidates.*rerun continues"):
        run_search(tight, 5, output, progress=False)
    saved = load_params(partial_path(output))
    assert saved.family == "fractaldb.partial" and int(saved.arrays["consumed"]) == 20
    assert not output.exists()

    family = create_family("fractaldb", classes=20, **SMALL)  # the default budget: resume in the middle of batch 0
    resumed = run_search(family, 5, output, progress=False)
    assert _same(resumed, family.generate(5))
    assert not partial_path(output).exists()


def test_resume_continues_from_the_saved_state(tmp_path):
    output = tmp_path / "classes.npz"
    with pytest.raises(RuntimeError):
        run_search(create_family("fractaldb", classes=20, max_candidates=20, **SMALL), 5, output, progress=False)
    saved = load_params(partial_path(output))
    saved.arrays["fill"][0] = -1.0  # a mark no real search writes: the resumed run must carry it
    save_params(saved, partial_path(output))
    resumed = run_search(create_family("fractaldb", classes=20, **SMALL), 5, output, progress=False)
    assert resumed.arrays["fill"][0] == -1.0


def test_resume_after_ctrl_c_equals_an_uninterrupted_search(tmp_path, monkeypatch):
    family = create_family("fractaldb", classes=100, **SMALL)
    seen: list = []
    _interrupt_after(1, monkeypatch, seen)
    with pytest.raises(KeyboardInterrupt):
        run_search(family, 9, tmp_path / "out", progress=False, checkpoint_every=3600)
    saved = load_params(partial_path(tmp_path / "out"))
    assert int(saved.arrays["consumed"]) == seen[-1].consumed == 256 and 0 < len(saved.arrays["fill"]) < 100
    monkeypatch.undo()
    assert _same(run_search(family, 9, tmp_path / "out", progress=False), family.generate(9))


def test_checkpoints_are_written_while_searching(tmp_path, monkeypatch):
    family = create_family("fractaldb", classes=100, **SMALL)
    partial = partial_path(tmp_path / "out")
    _interrupt_after(2, monkeypatch)
    seen_on_disk = []
    original = CategorySearch.steps

    def watch(search, state):
        for new_state in original(search, state):
            seen_on_disk.append(partial.exists())
            yield new_state

    monkeypatch.setattr(CategorySearch, "steps", watch)
    with pytest.raises(KeyboardInterrupt):
        run_search(family, 9, tmp_path / "out", progress=False, checkpoint_every=0)
    assert seen_on_disk == [False, True]  # written after the first batch, before the second


def test_fewer_classes_reuse_a_longer_partial_search(tmp_path):
    output = tmp_path / "classes.npz"
    with pytest.raises(RuntimeError):
        run_search(create_family("fractaldb", classes=20, max_candidates=20, **SMALL), 5, output, progress=False)
    family = create_family("fractaldb", classes=3, **SMALL)
    assert _same(run_search(family, 5, output, progress=False), family.generate(5))


@pytest.mark.parametrize(
    ("family", "settings", "seed", "message"),
    [("fractaldb", {}, 6, "seed 5, not 'fractaldb' with seed 6"),
     ("ofdb", {}, 5, "'fractaldb' with seed 5, not 'ofdb'"),
     ("fractaldb", {"fill_threshold": 0.12}, 5, "other settings.*fill_threshold")],
)  # fmt: skip
def test_a_partial_file_of_another_search_is_refused(tmp_path, family, settings, seed, message):
    output = tmp_path / "classes.npz"
    with pytest.raises(RuntimeError):
        run_search(create_family("fractaldb", classes=20, max_candidates=20, **SMALL), 5, output, progress=False)
    other = create_family(family, classes=20, **{**SMALL, **settings})
    with pytest.raises(ValueError, match=rf"{message}.*delete .*classes\.partial\.npz"):
        run_search(other, seed, output, progress=False)


def test_run_search_reads_csv_folders_without_checkpoints(tmp_path):
    (tmp_path / "csv").mkdir()
    for i in range(2):
        (tmp_path / "csv" / f"{i:05d}.csv").write_text("0.5,0,0,0.5,0,0,0.5\n0.5,0,0,0.5,0.5,0.5,0.5\n")
    family = create_family("ofdb", classes=2, csv_dir=str(tmp_path / "csv"))
    params = run_search(family, 0, tmp_path / "ofdb", progress=False)
    assert params.stats["source"] == "csv" and (tmp_path / "ofdb.npz").exists()
    assert "csv_dir" in format_stats(params.stats)


def test_run_search_needs_an_existing_folder(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        run_search(create_family("fractaldb", classes=1, **SMALL), 0, tmp_path / "no" / "x.npz", progress=False)


def test_format_stats_reports_rates_per_map_count():
    params = create_family("fractaldb", classes=5, **SMALL).generate(1)
    text = format_stats(params.stats)
    assert f"candidates searched: {params.stats['candidates']}" in text
    assert "classes accepted:    5" in text and "N=2:" in text and "candidates/s" in text
