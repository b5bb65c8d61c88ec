"""What ``fdsl_app bench loaders`` shows: the markdown header and table, the JSON document, and the PNG chart of
images/s per loader grouped by worker count (drawn with PIL, no plotting dependency)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from fdsl_app.bench.pipelines import WDS_SHUFFLE
from fdsl_app.bench.records import LoaderBenchSettings, LoaderRow, Skipped, main_threads, resolve_device

WIDTH, HEIGHT = 1000, 560
MARGIN = {"left": 90, "right": 30, "top": 70, "bottom": 130}
COLOURS = {
    "a": (90, 90, 90),
    "b": (140, 110, 200),
    "c": (60, 140, 220),
    "d": (230, 120, 30),
    "e": (60, 170, 90),
    "ej": (150, 210, 160),
    "f": (200, 60, 70),
    "g": (0, 120, 130),
}
GRID = (225, 225, 225)
INK = (30, 30, 30)


def header(machine: dict[str, Any], settings: LoaderBenchSettings, data: Any) -> str:
    """Markdown lines above the table: machine, versions, workload and what each loader does."""
    v = machine["versions"]
    family = data.family
    shards = len(data.shards())
    render_size = settings.render_size or settings.size
    device = resolve_device(settings.device)
    copy = "used where they are (no copy)" if device == "cpu" else "copied to it from pinned memory (timed)"
    if settings.main_threads is not None:
        threads = f"{settings.main_threads} for every row"
    else:
        per_worker = ",".join(str(main_threads(settings, w, "d")) for w in settings.workers)
        threads = (f"1 for (a)-(c) and (f) (per-sample work, as in a worker); for the batched augmentation of (d), (e) "
                   f"and (ej), the cores the workers leave: {per_worker}")  # fmt: skip
    lines = [
        f"**Machine:** {machine['cpu_model']}, {machine['cores']} cores, torch {v['torch']} "
        f"(default {machine['torch_default_threads']} threads), torchvision {v['torchvision']}, "
        f"timm {v['timm']}, Pillow {v['pillow']}, webdataset {v['webdataset']}, ffcv {v['ffcv']}, "
        f"DALI {v['nvidia-dali-cuda130']}, Python {v['python']}.",
        "",
        f"**Workload:** {family.name} ({family.num_classes} classes x {family.instances_per_class}; "
        f"{family.describe().get('n_points', '-')} points, mode {family.describe().get('mode', '-')}), "
        f"{settings.samples} samples per epoch rendered/stored at {render_size} px, trained at {settings.size} px, "
        f"batch {settings.batch_size}, workers {','.join(map(str, settings.workers))}, {settings.repeats} epoch(s) "
        "per row. Same images in every loader (sample i of epoch 0: same keys in the export and the renderer).",
        f"Attractor cache (mode cached: the export and (g)): {_cache_line(data)}.",
        _augmentation(settings),
        "- (a) torchvision ImageFolder over PNG class folders: open + PIL decode to RGB + transform per sample in "
        "the workers; default_collate.",
        f"- (b) WebDataset over {shards} tar shards of PNG (split over workers; shard shuffle, {WDS_SHUFFLE}-sample "
        "buffer): PIL decode + transform per sample, batched inside the worker.",
        "- (c) fdsl_app renders each batch in the worker (one render call, 1 thread), then PIL RGB + transform per "
        "sample.",
        "- (d) fdsl_app training path: FamilyDataModule loader (batched uint8 renders in shared memory, zero-copy "
        f"collate) + DeviceAugment per batch in the main process on the device ({device}; timed in the step).",
        "- (g) fdsl_app training path in mode cached: each system's reference chain run once into the attractor "
        "cache (built before timing), each sample's patch masks, crop, flips and bilinear resize drawn from it in "
        "C++ in the loader; then as (d).",
        "- (e) / (ej) FFCV over .beton files of the same PNGs (raw pixels / JPEG q90): its decoder crops (same box "
        "rule) and h-flips; RandAugment, normalise and erasing batched as (d) (FFCV has no RandAugment).",
        "- (f) NVIDIA DALI over the PNG folders: its decoder, random_resized_crop, flip, its own RandAugment (timm's "
        "ops at m9 of 10, each layer with p 0.5) and normalise; random erasing batched as (d).",
        "FFCV and DALI run threads of their own: workers N gives them max(N, 1) threads; each is timed from its "
        "second epoch (its pipeline build and JIT compilation are paid once per run).",
        f"Device: {device}; every loader's batches are {copy}.",
        f"Main-process torch threads (--main-threads): {threads}. Torch's all-core default next to busy workers "
        "oversubscribes the cores and slows small tensor ops several-fold.",
        "Timing: shuffled, nothing dropped, torch's default prefetch, workers started per epoch (first batch and "
        "epoch include it), no pinned memory, the consumer does nothing else. Step img/s = images / time over the "
        "steps after the first; +- the same relative spread as the per-step time per image. Epoch img/s = images / "
        "(iterator creation to last batch). The files were just written or read once before timing, so they sit in "
        "the OS page cache (a cold "
        "or network file system slows (a) and (b) further). Other processes on the machine perturb the figures.",
    ]
    return "\n".join(lines)


TABLE_HEAD = (
    "| loader | workers | step img/s (mean +- std) | epoch img/s | first batch s | vs (a) | img/s per core |\n"
    "|---|---:|---:|---:|---:|---:|---:|"
)


def _cache_line(data: Any) -> str:
    if getattr(data.family.settings, "mode", None) != "cached":
        return "not used (the family's mode is not cached)"
    words = data.family.cache_words()
    return (f"{len(words):,} systems at {words.shape[1]} px, {words.nbytes / 2**20:,.1f} MiB, "
            f"{data.cache_seconds:.1f} s to build or map in this run")


def _augmentation(settings: LoaderBenchSettings) -> str:
    if not settings.photometric:
        return ("Augmentation (all loaders): the geometric part only - random resized crop (0.08-1, 3/4-4/3, "
                "bilinear), h-flip 0.5 - to uint8 images: equal work for every loader ((a)-(c) torchvision's "
                "per-sample PIL transform; (d), (g) in the renderer). No RandAugment, normalisation or erasing.")
    return ("Augmentation (all loaders): DeiT defaults - random resized crop (0.08-1, 3/4-4/3), h-flip 0.5, "
            "RandAugment rand-m9-mstd0.5-inc1, normalise, random erasing 0.25; (a)-(c) timm's per-sample PIL "
            "transform (bicubic crop), (d), (g) fdsl_app's batched torch version of it (DeviceAugment per batch, "
            "data/augment.py). Mixup/CutMix are batch-level and cost the same after any loader: left out.")


def table_row(row: LoaderRow) -> str:
    """One markdown line."""
    ratio = "-" if row.ratio_to_a is None else f"{row.ratio_to_a:.2f}x"
    return (f"| ({row.loader}) {row.name} | {row.workers} | {row.step_images_per_s:,.0f} +- "
            f"{row.step_images_per_s_std:,.0f} | {row.epoch_images_per_s:,.0f} | {row.first_batch_s:.2f} | "
            f"{ratio} | {row.images_per_cpu_s:,.0f} |")  # fmt: skip


def node_budget(settings: LoaderBenchSettings, rows: Sequence[LoaderRow]) -> list[str]:
    """Each loader's images per core against what one core of the configured node must deliver (best worker
    count of each loader), so that a reader sees at once which loaders would starve its GPUs."""
    need = settings.core_budget
    lines = [f"node budget: {settings.node_gpus} GPUs x {settings.gpu_images_per_s:,.0f} img/s over "
             f"{settings.node_cores} cores = {need:,.0f} img/s per core (images per CPU second of the loader and "
             "its workers)"]  # fmt: skip
    best: dict[str, LoaderRow] = {}
    for row in rows:
        if row.loader not in best or row.images_per_cpu_s > best[row.loader].images_per_cpu_s:
            best[row.loader] = row
    for row in best.values():
        verdict = "keeps up" if row.images_per_cpu_s >= need else "starves the GPUs"
        lines.append(f"  ({row.loader}) {row.name}: {row.images_per_cpu_s:,.0f} img/s per core at {row.workers} "
                     f"workers = {row.images_per_cpu_s / need:.2f}x the budget ({verdict})")  # fmt: skip
    return lines


def ratio_summary(rows: Sequence[LoaderRow]) -> list[str]:
    """Lines "(c)/(a) at N workers: r" for every measured loader other than (a)."""
    out = []
    for row in rows:
        if row.loader != "a" and row.ratio_to_a is not None:
            out.append(f"({row.loader})/(a) at {row.workers} workers: {row.ratio_to_a:.2f}x")
    return out


def write_json(path: Path, doc: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(doc, indent=2) + "\n")


def json_doc(settings: LoaderBenchSettings, machine: dict[str, Any], data: Any, rows: Sequence[LoaderRow],
             skipped: Sequence[Skipped], seconds: float) -> dict[str, Any]:  # fmt: skip
    """Everything a run measured, with the machine and the settings."""
    return {
        "benchmark": "loaders",
        "machine": machine,
        "settings": asdict(settings),
        "device": resolve_device(settings.device),
        "family": {"name": data.family.name, "settings": data.family.describe()},
        "data": {
            "root": str(data.root),
            "reused": settings.data is not None,
            "written": data.written,
            "export_seconds": data.export_seconds,
            "shards": len(data.shards()),
        },
        "method": {
            "step": "images / seconds over the steps after the first (pooled over repeats)",
            "epoch": "median over repeats of images / (iterator creation to last batch)",
            "ratio_to_a": "epoch img/s over (a)'s at the same workers",
            "images_per_cpu_s": "images / CPU seconds of the process (all threads) and its finished loader workers",
            "core_budget": settings.core_budget,
            "excluded": "mixup/cutmix (batch-level, identical for all loaders)",
        },
        "rows": [asdict(r) for r in rows],
        "skipped": [asdict(s) for s in skipped],
        "seconds": seconds,
    }


# --- chart ---------------------------------------------------------------------------------------------------------


def _font(size: int) -> Any:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def nice_ticks(top: float, count: int = 5) -> list[float]:
    """Round tick values from 0 up to at least `top` (steps of 1, 2 or 5 times a power of ten)."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    return [i * step for i in range(math.ceil(top / step) + 1)]


