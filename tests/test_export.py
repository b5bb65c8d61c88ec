"""Export to PNG class folders and WebDataset shards: contents, determinism, resume, refusal to mix settings."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest
from PIL import Image

from fdsl_app.data.export import export_dataset
from fdsl_app.families import create_family
from fdsl_app.render.keys import sample_keys


@pytest.fixture(scope="module")
def rcdb():
    family = create_family("rcdb", classes=3, instances=5, image_size=40)
    return family, family.generate(0)


def _expected(family, params, index):
    ipc = family.instances_per_class
    index = np.asarray(index)
    return family.render(params, index // ipc, index % ipc, sample_keys(0, 0, index), family.new_batch(len(index)))


def test_png_export_writes_class_folders_with_the_rendered_images(tmp_path, rcdb):
    family, params = rcdb
    result = export_dataset(family, params, tmp_path, fmt="png", progress=False, workers=2)
    assert (result.written, result.skipped, result.files) == (15, 0, 15)
    expected = _expected(family, params, range(15))
    for i in range(15):
        path = tmp_path / f"{i // 5:05d}" / f"{i // 5:05d}_{i % 5:04d}.png"
        assert np.array_equal(np.array(Image.open(path)), expected[i]), path


def test_png_export_resumes_and_redoes_only_missing_files(tmp_path, rcdb):
    family, params = rcdb
    export_dataset(family, params, tmp_path, fmt="png", progress=False)
    victim = tmp_path / "00001" / "00001_0003.png"
    victim.unlink()
    (tmp_path / "00002" / "00002_0000.png.tmp123").write_bytes(b"cut off")  # a crash mid-write
    again = export_dataset(family, params, tmp_path, fmt="png", progress=False)
    assert again.written == 1 and again.skipped == 14
    assert np.array_equal(np.array(Image.open(victim)), _expected(family, params, [8])[0])


def test_webdataset_shards_hold_image_and_class_per_sample(tmp_path, rcdb):
    family, params = rcdb
    result = export_dataset(family, params, tmp_path, fmt="webdataset", shard_size=4, progress=False, workers=2)
    shards = sorted(tmp_path.glob("shard-*.tar"))
    assert result.files == len(shards) == 4
    expected = _expected(family, params, range(15))
    seen = 0
    for shard in shards:
        with tarfile.open(shard) as tar:
            names = tar.getnames()
            for name in names[::2]:
                stem = name[: -len(".png")]
                cls, inst = (int(v) for v in stem.split("_"))
                image = np.array(Image.open(io.BytesIO(tar.extractfile(name).read())))
                assert np.array_equal(image, expected[cls * 5 + inst])
                assert tar.extractfile(stem + ".cls").read() == str(cls).encode()
                seen += 1
    assert seen == 15


def test_a_folder_of_other_settings_is_refused(tmp_path, rcdb):
    family, params = rcdb
    export_dataset(family, params, tmp_path, fmt="png", limit=5, progress=False)
    with pytest.raises(ValueError, match="already holds an export with other seed"):
        export_dataset(family, params, tmp_path, fmt="png", seed=1, limit=5, progress=False)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(fmt="jpeg"), "format must be one of png, webdataset"),
        (dict(limit=0), "limit must be in \\[1, 15\\]"),
        (dict(limit=16), "limit must be in \\[1, 15\\]"),
        (dict(fmt="webdataset", shard_size=0), "shard_size must be >= 1"),
    ],
)
def test_bad_export_arguments(tmp_path, rcdb, kwargs, match):
    family, params = rcdb
    with pytest.raises(ValueError, match=match):
        export_dataset(family, params, tmp_path, progress=False, **kwargs)


def test_unwritable_output_folder(tmp_path, rcdb):
    family, params = rcdb
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ValueError, match="cannot write to output folder"):
        export_dataset(family, params, blocker / "out", progress=False)
