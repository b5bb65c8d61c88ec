"""Compare the `onepfrac` family's draws with the released 1p-frac generator (SUPER-TADORY/1p-frac).

    python scripts/compare_onepfrac_released.py PATH/TO/1p-frac [--draws 4000] [--fill-systems 12]

PATH/TO/1p-frac is a checkout of https://github.com/SUPER-TADORY/1p-frac (read at 413d318). The script imports
its sampler (``1p-frac_generater/src/utils.py``: ``sample_system``), its ``calc_p`` and its renderer
(``ifs_function``) and compares, over independent draws of each side:

1. the base system (N maps, sigma factor U(sigma - 0.1, sigma + 0.1)): sigma, singular values per map, the
   matrix entries (rotations and reflections), translations, p, the sign of det;
2. the per-class perturbation: the factors a class applies to a..f (the released code draws them with Python's
   ``random.uniform(1 - Delta, 1 + Delta)`` and applies them through ``ifs_function.set_param``), and that p stays
   the base system's;
3. the fill check: the released ``draw_patch`` fill (share of pixel values > 1 at 512 px, 100k points, pad 6,
   random masks) against ours (:func:`fdsl_app.families.onepfrac.measure_fill`, fixed masks) on the same systems,
   and whether the 5 % rule takes the same decision;
4. how often the rule fires: the share of perturbed classes that fail it, per released base system.

Two-sample Kolmogorov-Smirnov statistics D (and their asymptotic p-values) and quantiles are printed as a table.
The project never imports the released code: this script is a one-off check, its figures are in docs/datasets.md.
The released ``utils.py`` imports OpenCV for an unused colour helper; when cv2 is missing a stub stands in.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import random
import sys
import time
import types
from pathlib import Path

import numpy as np

from fdsl_app.families import create_family, sampling
from fdsl_app.families.onepfrac import FILL_POINTS, FILL_SIZE, measure_fill

PAD = 6


def import_released(checkout: Path) -> tuple[types.ModuleType, types.ModuleType, type]:
    """The released ``utils``, ``render_from_oneparam_mp`` and ``ifs_function`` class, from `checkout`."""
    src = checkout / "1p-frac_generater" / "src"
    if not (src / "utils.py").is_file():
        raise SystemExit(f"{checkout} is not a checkout of SUPER-TADORY/1p-frac: no 1p-frac_generater/src/utils.py")
    try:
        import cv2  # noqa: F401
    except ImportError:  # utils.py imports cvtColor and COLOR_HSV2RGB for a helper the sampler never calls
        sys.modules["cv2"] = types.SimpleNamespace(cvtColor=None, COLOR_HSV2RGB=None)
    sys.path.insert(0, str(src))
    import ifs_function
    import render_from_oneparam_mp
    import utils

    return utils, render_from_oneparam_mp, ifs_function.ifs_function


def ks(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic D and its asymptotic p-value (Numerical Recipes' correction)."""
    x, y = np.sort(x), np.sort(y)
    grid = np.concatenate([x, y])
    d = float(np.abs(np.searchsorted(x, grid, "right") / len(x) - np.searchsorted(y, grid, "right") / len(y)).max())
    en = math.sqrt(len(x) * len(y) / (len(x) + len(y)))
    lam = (en + 0.12 + 0.11 / en) * d
    p = 2 * sum((-1) ** (k - 1) * math.exp(-2 * k * k * lam * lam) for k in range(1, 101)) if lam > 0 else 1.0
    return d, min(max(p, 0.0), 1.0)


def row(name: str, released: np.ndarray, ours: np.ndarray) -> str:
    d, p = ks(released, ours)
    q = lambda v: " ".join(f"{x:7.3f}" for x in np.quantile(v, [0.05, 0.5, 0.95]))  # noqa: E731
    return f"| {name:<22} | {q(released)} | {q(ours)} | {d:.4f} | {p:.3f} |"


def table_header(title: str) -> None:
    print(f"\n{title}\n")
    print("| quantity               | released q05 q50 q95    | ours q05 q50 q95        | KS D   | p     |")
    print("|---|---|---|---|---|")