def short(value: float) -> str:
    """1234 -> "1.2k", 56 -> "56"."""
    if value >= 10_000:
        return f"{value / 1000:.0f}k"
    if value >= 1000:
        return f"{value / 1000:.1f}k"
    return f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"


def _centered(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, font: Any, fill: tuple) -> None:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    draw.text((xy[0] - (right - left) / 2, xy[1] - (bottom - top) / 2 - top), text, font=font, fill=fill)


def draw_chart(rows: Sequence[LoaderRow], path: str | Path, title: str = "epoch images/s") -> Path:
    """Grouped bars: one group per worker count, one labelled bar per loader; writes a PNG and returns its path."""
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    fonts = {"title": _font(18), "axis": _font(14), "small": _font(12)}
    x0, x1 = MARGIN["left"], WIDTH - MARGIN["right"]
    y0, y1 = MARGIN["top"], HEIGHT - MARGIN["bottom"]
    _centered(draw, (WIDTH / 2, 28), title, fonts["title"], INK)
    ticks = nice_ticks(max((r.epoch_images_per_s for r in rows), default=0.0) * 1.12)
    scale = (y1 - y0) / ticks[-1]
    for tick in ticks:
        y = y1 - tick * scale
        draw.line([(x0, y), (x1, y)], fill=GRID)
        label = short(tick)
        width = draw.textlength(label, font=fonts["small"])
        draw.text((x0 - 8 - width, y - 7), label, font=fonts["small"], fill=INK)
    _draw_bars(draw, rows, (x0, y0, x1, y1), scale, fonts)
    draw.line([(x0, y1), (x1, y1)], fill=INK, width=2)
    draw.line([(x0, y0), (x0, y1)], fill=INK, width=2)
    _centered(draw, ((x0 + x1) / 2, y1 + 42), "DataLoader workers", fonts["axis"], INK)
    axis_label = Image.new("RGB", (200, 24), "white")
    _centered(ImageDraw.Draw(axis_label), (100, 12), "epoch images/s", fonts["axis"], INK)
    image.paste(axis_label.rotate(90, expand=True), (8, (y0 + y1) // 2 - 100))
    _draw_legend(draw, rows, y1 + 70, fonts["small"])
    path = Path(path)
    image.save(path, format="PNG")
    return path


def _draw_bars(draw: ImageDraw.ImageDraw, rows: Sequence[LoaderRow], box: tuple[int, int, int, int], scale: float,
               fonts: dict[str, Any]) -> None:  # fmt: skip
    x0, _, x1, y1 = box
    groups = sorted({r.workers for r in rows})
    loaders = sorted({r.loader for r in rows})
    if not groups:
        return
    group_width = (x1 - x0) / len(groups)
    bar = min(70.0, group_width * 0.8 / max(len(loaders), 1))
    for g, workers in enumerate(groups):
        centre = x0 + group_width * (g + 0.5)
        _centered(draw, (centre, y1 + 16), str(workers), fonts["axis"], INK)
        start = centre - bar * len(loaders) / 2
        for row in (r for r in rows if r.workers == workers):
            left = start + bar * loaders.index(row.loader)
            top = y1 - row.epoch_images_per_s * scale
            draw.rectangle([left + 2, top, left + bar - 2, y1], fill=COLOURS.get(row.loader, INK))
            _centered(draw, (left + bar / 2, top - 10), short(row.epoch_images_per_s), fonts["small"], INK)


def _draw_legend(draw: ImageDraw.ImageDraw, rows: Sequence[LoaderRow], y: int, font: Any) -> None:
    names = {r.loader: r.name for r in rows}
    x = MARGIN["left"]
    for key in sorted(names):
        text = f"({key}) {names[key]}"
        width = 22 + draw.textlength(text, font=font) + 24
        if x + width > WIDTH - MARGIN["right"]:
            x, y = MARGIN["left"], y + 22
        draw.rectangle([x, y, x + 14, y + 14], fill=COLOURS.get(key, INK))
        draw.text((x + 20, y), text, font=font, fill=INK)
        x += int(width)
