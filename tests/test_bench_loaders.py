"""`fdsl_app bench loaders` end to end at a tiny size (no timing asserted), the shared-image claim behind its
comparison, and its flag errors."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from fdsl_app import cli
from fdsl_app.bench import pipelines as bp
from fdsl_app.bench import records
from fdsl_app.bench import report as bench_report

TINY = ["--samples", "16", "--size", "32", "--batch-size", "8", "--points", "1000"]
ROW_FIELDS = {
    "loader", "name", "workers", "images", "step_images_per_s", "step_images_per_s_std", "epoch_images_per_s",
    "epoch_seconds", "first_batch_s", "ratio_to_a", "main_threads", "step_seconds", "step_images", "images_per_cpu_s",
}  # fmt: skip


def _tiny_data(tmp_path, webdataset: bool = False) -> bp.BenchData:
    family = bp.make_family("onepfrac", {"image_size": 32, "n_points": 1000}, 8)
    return bp.prepare_data(family, tmp_path / "data", seed=3, formats=["b"] if webdataset else [], shard_size=3)


def test_end_to_end(tmp_path, capsys):
    path, chart = tmp_path / "bench.json", tmp_path / "bench.png"
    argv = ["bench", "loaders", *TINY, "--workers", "0,1", "--json", str(path), "--chart", str(chart)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "**Machine:**" in out and "| loader | workers |" in out and "Mixup/CutMix" in out
    missing = {s.loader for s in records.skipped_loaders(list(records.LOADERS))}
    expected = [key for key in records.LOADERS if key not in missing]
    assert {"a", "c", "d"} <= set(expected)
    for key in expected:
        assert f"| ({key}) {records.LOADERS[key]} | 0 |" in out and f"| ({key}) " in out
    assert "(c)/(a) at 1 workers:" in out and "(d)/(a) at 0 workers:" in out and "(g)/(a) at 1 workers:" in out
    assert "node budget: 8 GPUs x 20,000 img/s over 96 cores = 1,667 img/s per core" in out
    assert re.search(r"\(g\) attractor cache draw \+ DeviceAugment: [\d,]+ img/s per core at [01] workers = "
                     r"[\d.]+x the budget", out)  # fmt: skip

    doc = json.loads(path.read_text())
    assert doc["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert doc["benchmark"] == "loaders" and {"cpu_model", "cores", "versions"} <= set(doc["machine"])
    assert doc["family"]["name"] == "onepfrac" and doc["family"]["settings"]["classes"] == 16
    assert [(r["loader"], r["workers"]) for r in doc["rows"]] == [(k, w) for w in (0, 1) for k in expected]
    for row in doc["rows"]:
        assert set(row) == ROW_FIELDS and row["images"] == 16 and sum(row["step_images"]) == 8
        assert row["epoch_images_per_s"] > 0 and row["step_images_per_s"] > 0 and row["first_batch_s"] > 0
        assert row["images_per_cpu_s"] > 0
        assert (row["ratio_to_a"] is None) == (row["loader"] == "a")
    skipped = {s["loader"]: s["reason"] for s in doc["skipped"]}
    assert set(skipped) == missing and all(reason.startswith("skipped:") for reason in skipped.values())

    with Image.open(chart) as image:
        image.verify()
    with Image.open(chart) as image:
        assert image.format == "PNG" and image.size == (bench_report.WIDTH, bench_report.HEIGHT)


def test_missing_webdataset_is_a_skipped_record(tmp_path, capsys, monkeypatch):
    real = records.installed
    monkeypatch.setattr(records, "installed", lambda module: module != "webdataset" and real(module))
    path = tmp_path / "bench.json"
    argv = ["bench", "loaders", *TINY, "--loaders", "a,b", "--workers", "0", "--json", str(path)]
    assert cli.main([*argv, "--chart", str(tmp_path / "c.png")]) == 0
    out = capsys.readouterr().out
    assert "(b) WebDataset tar + timm: skipped: webdataset not installed (pip install 'fdsl_app[bench]'" in out
    doc = json.loads(path.read_text())
    assert [r["loader"] for r in doc["rows"]] == ["a"] and [s["loader"] for s in doc["skipped"]] == ["b"]


def test_png_folders_hold_exactly_what_the_renderers_draw(tmp_path):
    data = _tiny_data(tmp_path)
    files = bp.imagefolder_dataset(data)
    rendered = bp.RenderedDataset(data)
    spec = bp.PipelineSpec(size=32, batch_size=4, seed=3)
    module_dataset = bp.build_loader("d", data, spec, 0)[0].dataset  # the FormulaDataset of the (d) DataModule
    assert len(files) == len(rendered) == len(module_dataset) == 8
    for i in (0, 3, 7):
        (png, png_label), (pil, label) = files[i], rendered[i]
        assert png.mode == pil.mode == "RGB" and png_label == label == i
        assert np.array_equal(np.asarray(png), np.asarray(pil))
        assert np.asarray(png).any()  # not a blank render
        # (d) is the fast path: the same class drawn by the fast chains, cropped in formula space at the training
        # size, so the same label but not the same pixels.
        image, module_label = module_dataset[i]
        assert module_label == i and image.shape == (1, 32, 32) and image.numpy().any()


def test_webdataset_loader_reads_the_same_images(tmp_path):
    pytest.importorskip("webdataset")
    data = _tiny_data(tmp_path, webdataset=True)
    rendered = bp.RenderedDataset(data)
    assert len(data.shards()) == 3  # 8 samples in shards of 3
    spec = bp.PipelineSpec(size=32, batch_size=4, seed=3)
    loader = bp._webdataset_loader(data, spec, np.array, 0)  # (b) with the augmentation left out
    labels = []
    for images, batch_labels in loader:
        for image, label in zip(images.numpy(), batch_labels.tolist(), strict=True):
            assert np.array_equal(image, np.asarray(rendered[label][0]))
            labels.append(label)
    assert sorted(labels) == list(range(8))


def test_reused_data_folder_with_other_settings_is_refused(tmp_path, capsys):
    data_dir = tmp_path / "d"
    argv = ["bench", "loaders", *TINY, "--loaders", "a", "--workers", "0", "--data", str(data_dir)]
    outputs = ["--json", str(tmp_path / "j.json"), "--chart", str(tmp_path / "c.png")]
    assert cli.main([*argv, *outputs]) == 0
    assert (data_dir / "params.npz").is_file() and (data_dir / "png").is_dir()
    assert cli.main([*argv, *outputs]) == 0 and "data: 0 images written" in capsys.readouterr().out
    assert cli.main([*argv, "--seed", "5", *outputs]) == 2
    assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--loaders", "a,z"], "--loaders: choose from a,b,c,d,e,ej,f"),
        (["--workers", "0,-1"], "--workers: must be in 0..256"),
        (["--samples", "0"], "--samples: must be >= 2"),
        (["--batch-size", "x"], "--batch-size: expected an integer"),
        (["--set", "novalue"], "--set: expected key=value"),
        (["--json", "/no/such/dir/b.json"], "--json folder /no/such/dir does not exist"),
        (["--family", "fractaldb", "--samples", "30"], "must be a multiple of fractaldb's 1000 instances per class"),
        (["--set", "bogus=1"], "onepfrac has no setting 'bogus'"),
        (["--family", "nope"], "unknown family 'nope'"),
        pytest.param(
            ["--device", "cuda"],
            "torch sees no CUDA GPU",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is there"),
        ),
    ],
)
def test_bad_flags_exit_2(tmp_path, capsys, flags, message):
    argv = ["bench", "loaders", *TINY, "--json", str(tmp_path / "j.json"), "--chart", str(tmp_path / "c.png")]
    assert cli.main([*argv, *flags]) == 2
    assert message in capsys.readouterr().err


def test_step_stats_and_ticks():
    rate, spread = records.step_stats([0.1, 0.1, 0.2], [10, 10, 20])
    assert rate == pytest.approx(100.0) and spread == pytest.approx(0.0)
    rate, spread = records.step_stats([0.1, 0.3], [10, 10])
    assert rate == pytest.approx(50.0) and spread > 0
    assert records.step_stats([], []) == (0.0, 0.0)
    assert bench_report.nice_ticks(950) == [0, 200, 400, 600, 800, 1000]
    assert bench_report.short(1234) == "1.2k" and bench_report.short(56.0) == "56"


def test_deit_transform_survives_zero_bit_posterize():
    from timm.data import auto_augment

    transform = bp.deit_transform(bp.PipelineSpec(size=32, batch_size=4))
    (rand_augment,) = [t for t in transform.transforms if isinstance(t, auto_augment.RandAugment)]
    (posterize,) = [op for op in rand_augment.ops if op.name == "PosterizeIncreasing"]
    posterize.prob, posterize.magnitude, posterize.magnitude_std = 1.0, 10.0, 0.0  # level 10: keep 0 bits
    image = Image.new("RGB", (8, 8), (200, 100, 50))
    assert posterize(image).getextrema() == ((0, 0), (0, 0), (0, 0))  # black, as timm meant; Pillow >= 11 raises
