"""Anderson & Farrell's sigma-factor sampler and FractalDB's raw sampler (fdsl_app.families.sampling)."""

from __future__ import annotations

import numpy as np
import pytest

from fdsl_app.families import sampling

METHODS = ("sequential", "rejection")


def _check_svs(svs: np.ndarray, n_maps: int, sigma: float) -> None:
    assert svs.shape == (n_maps, 2)
    s1, s2 = svs[:, 0], svs[:, 1]
    assert (s2 >= 0).all() and (s2 <= s1).all() and (s1 <= 1).all(), svs
    assert abs((s1 + 2 * s2).sum() - sigma) < 1e-9


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("n_maps", [2, 3, 4])
def test_singular_values_meet_sigma_and_bounds(n_maps: int, method: str) -> None:
    rng = np.random.default_rng(n_maps)
    lo, hi = sampling.default_sigma_range(n_maps)
    for _ in range(2000):
        sigma = rng.uniform(lo, hi)
        _check_svs(sampling.sample_singular_values(rng, n_maps, sigma, method), n_maps, sigma)


@pytest.mark.parametrize("n_maps", [1, 2, 3, 4, 7])
def test_sequential_covers_whole_sigma_range(n_maps: int) -> None:
    # The sequential sampler never rejects, so it must work from almost 0 up to 3N inclusive.
    rng = np.random.default_rng(10 + n_maps)
    sigmas = np.concatenate([rng.uniform(1e-6, 3 * n_maps, 2000), [1e-9, 3 * n_maps - 1e-9, 3 * n_maps]])
    for sigma in sigmas:
        _check_svs(sampling.sample_singular_values(rng, n_maps, float(sigma)), n_maps, float(sigma))
    np.testing.assert_allclose(sampling.sample_singular_values(rng, n_maps, 3.0 * n_maps), 1.0)


def test_default_sigma_range() -> None:
    assert sampling.default_sigma_range(2) == (3.5, 4.0)
    assert sampling.default_sigma_range(4) == (4.5, 5.0)


@pytest.mark.parametrize("sigma", [0.0, -1.0, 6.5, 100.0, float("nan"), float("inf")])
def test_sigma_out_of_range_raises(sigma: float) -> None:
    rng = np.random.default_rng(0)
    for method in METHODS:
        with pytest.raises(ValueError, match=r"sigma.*N=2.*\(0, 6\]"):
            sampling.sample_singular_values(rng, 2, sigma, method)
    with pytest.raises(ValueError, match="sigma"):
        sampling.sample_system(rng, 2, sigma)


def test_rejection_gives_up_near_the_ends() -> None:
    with pytest.raises(ValueError, match="1000 tries.*sequential"):
        sampling.sample_singular_values(np.random.default_rng(0), 2, 5.99, "rejection")


def test_bad_method_and_n_maps_raise() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="method"):
        sampling.sample_singular_values(rng, 2, 3.5, "gibbs")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n_maps"):
        sampling.sample_singular_values(rng, 0, 1.0)


@pytest.mark.parametrize("method", METHODS)
def test_system_has_the_sampled_singular_values(method: str) -> None:
    n_maps, sigma = 3, 4.2
    dets = []
    for seed in range(200):
        svs = sampling.sample_singular_values(np.random.default_rng(seed), n_maps, sigma, method)
        system = sampling.sample_system(np.random.default_rng(seed), n_maps, sigma, translation=0.5, method=method)
        assert system.shape == (n_maps, 7)
        linear = system[:, :4].reshape(n_maps, 2, 2)
        np.testing.assert_allclose(np.linalg.svd(linear, compute_uv=False), svs, atol=1e-12)
        assert np.abs(system[:, 4:6]).max() <= 0.5
        det = np.linalg.det(linear)
        np.testing.assert_allclose(system[:, 6], np.abs(det) / np.abs(det).sum(), rtol=1e-12)
        assert abs(system[:, 6].sum() - 1) < 1e-12
        dets.append(det)
    # Random reflections: both orientations occur.
    dets = np.concatenate(dets)
    assert (dets > 0).mean() > 0.3 and (dets < 0).mean() > 0.3


def test_system_is_deterministic_per_generator() -> None:
    a = sampling.sample_system(np.random.default_rng(5), 4, 4.7)
    b = sampling.sample_system(np.random.default_rng(5), 4, 4.7)
    c = sampling.sample_system(np.random.default_rng(6), 4, 4.7)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_negative_translation_raises() -> None:
    with pytest.raises(ValueError, match="translation"):
        sampling.sample_system(np.random.default_rng(0), 2, 3.5, translation=-1.0)


def test_fractaldb_candidates_follow_the_reference_distribution() -> None:
    params, n_maps = sampling.fractaldb_candidates(np.random.default_rng(3), 600, param_range=0.7)
    assert params.shape == (600, 7, 7) and n_maps.dtype == np.int32 and set(n_maps) == set(range(2, 8))
    for system, n in zip(params, n_maps, strict=True):
        assert not system[n:].any() and np.abs(system[:n, :6]).max() <= 0.7
        det = np.abs(system[:n, 0] * system[:n, 3] - system[:n, 1] * system[:n, 2])
        np.testing.assert_allclose(system[:n, 6], det / det.sum())
    coefs = params[..., :6][np.arange(7) < n_maps[:, None]]
    assert abs(coefs.mean()) < 0.02 and abs(coefs.std() - 0.7 / np.sqrt(3)) < 0.01  # U(-0.7, 0.7)


def test_fractaldb_candidates_are_a_pure_function_of_the_generator() -> None:
    a = sampling.fractaldb_candidates(np.random.default_rng(11), 5, min_maps=3, max_maps=4)
    b = sampling.fractaldb_candidates(np.random.default_rng(11), 5, min_maps=3, max_maps=4)
    c = sampling.fractaldb_candidates(np.random.default_rng(12), 5, min_maps=3, max_maps=4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True)) and not np.array_equal(a[0], c[0])


@pytest.mark.parametrize(("kwargs", "match"), [({"param_range": 0.0}, "param_range"), ({"min_maps": 0}, "n_maps"),
                                               ({"min_maps": 4, "max_maps": 3}, "max_maps")])  # fmt: skip
def test_fractaldb_candidates_refuse_bad_ranges(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        sampling.fractaldb_candidates(np.random.default_rng(0), 2, **kwargs)


def test_padded_all_singular_systems_get_uniform_probabilities_over_their_maps() -> None:
    systems = np.zeros((2, 4, 7))
    systems[1, :2, :4] = [[1, 0, 0, 2], [0, 1, 1, 0]]  # |det| 2 and 1
    p = sampling.det_probabilities(systems, n_maps=np.array([3, 2]))
    np.testing.assert_allclose(p, [[1 / 3, 1 / 3, 1 / 3, 0], [2 / 3, 1 / 3, 0, 0]])


def test_all_singular_maps_get_uniform_probabilities() -> None:
    np.testing.assert_array_equal(sampling.det_probabilities(np.zeros((4, 7))), np.full(4, 0.25))
