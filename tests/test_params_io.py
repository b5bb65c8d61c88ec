"""Parameter files (round trip, refusals) and per-sample keys."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fdsl_app.families import ClassParams, create_family, load_params, save_params
from fdsl_app.families.params_io import _HEADER
from fdsl_app.render.keys import derive, sample_keys


def _params() -> ClassParams:
    return create_family("rcdb", classes=3).generate(11)


def test_round_trip_keeps_arrays_settings_seed_and_version(tmp_path):
    params = _params()
    loaded = load_params(save_params(params, tmp_path / "p"))  # the .npz suffix is added
    assert (tmp_path / "p.npz").is_file() and not list(tmp_path.glob("*.tmp"))
    assert loaded.family == "rcdb" and loaded.seed == 11 and loaded.settings == params.settings
    assert np.array_equal(loaded.arrays["params"], params.arrays["params"]) and loaded.num_classes == 3
    assert loaded.version == params.version and loaded.stats == params.stats


def test_same_seed_same_bytes_of_parameters(tmp_path):
    a = save_params(_params(), tmp_path / "a.npz")
    b = save_params(_params(), tmp_path / "b.npz")
    assert np.array_equal(load_params(a).arrays["params"], load_params(b).arrays["params"])


def _rewrite_header(path, **changes):
    with np.load(path) as data:
        arrays = {name: data[name] for name in data.files}
    header = json.loads(bytes(arrays.pop(_HEADER)).decode()) | changes
    np.savez(path, **{_HEADER: np.frombuffer(json.dumps(header).encode(), np.uint8)}, **arrays)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: p.write_bytes(p.read_bytes()[:100]), "corrupt or truncated"),
        (lambda p: p.write_bytes(b"not a zip file at all"), "corrupt or truncated"),
        (lambda p: np.savez(p, params=np.zeros(3)), "not an fdsl_app parameter file"),
        (lambda p: _rewrite_header(p, format=99), "format 99, newer than this fdsl_app reads"),
        (lambda p: p.unlink(), "does not exist"),
    ],
)
def test_bad_files_are_refused_with_the_reason(tmp_path, damage, message):
    path = save_params(_params(), tmp_path / "p.npz")
    damage(path)
    with pytest.raises(ValueError, match=message):
        load_params(path)


def test_a_file_of_another_family_is_refused(tmp_path):
    path = save_params(_params(), tmp_path / "p.npz")
    with pytest.raises(ValueError, match="is for family 'rcdb', not 'onepfrac'"):
        load_params(path, family="onepfrac")


def test_unwritable_destination(tmp_path):
    with pytest.raises(ValueError, match="folder .* does not exist"):
        save_params(_params(), tmp_path / "missing" / "p.npz")


def test_keys_are_a_pure_function_of_seed_epoch_and_index():
    index = np.arange(10_000)
    keys = sample_keys(3, 1, index)
    assert np.array_equal(keys, sample_keys(3, 1, index)) and len(np.unique(keys)) == len(index)
    assert np.array_equal(keys[[5, 7]], sample_keys(3, 1, np.array([5, 7])))  # independent of the batch
    assert not np.intersect1d(keys, sample_keys(3, 2, index)).size  # another epoch
    assert not np.intersect1d(keys, sample_keys(4, 1, index)).size  # another seed
    assert not np.intersect1d(derive(keys, 0), derive(keys, 1)).size
    bits = np.unpackbits(keys.view(np.uint8)).mean()
    assert 0.49 < bits < 0.51


@pytest.mark.parametrize("seed, epoch, index", [(-1, 0, [0]), (0, -1, [0]), (0, 0, [-3]), (2**64, 0, [0])])
def test_bad_key_arguments(seed, epoch, index):
    with pytest.raises(ValueError, match="must be"):
        sample_keys(seed, epoch, np.array(index))