def features(systems: np.ndarray, sigmas: np.ndarray) -> dict[str, np.ndarray]:
    """What the comparison looks at, from ``(K, N, 7)`` systems and the sigma factors drawn for them."""
    linear = systems[:, :, :4].reshape(len(systems), -1, 2, 2)
    svs = np.linalg.svd(linear, compute_uv=False)  # (K, N, 2), s1 >= s2
    out = {"sigma drawn": sigmas, "sigma from SVD": (svs[..., 0] + 2 * svs[..., 1]).sum(1)}
    for j in range(systems.shape[1]):
        out[f"map {j}: s1"] = svs[:, j, 0]
        out[f"map {j}: s2"] = svs[:, j, 1]
        for k, name in enumerate("abcdef"):
            out[f"map {j}: {name}"] = systems[:, j, k]
        out[f"map {j}: p"] = systems[:, j, 6]
        out[f"map {j}: share det > 0"] = (np.linalg.det(linear[:, j]) > 0).astype(float)
    return out


def released_bases(utils, rfo, n_maps: int, sigma: float, draws: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`draws` base systems as the released ``set_baseparams`` draws them (margin 0.1), from one seeded rng
    (the released code passes none, so numpy seeds a fresh ``default_rng()`` from the OS)."""
    rng = np.random.default_rng(seed)
    systems, sigmas = [], []
    with contextlib.redirect_stdout(io.StringIO()):  # sample_system prints every sigma it draws
        for _ in range(draws):
            m, a = utils.sample_system(n_maps, beta=[sigma - 0.1, sigma + 0.1], rng=rng)
            systems.append(rfo.calc_p(m))
            sigmas.append(a)
    return np.array(systems), np.array(sigmas)


def our_bases(n_maps: int, sigma: float, window: float, draws: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`draws` base systems as ``OnePFrac._base_system`` draws them, before its fill check."""
    rng = np.random.default_rng(seed)
    sigmas = rng.uniform(sigma - window, sigma + window, draws)
    return np.array([sampling.sample_system(rng, n_maps, s) for s in sigmas]), sigmas


def released_class(ifs_cls, base: np.ndarray, delta: float):
    """One released class: the render object with the base's maps, each perturbed as ``generate_image`` does."""
    gen = ifs_cls(prev_x=0.0, prev_y=0.0, save_root="", fractal_name="", fractal_weight_count="", mask_mode="random")
    for a, b, c, d, e, f, p in base:
        noise = [random.uniform(1 - delta, 1 + delta) for _ in range(6)]
        weights = {f"weight_{name}": w for name, w in zip("abcdef", noise, strict=True)}
        gen.set_param(float(a), float(b), float(c), float(d), float(e), float(f), float(p), **weights)
    return gen


def params_of(gen) -> np.ndarray:
    return np.array([[fn[k] for k in ("a", "b", "c", "d", "e", "f", "proba")] for fn in gen.function])


def released_fill(gen) -> float:
    """The released fill of a class: its ``draw_patch`` image (threshold -1 so that it always returns it)."""
    gen.calculate(FILL_POINTS)
    with contextlib.redirect_stdout(io.StringIO()):
        image = gen.draw_patch(FILL_SIZE, FILL_SIZE, PAD, PAD, "gray", 0, threshold=-1.0, imgsave=False)
    return float((np.asarray(image) > 1).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("released", type=Path, help="checkout of github.com/SUPER-TADORY/1p-frac")
    parser.add_argument("--draws", type=int, default=4000, help="base systems and classes drawn per side")
    parser.add_argument("--sigma", type=float, default=3.5)
    parser.add_argument("--delta", type=float, default=0.1)
    parser.add_argument("--n-maps", type=int, default=2)
    parser.add_argument("--fill-systems", type=int, default=12, help="systems rendered by the released renderer")
    parser.add_argument("--rate-bases", type=int, default=100, help="released bases for the redraw-rate table")
    parser.add_argument("--rate-classes", type=int, default=20, help="classes drawn per base for that table")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    utils, rfo, ifs_cls = import_released(args.released)
    random.seed(args.seed)

    # 1. Base systems.
    rel_sys, rel_sig = released_bases(utils, rfo, args.n_maps, args.sigma, args.draws, args.seed)
    our_sys, our_sig = our_bases(args.n_maps, args.sigma, 0.1, args.draws, args.seed + 1)
    table_header(f"Base systems: N={args.n_maps}, sigma {args.sigma} +- 0.1, {args.draws} draws per side")
    rel_f, our_f = features(rel_sys, rel_sig), features(our_sys, our_sig)
    for name in rel_f:
        print(row(name, rel_f[name], our_f[name]))

    # 2. Perturbation factors: classes of one base (factors do not depend on it), `draws` classes per side.
    base = our_sys[0]
    family = create_family("onepfrac", classes=2, delta=args.delta, n_maps=args.n_maps, sigma=args.sigma)
    rng = np.random.default_rng(args.seed + 2)
    rel_cls = [released_class(ifs_cls, base, args.delta) for _ in range(args.draws)]
    rel_params = np.array([params_of(g) for g in rel_cls])
    our_params = np.array([family._perturb(base, rng) for _ in range(args.draws)])
    rel_factor = (rel_params[:, :, :6] / base[:, :6]).ravel()
    our_factor = (our_params[:, :, :6] / base[:, :6]).ravel()
    table_header(f"Perturbation factors, Delta {args.delta}: {rel_factor.size} factors per side")
    print(row("factor", rel_factor, our_factor))
    uniform = np.random.default_rng(args.seed + 3).uniform(1 - args.delta, 1 + args.delta, rel_factor.size)
    print(row("factor vs U(1-D, 1+D)", rel_factor, uniform))
    print(f"\nfactor range: released [{rel_factor.min():.5f}, {rel_factor.max():.5f}], "
          f"ours [{our_factor.min():.5f}, {our_factor.max():.5f}]")  # fmt: skip
    p_kept = np.array_equal(rel_params[:, :, 6], np.broadcast_to(base[:, 6], rel_params[:, :, 6].shape))
    ours_kept = np.array_equal(our_params[:, :, 6], np.broadcast_to(base[:, 6], our_params[:, :, 6].shape))
    print(f"p of every class is the base's: released {p_kept}, ours {ours_kept}")

    # 3. Fill check: systems spread over our fill (so some sit near the threshold), rendered by both renderers.
    pool = our_params[: 40 * args.fill_systems]
    pool_fill = measure_fill(np.concatenate([pool, rel_params[: len(pool)]]))
    pool = np.concatenate([pool, rel_params[: len(pool)]])
    picks = np.argsort(pool_fill)[np.linspace(0, len(pool) - 1, args.fill_systems).astype(int)]
    print(f"\nFill check on {args.fill_systems} systems (512 px, 100k points, pad 6, share of pixels > 1):\n")
    print("| system | released fill | ours | ours - released | fill > 0.05 (released / ours) | released render s |")
    print("|---|---|---|---|---|---|")
    diffs, agree = [], 0
    for i in picks:
        gen = ifs_cls(prev_x=0.0, prev_y=0.0, save_root="", fractal_name="", fractal_weight_count="")
        for a, b, c, d, e, f, p in pool[i]:
            gen.set_param(float(a), float(b), float(c), float(d), float(e), float(f), float(p))
        start = time.perf_counter()
        theirs = released_fill(gen)
        seconds = time.perf_counter() - start
        ours = float(pool_fill[i])
        diffs.append(ours - theirs)
        agree += (theirs > 0.05) == (ours > 0.05)
        print(f"| {i} | {theirs:.5f} | {ours:.5f} | {ours - theirs:+.5f} | {theirs > 0.05} / {ours > 0.05} "
              f"| {seconds:.1f} |")  # fmt: skip
    print(f"\nmax |ours - released| = {np.abs(diffs).max():.5f}; same decision on {agree}/{len(picks)}")

    # 4. How often the rule fires: released bases (no base check), our fill of their perturbed classes.
    bases = rel_sys[: args.rate_bases]
    classes = np.array([[params_of(released_class(ifs_cls, b, args.delta)) for _ in range(args.rate_classes)]
                        for b in bases])  # fmt: skip
    base_fill = measure_fill(bases)
    fail = (measure_fill(classes.reshape(-1, *bases.shape[1:])).reshape(len(bases), -1) <= 0.05).mean(1)
    print(f"\nRedraw rate over {len(bases)} released bases x {args.rate_classes} classes:")
    print(f"  bases failing the check themselves (fill <= 0.05): {(base_fill <= 0.05).mean():.3f}")
    print(f"  share of classes that fail, mean over bases: {fail.mean():.3f}; bases where >= 90 % fail: "
          f"{(fail >= 0.9).mean():.3f}; where none fail: {(fail == 0).mean():.3f}")  # fmt: skip
    ok = base_fill > 0.05
    if ok.any():
        passing = fail[ok]
        print(f"  among bases that pass: mean class failure {passing.mean():.3f}, >= 90 % fail "
              f"{(passing >= 0.9).mean():.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
