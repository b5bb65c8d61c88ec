"""The 1p-frac family: perturbation bounds, fill check, determinism, parameter files, rendering, settings errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fdsl_app.families import ClassParams, create_family, list_families, load_params, save_params
from fdsl_app.families import onepfrac as onepfrac_module
from fdsl_app.families.onepfrac import OnePFrac, measure_fill
from fdsl_app.render.keys import sample_keys

CLASSES = 8
# Small render settings keep the tests fast; they are render settings, so the class parameters are unaffected.
SMALL = {"classes": CLASSES, "image_size": 64, "n_points": 5000}


@pytest.fixture(scope="module")
def family() -> OnePFrac:
    fam = create_family("onepfrac", **SMALL)
    assert isinstance(fam, OnePFrac)
    return fam


@pytest.fixture(scope="module")
def params(family: OnePFrac) -> ClassParams:
    return family.generate(3)


def test_registered_with_defaults() -> None:
    assert "onepfrac" in list_families()
    fam = create_family("onepfrac")
    assert (fam.num_classes, fam.instances_per_class, fam.sample_count()) == (1000, 1, 1000)
    assert fam.settings.perturbation == "multiplicative"
    assert fam.image_shape == (512, 512)


def test_arrays(params: ClassParams) -> None:
    a = params.arrays
    assert a["params"].shape == (CLASSES, 2, 7) and a["params"].dtype == np.float64
    assert a["n_maps"].tolist() == [2] * CLASSES
    assert a["base"].shape == (2, 7)
    assert a["fill"].shape == a["redraws"].shape == (CLASSES,)
    assert params.num_classes == CLASSES
    assert params.stats["redraws"] == int(a["redraws"].sum())
    assert 3.4 <= params.stats["base_sigma"] <= 3.6
    base_svs = np.linalg.svd(a["base"][:, :4].reshape(2, 2, 2), compute_uv=False)
    assert abs((base_svs[:, 0] + 2 * base_svs[:, 1]).sum() - params.stats["base_sigma"]) < 1e-9


def test_multiplicative_perturbation_bounds(params: ClassParams) -> None:
    base, classes = params.arrays["base"], params.arrays["params"]
    ratio = classes[:, :, :6] / base[:, :6]
    assert (ratio >= 0.9 - 1e-12).all() and (ratio <= 1.1 + 1e-12).all()
    assert not np.allclose(ratio, 1.0)  # actually perturbed
    np.testing.assert_array_equal(classes[:, :, 6], np.broadcast_to(base[:, 6], (CLASSES, 2)))


def test_additive_perturbation_bounds() -> None:
    fam = create_family("onepfrac", perturbation="additive", delta=0.2, **SMALL)
    p = fam.generate(3)
    base, classes = p.arrays["base"], p.arrays["params"]
    diff = classes[:, :, :6] - base[:, :6]
    assert (np.abs(diff) <= 0.1 + 1e-12).all() and np.abs(diff).max() > 0.01
    np.testing.assert_array_equal(classes[:, :, 6], np.broadcast_to(base[:, 6], (CLASSES, 2)))


def test_every_class_passes_the_fill_check(family: OnePFrac, params: ClassParams) -> None:
    fill = params.arrays["fill"]
    assert (fill > family.settings.fill_threshold).all()
    np.testing.assert_array_equal(measure_fill(params.arrays["params"]), fill)
    assert params.stats["base_fill"] > family.settings.fill_threshold


def test_same_seed_same_params_other_seed_other_base(family: OnePFrac, params: ClassParams) -> None:
    again = family.generate(3)
    for name, array in params.arrays.items():
        np.testing.assert_array_equal(again.arrays[name], array)
    assert not np.allclose(family.generate(4).arrays["base"], params.arrays["base"])


def test_class_is_the_same_whatever_classes(params: ClassParams) -> None:
    fewer = create_family("onepfrac", **{**SMALL, "classes": 3}).generate(3)
    np.testing.assert_array_equal(fewer.arrays["params"], params.arrays["params"][:3])


def test_params_round_trip(tmp_path: Path, family: OnePFrac, params: ClassParams) -> None:
    path = save_params(params, tmp_path / "onepfrac")
    loaded = load_params(path, "onepfrac")
    assert (loaded.family, loaded.seed, loaded.settings, loaded.stats) == (
        params.family, params.seed, params.settings, params.stats,
    )  # fmt: skip
    for name, array in params.arrays.items():
        np.testing.assert_array_equal(loaded.arrays[name], array)
    family.check_params(loaded)
    # Render settings may differ; generation settings may not.
    create_family("onepfrac", **{**SMALL, "image_size": 32, "mode": "fast"}).check_params(loaded)
    with pytest.raises(ValueError, match="delta"):
        create_family("onepfrac", **{**SMALL, "delta": 0.2}).check_params(loaded)


@pytest.mark.parametrize("mode", ["reference", "fast"])
def test_render_is_deterministic_per_key(mode: str, params: ClassParams) -> None:
    fam = create_family("onepfrac", **{**SMALL, "mode": mode})
    classes = np.arange(CLASSES, dtype=np.int64)
    instances = np.zeros(CLASSES, np.int64)
    keys = sample_keys(1, 0, classes)
    first = fam.render(params, classes, instances, keys, fam.new_batch(CLASSES), threads=1)
    assert first.shape == (CLASSES, 64, 64) and first.dtype == np.uint8
    assert (first > 0).any(axis=(1, 2)).all()
    again = fam.render(params, classes, instances, keys, fam.new_batch(CLASSES), threads=2)
    np.testing.assert_array_equal(first, again)
    other_epoch = fam.render(params, classes, instances, sample_keys(1, 1, classes), fam.new_batch(CLASSES))
    assert not np.array_equal(first, other_epoch)  # patch masks (and fast-mode chains) redrawn every epoch


def test_render_color(params: ClassParams) -> None:
    fam = create_family("onepfrac", **{**SMALL, "color": True, "mode": "reference"})
    classes = np.array([0, 5], np.int64)
    out = fam.render(params, classes, np.zeros(2, np.int64), sample_keys(0, 0, classes), fam.new_batch(2))
    assert out.shape == (2, 64, 64, 3)


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"classes": 1}, "classes"),
        ({"delta": 0.0}, "delta"),
        ({"delta": -0.1}, "delta"),
        ({"delta": 1.5}, "delta"),
        ({"delta": -0.1, "perturbation": "additive"}, "delta"),
        ({"sigma": 100.0, "n_maps": 2}, "sigma=100.0.*N=2"),
        ({"sigma": 0.05}, "sigma"),
        ({"sigma_window": -0.1}, "sigma_window"),
        ({"perturbation": "x"}, "perturbation"),
        ({"fill_threshold": 1.5}, "fill_threshold"),
        ({"fill_threshold": -0.1}, "fill_threshold"),
        ({"n_maps": 1}, "n_maps"),
        ({"n_maps": 9}, "n_maps"),
        ({"max_redraws": -1}, "max_redraws"),
        ({"image_size": 12}, "image_size"),
        ({"mode": "slow"}, "mode"),
        ({"raster": "blob"}, "raster"),
    ],
)
def test_bad_setting_raises_naming_it(settings: dict, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        create_family("onepfrac", **settings)


def test_bad_seed_raises(family: OnePFrac) -> None:
    with pytest.raises(ValueError, match="seed"):
        family.generate(-1)


def test_unreachable_fill_fails_on_the_base() -> None:
    fam = create_family("onepfrac", classes=2, fill_threshold=0.99, max_redraws=2)
    with pytest.raises(RuntimeError, match="base system.*fill_threshold"):
        fam.generate(0)


def test_class_failing_fill_names_the_class(monkeypatch: pytest.MonkeyPatch) -> None:
    # The base passes (a batch of one) but every class fails: the error must say which class and what to change.
    def fake_fill(params: np.ndarray) -> np.ndarray:
        return np.full(len(params), 0.5 if len(params) == 1 else 0.0)

    monkeypatch.setattr(onepfrac_module, "measure_fill", fake_fill)
    fam = create_family("onepfrac", classes=4, max_redraws=3)
    with pytest.raises(RuntimeError, match=r"class 0 \(and 3 more\).*max_redraws=3"):
        fam.generate(0)


# --- The draws against the released generator's facts (SUPER-TADORY/1p-frac@413d318; docs/datasets.md) -----------


def ks_uniform(values: np.ndarray, lo: float, hi: float) -> float:
    """Kolmogorov-Smirnov distance of `values` from U(lo, hi)."""
    u = np.sort((values - lo) / (hi - lo))
    n = len(u)
    return float(max((np.arange(1, n + 1) / n - u).max(), (u - np.arange(n) / n).max()))


def test_base_systems_follow_the_released_sampler() -> None:
    # set_baseparams: sigma ~ U(3.5 - 0.1, 3.5 + 0.1); A = U diag(s1, s2) V with 0 <= s2 <= s1 <= 1 and
    # sum(s1 + 2 s2) = sigma; translations U(-1, 1); p = |det A| normalised.
    fam = create_family("onepfrac", classes=2)
    draws = [fam._base_system(seed) for seed in range(40)]
    sigmas = np.array([sigma for _, sigma, _, _ in draws])
    assert ((sigmas >= 3.4) & (sigmas <= 3.6)).all() and sigmas.min() < 3.43 and sigmas.max() > 3.57
    for base, sigma, fill, _ in draws:
        svs = np.linalg.svd(base[:, :4].reshape(2, 2, 2), compute_uv=False)
        assert (svs <= 1 + 1e-12).all() and abs((svs[:, 0] + 2 * svs[:, 1]).sum() - sigma) < 1e-9
        assert (np.abs(base[:, 4:6]) <= 1).all()
        det = np.abs(np.linalg.det(base[:, :4].reshape(2, 2, 2)))
        np.testing.assert_allclose(base[:, 6], det / det.sum(), rtol=1e-12)
        assert fill > fam.settings.fill_threshold  # ours only: the released code never checks the base


@pytest.mark.parametrize(
    ("perturbation", "delta"), [("multiplicative", 0.1), ("multiplicative", 0.4), ("additive", 0.2)]
)
def test_perturbations_are_independent_uniforms_bounded_by_delta(perturbation: str, delta: float) -> None:
    # Released: a..f of every map times random.uniform(1 - Delta, 1 + Delta), 6 independent draws per map.
    # Paper: a..f plus U(-Delta/2, Delta/2).
    fam = create_family("onepfrac", classes=2, perturbation=perturbation, delta=delta)
    base, _, _, _ = fam._base_system(0)
    rng = np.random.default_rng(7)
    classes = np.stack([fam._perturb(base, rng) for _ in range(2000)])
    if perturbation == "multiplicative":
        change, lo, hi = classes[:, :, :6] / base[:, :6], 1 - delta, 1 + delta
    else:
        change, lo, hi = classes[:, :, :6] - base[:, :6], -delta / 2, delta / 2
    assert ((change >= lo) & (change <= hi)).all()
    flat = change.reshape(len(classes), -1)
    # 24,000 draws: the 0.1 % critical KS distance is 1.95 / sqrt(n) = 0.0126.
    assert ks_uniform(flat.ravel(), lo, hi) < 1.95 / np.sqrt(flat.size)
    corr = np.corrcoef(flat, rowvar=False)
    assert np.abs(corr[~np.eye(len(corr), dtype=bool)]).max() < 0.1  # 12 parameters drawn independently
    np.testing.assert_array_equal(classes[:, :, 6], np.broadcast_to(base[:, 6], classes[:, :, 6].shape))


def test_fill_is_the_released_pixel_share_at_512_px() -> None:
    # Released draw_patch: 100k points from (0, 0), pad 6, 512 x 512, random 3x3 masks in 1..511, fill = share of
    # pixel values > 1. The numpy restatement with such masks agrees with measure_fill (fixed masks) to mask noise.
    from fdsl_app.render import reference_numpy as ref

    params = create_family("onepfrac", classes=2).generate(0).arrays["params"]
    masks = np.random.default_rng(0).integers(1, 512, 100_000)
    for system, ours in zip(params, measure_fill(params), strict=True):
        cols, rows = ref.pixels(*ref.chain(system, 100_000), 512, 512, pad=6)
        image = ref.draw(cols, rows, 512, 512, raster="patch", masks=masks[: len(cols)])
        assert abs(float((image > 1).mean()) - ours) < 2e-3


def test_fill_rule_redraws_exactly_the_classes_at_or_below_the_threshold() -> None:
    # With threshold 0 no class is redrawn: that gives every class's first draw and its fill. At a threshold equal
    # to one of those fills (below the base's), exactly the classes at or below it are redrawn, until above it;
    # the others keep their first draw.
    first = create_family("onepfrac", classes=12, fill_threshold=0.0).generate(5)
    fill0, base_fill = first.arrays["fill"], first.stats["base_fill"]
    below_base = np.sort(fill0[fill0 < base_fill])
    assert len(below_base) >= 3, "seed 5 must give classes sparser than its base; pick another seed"
    threshold = float(below_base[len(below_base) // 2])
    again = create_family("onepfrac", classes=12, fill_threshold=threshold).generate(5)
    np.testing.assert_array_equal(again.arrays["base"], first.arrays["base"])
    failed = fill0 <= threshold
    assert failed.sum() >= 2 and (fill0 == threshold).any()
    assert (again.arrays["redraws"][failed] >= 1).all() and (again.arrays["redraws"][~failed] == 0).all()
    assert (again.arrays["fill"] > threshold).all()
    np.testing.assert_array_equal(again.arrays["params"][~failed], first.arrays["params"][~failed])
    assert not np.isin(again.arrays["params"][failed], first.arrays["params"][failed]).all()
