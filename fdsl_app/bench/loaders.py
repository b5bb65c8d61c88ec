"""``fdsl_app bench loaders``: PNG, WebDataset, FFCV and DALI loading against rendering on the fly, same images,
same augmentation.

It exports a small dataset of one family (or reuses ``--data DIR``), then times every loader at every worker count
on the same samples, image size, batch size and DeiT augmentation (:mod:`fdsl_app.bench.pipelines` and
:mod:`fdsl_app.bench.peers` say what each loader does). Per (loader, workers): images/s per batch step after the
first, images/s over the whole epoch (worker start included) and the time until the first batch. Output: a markdown
table, a JSON file and a PNG chart (:mod:`fdsl_app.bench.report`). A loader whose package is not installed is
reported as skipped, with the command that installs it.

The loaders and torch are imported when the benchmark runs.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from fdsl_app import provenance
from fdsl_app.bench import pipelines as bp
from fdsl_app.bench import report
from fdsl_app.bench.records import (
    ENGINES,
    LoaderBenchSettings,
    LoaderRow,
    family_settings,
    main_threads,
    make_row,
    resolve_device,
    skipped_loaders,
)
from fdsl_app.bench.steps import time_epoch
from fdsl_app.data.augment import recycle_batch_memory


def prepare(settings: LoaderBenchSettings, root: Path) -> Any:
    """The family sized to ``settings.samples``, its parameters and its export under `root` (reused where there).

    Returns:
        :class:`~fdsl_app.bench.pipelines.BenchData`.
    """
    family = bp.make_family(settings.family, family_settings(settings), settings.samples)
    skipped = {s.loader for s in skipped_loaders(settings.loaders)}
    formats = [key for key in ("b", "e", "ej") if key in settings.loaders and key not in skipped]
    shard_size = settings.shard_size or bp.auto_shard_size(settings.samples)
    data = bp.prepare_data(family, root, seed=settings.seed, formats=formats, shard_size=shard_size)
    read_once(root)
    return data


def read_once(root: Path) -> None:
    """Read every file under `root` once: a reused export (--data) then starts from the OS page cache like a fresh
    one, instead of charging its disk reads to whichever loader runs first."""
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        with open(path, "rb") as f:
            while f.read(1 << 24):
                pass


def measure(settings: LoaderBenchSettings, data: Any, on_row: Callable[[LoaderRow], None]) -> list[LoaderRow]:
    """Time every runnable loader at every worker count on `data` (from :func:`prepare`).

    Each DataLoader-based loader first yields one untimed batch (imports, first calls); FFCV and DALI get one
    untimed epoch on the very loader that is timed (their pipeline build and JIT compilation are paid once per run,
    not per epoch). Worker counts are the outer loop, so the loaders compared at one count are measured next to each
    other, with :func:`main_threads` torch threads.
    """
    skipped = {s.loader for s in skipped_loaders(settings.loaders)}
    runnable = [k for k in settings.loaders if k not in skipped]
    spec = bp.PipelineSpec(settings.size, settings.batch_size, settings.seed, device=resolve_device(settings.device),
                           photometric=settings.photometric)  # fmt: skip
    recycle_batch_memory()  # (d) sets it on first use; every loader runs under the same allocator
    for key in runnable:
        if key not in ENGINES:
            bp.warm_up(key, data, spec)
    rows: list[LoaderRow] = []
    default_threads = torch.get_num_threads()
    try:
        for workers in settings.workers:
            base: LoaderRow | None = None
            for key in runnable:
                torch.set_num_threads(main_threads(settings, workers, key))
                loader, step = bp.build_loader(key, data, spec, workers)
                if key in ENGINES:  # an untimed epoch: pipeline build and JIT compilation, paid once per run
                    time_epoch(loader, step, spec.device)
                timings = [time_epoch(loader, step, spec.device) for _ in range(settings.repeats)]
                row = make_row(key, workers, timings, base, torch.get_num_threads())
                base = row if key == "a" else base
                rows.append(row)
                on_row(row)
    finally:
        torch.set_num_threads(default_threads)
    return rows


# --- machine -------------------------------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    """CPU, cores, torch threads and versions."""
    info = provenance.machine()
    peers = provenance.versions(("torch", "torchvision", "timm", "webdataset", "ffcv", "nvidia-dali-cuda130"))
    return info | {"torch_default_threads": torch.get_num_threads(), "versions": info["versions"] | peers}


def run(settings: LoaderBenchSettings, json_path: Path, chart_path: Path, say: Callable[..., None]) -> list[LoaderRow]:
    """Run the benchmark, printing with `say` as it goes (the table row by row); write the JSON and the chart."""
    start = time.perf_counter()
    skipped = skipped_loaders(settings.loaders)
    with tempfile.TemporaryDirectory(prefix="fdsl_bench_loaders_") as tmp:
        root = Path(settings.data) if settings.data is not None else Path(tmp)
        say(f"data: {'reusing or writing' if settings.data else 'writing'} {settings.samples} samples under {root}")
        machine = machine_info()  # before the export: FFCV's writer changes torch's thread count
        data = prepare(settings, root)
        say(f"data: {data.written} images written (PNG files and shard members; 0: all reused), "
             f"{data.export_seconds:.1f} s with the class parameters")  # fmt: skip
        say()
        say(report.header(machine, settings, data))
        say()
        say(report.TABLE_HEAD)
        rows = measure(settings, data, lambda row: say(report.table_row(row)))
        seconds = time.perf_counter() - start
        report.write_json(json_path, report.json_doc(settings, machine, data, rows, skipped, seconds))
    say()
    for skip in skipped:
        say(f"({skip.loader}) {skip.name}: {skip.reason}")
    for line in [*report.ratio_summary(rows), *report.node_budget(settings, rows)]:
        say(line)
    title = f"{data.family.name}, {settings.samples} images at {settings.size} px, batch {settings.batch_size}"
    report.draw_chart(rows, chart_path, title=f"{title}: epoch images/s by workers")
    say(f"wrote {json_path} and {chart_path}; {len(rows)} rows, {seconds:.1f} s in all")
    return rows
