"""Write a family's dataset to disk: PNG files in class folders, or WebDataset tar shards.

This is what file-based loaders read, and the baseline of the loader benchmarks. The export is deterministic (sample
``i`` is rendered from the key of (seed, epoch, i)), uses all cores (one process per core, each rendering whole
chunks single-threaded and encoding PNGs), and resumable: every file and shard is written under a temporary name and
renamed when complete, so a rerun skips what exists and redoes only what was cut off. A ``manifest.json`` records
what the folder holds; a rerun with other settings refuses to mix them.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from PIL import Image

from fdsl_app import render
from fdsl_app.families.base import ClassParams, Family
from fdsl_app.files import write_atomic
from fdsl_app.render.keys import sample_keys

FORMATS = ("png", "webdataset")
PNG_CHUNK = 64  # samples a worker renders and writes per task
PNG_LEVEL = 1  # zlib level: fast; these images compress well at any level


@dataclass
class ExportResult:
    """What an export did."""

    written: int  # samples written by this run
    skipped: int  # samples already on disk from an earlier run
    seconds: float
    files: int  # PNG files or shards in the folder


@dataclass(frozen=True)
class _Job:
    family: Family
    params: ClassParams
    out_dir: Path
    fmt: str
    seed: int
    epoch: int


def export_dataset(
    family: Family,
    params: ClassParams,
    out_dir: str | Path,
    *,
    fmt: str = "png",
    seed: int = 0,
    epoch: int = 0,
    limit: int | None = None,
    shard_size: int = 1000,
    workers: int | None = None,
    progress: bool = True,
) -> ExportResult:
    """Export samples 0 .. count-1 of `family` (all of them, or the first `limit`) to `out_dir`."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    family.check_params(params)
    count = family.sample_count() if limit is None else int(limit)
    if not 1 <= count <= family.sample_count():
        raise ValueError(f"limit must be in [1, {family.sample_count()}] (the dataset's size), got {limit}")
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    for name, value, high in (("seed", seed, 2**64), ("epoch", epoch, 2**64)):
        if not 0 <= value < high:
            raise ValueError(f"{name} must be in [0, 2**64), got {value}")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1 (or None for all cores), got {workers}")
    out_dir = Path(out_dir)  # every argument is checked before the folder's manifest is written
    _prepare_folder(
        out_dir,
        family,
        params,
        {"format": fmt, "seed": seed, "epoch": epoch} | ({"shard_size": shard_size} if fmt == "webdataset" else {}),
    )
    family.prepare(params, progress=progress)  # mode cached: one attractor cache, mapped by every worker
    job = _Job(family, params, out_dir, fmt, seed, epoch)
    size = PNG_CHUNK if fmt == "png" else shard_size
    chunks = [(start, min(start + size, count)) for start in range(0, count, size)]
    todo = [c for c in chunks if not _chunk_done(job, c)]
    start_time = time.perf_counter()
    bar = _progress_bar(count, count - sum(end - start for start, end in todo), progress)
    workers = max(1, min(workers or render.cpu_count(), len(todo) or 1))
    written = 0
    for (start, end), wrote in zip(todo, _run(job, todo, workers), strict=True):
        bar.update(end - start)
        written += wrote
    bar.close()
    files = sum(1 for _ in out_dir.rglob("*.png")) if fmt == "png" else len(list(out_dir.glob("shard-*.tar")))
    return ExportResult(written, count - written, time.perf_counter() - start_time, files)


def _prepare_folder(out_dir: Path, family: Family, params: ClassParams, options: dict) -> None:
    manifest = {"family": family.name, "settings": family.describe(), "params_seed": params.seed, **options}
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "manifest.json"
        if path.exists():
            old = json.loads(path.read_text())
            if old != json.loads(json.dumps(manifest)):
                differ = sorted(k for k in manifest if old.get(k) != json.loads(json.dumps(manifest))[k])
                raise ValueError(
                    f"{out_dir} already holds an export with other {', '.join(differ)}; choose another output folder "
                    "or delete it to start over"
                )
        else:
            path.write_text(json.dumps(manifest, indent=2))
    except OSError as err:
        raise ValueError(f"cannot write to output folder {out_dir}: {err.strerror or err}") from None


def _stems(job: _Job, start: int, end: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    index = np.arange(start, end, dtype=np.int64)
    ipc = job.family.instances_per_class
    classes, instances = index // ipc, index % ipc
    return classes, instances, [job.family.file_stem(int(c), int(i)) for c, i in zip(classes, instances, strict=True)]


def _chunk_done(job: _Job, chunk: tuple[int, int]) -> bool:
    if job.fmt == "webdataset":
        return _shard_path(job, chunk[0]).exists()
    classes, _, stems = _stems(job, *chunk)
    return all(_png_path(job, int(c), s).exists() for c, s in zip(classes, stems, strict=True))


def _png_path(job: _Job, cls: int, stem: str) -> Path:
    return job.out_dir / f"{cls:05d}" / f"{stem}.png"


def _shard_path(job: _Job, start: int) -> Path:
    size = job.family.sample_count()  # shard names count samples, so they stay stable for any shard size
    return job.out_dir / f"shard-{start:0{len(str(size))}d}.tar"


def _encode_png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=PNG_LEVEL)
    return buffer.getvalue()


def _write_chunk(job: _Job, chunk: tuple[int, int]) -> int:
    """Render and write one chunk (in a worker process); returns the samples written (PNG: only missing files)."""
    start, end = chunk
    classes, instances, stems = _stems(job, start, end)
    keys = sample_keys(job.seed, job.epoch, np.arange(start, end))
    images = job.family.render(job.params, classes, instances, keys, job.family.new_batch(end - start), threads=1)
    if job.fmt == "png":
        written = 0
        for cls, stem, image in zip(classes, stems, images, strict=True):
            path = _png_path(job, int(cls), stem)
            if not path.exists():
                path.parent.mkdir(exist_ok=True)
                write_atomic(path, _encode_png(image))
                written += 1
        return written
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for cls, stem, image in zip(classes, stems, images, strict=True):
            for suffix, data in ((".png", _encode_png(image)), (".cls", str(int(cls)).encode())):
                info = tarfile.TarInfo(stem + suffix)
                info.size, info.mtime = len(data), 0
                tar.addfile(info, io.BytesIO(data))
    write_atomic(_shard_path(job, start), buffer.getvalue())
    return end - start


def _run(job: _Job, chunks: list[tuple[int, int]], workers: int) -> Iterator[int]:
    if workers == 1:
        for chunk in chunks:
            yield _write_chunk(job, chunk)
        return
    # fork: workers start without re-importing anything; the renderer holds no threads between calls, so forking
    # is safe. (Each task pickles the job with its parameter arrays: small next to rendering a chunk.)
    with ProcessPoolExecutor(workers, mp_context=get_context("fork")) as pool:
        yield from pool.map(_write_chunk, [job] * len(chunks), chunks)


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(total: int, done: int, show: bool):  # noqa: ANN202 - tqdm or a stand-in
    if not show:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, initial=done, unit="img", desc="export", dynamic_ncols=True)
