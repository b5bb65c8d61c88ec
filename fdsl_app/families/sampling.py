"""Random iterated function systems: Anderson & Farrell's sigma-factor sampler and FractalDB's candidate sampler.

Anderson & Farrell ("Improving Fractal Pre-training", WACV'22) build each map from its singular values,
``A_i = U_i diag(s_i1, s_i2) V_i`` with ``0 <= s_i2 <= s_i1 <= 1``, and control how the system looks by its
*sigma factor* ``sigma = sum_i (s_i1 + 2 s_i2)``, which lies in ``(0, 3N]`` for N maps. Systems with sigma in
``[(5 + N) / 2, (6 + N) / 2]`` tend to be neither dust nor blobs (:func:`default_sigma_range`).

Every function takes a ``numpy.random.Generator`` and is pure numpy, so any family can use it and a seeded
generator gives the same systems on every machine. Systems are ``(N, 7)`` arrays of rows ``a b c d e f p``
(``x' = a x + b y + e``, ``y' = c x + d y + f``), the layout :func:`fdsl_app.render.render_ifs` takes.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

SvMethod = Literal["sequential", "rejection"]

#: Candidate draws of the rejection sampler before it gives up (as Anderson & Farrell's ``sample_svs_rej``).
MAX_REJECTION_TRIES = 1000
#: Rejection candidates drawn per numpy call: vectorised, yet a feasible sigma rarely draws more than one chunk.
_REJECTION_CHUNK = 64


def default_sigma_range(n_maps: int) -> tuple[float, float]:
    """Anderson & Farrell's default sigma-factor range for `n_maps` maps: ``((5 + N) / 2, (6 + N) / 2)``."""
    _check_n_maps(n_maps)
    return (5 + n_maps) / 2, (6 + n_maps) / 2


def check_sigma(sigma: float, n_maps: int) -> None:
    """Raise ValueError unless `sigma` is a sigma factor that `n_maps` maps can reach, i.e. in ``(0, 3N]``."""
    _check_n_maps(n_maps)
    if not np.isfinite(sigma) or not 0 < sigma <= 3 * n_maps:
        raise ValueError(
            f"sigma factor {sigma} is impossible with N={n_maps} maps: sigma = sum(s1 + 2 s2) with "
            f"0 <= s2 <= s1 <= 1 must lie in (0, {3 * n_maps}] (the usual choice is "
            f"[{(5 + n_maps) / 2}, {(6 + n_maps) / 2}])"
        )


def sample_singular_values(
    rng: np.random.Generator, n_maps: int, sigma: float, method: SvMethod = "sequential"
) -> np.ndarray:
    """Singular values ``(s1, s2)`` of `n_maps` maps with ``0 <= s2 <= s1 <= 1`` and ``sum(s1 + 2 s2) == sigma``.

    Args:
        rng: the random generator.
        n_maps: maps N (>= 1).
        sigma: the sigma factor, in ``(0, 3N]``.
        method: ``"sequential"`` (Anderson & Farrell's default ``sample_svs``: each pair drawn within the bounds
            that keep the rest feasible; fast, never fails) or ``"rejection"`` (their ``sample_svs_rej``: uniform
            on the constraint surface; raises ValueError after 1000 rejected candidates, which happens for a
            sigma near 0 or 3N).

    Returns:
        ``(n_maps, 2)`` float64 array, one ``(s1, s2)`` row per map; the weighted sum equals `sigma` up to float
        rounding.
    """
    check_sigma(sigma, n_maps)
    if method == "sequential":
        svs = _sequential(rng, n_maps, float(sigma))
    elif method == "rejection":
        svs = _rejection(rng, n_maps, float(sigma))
    else:
        raise ValueError(f"method must be 'sequential' or 'rejection', got {method!r}")
    return _tidy(svs)


def _sequential(rng: np.random.Generator, n_maps: int, sigma: float) -> np.ndarray:
    """Pairs one after another: `budget` is what the remaining pairs must absorb, `need` what this pair must take
    so that the pairs after it (at most 3 each) can absorb the rest."""
    svs = np.empty((n_maps, 2))
    budget = sigma
    need = sigma - 3 * n_maps + 3
    for i in range(n_maps - 1):
        # s1 + 2 s2 <= 3 s1, so the pair reaches `need` only if s1 >= need / 3.
        s1 = _uniform(rng, max(0.0, need / 3), min(1.0, budget))
        budget -= s1
        need -= s1
        s2 = _uniform(rng, max(0.0, need / 2), min(s1, budget / 2))
        budget -= 2 * s2
        need = need - 2 * s2 + 3  # one pair fewer after this one: 3 more for the next pair to take
        svs[i] = s1, s2
    # The last pair takes the whole rest: s1 = budget - 2 s2 with s2 <= s1 <= 1.
    s2 = _uniform(rng, max(0.0, (budget - 1) / 2), budget / 3)
    svs[-1] = budget - 2 * s2, s2
    return svs


def _rejection(rng: np.random.Generator, n_maps: int, sigma: float) -> np.ndarray:
    """Uniform pairs, each ordered s1 >= s2, with the last s2 solved from sigma; keep the first feasible one."""
    tries = 0
    while tries < MAX_REJECTION_TRIES:
        chunk = min(_REJECTION_CHUNK, MAX_REJECTION_TRIES - tries)
        tries += chunk
        draws = rng.random((chunk, 2 * n_maps - 1))
        pairs = np.sort(draws[:, :-1].reshape(chunk, n_maps - 1, 2), axis=2)[:, :, ::-1]
        last_s1 = draws[:, -1]
        last_s2 = (sigma - pairs[:, :, 0].sum(1) - 2 * pairs[:, :, 1].sum(1) - last_s1) / 2
        ok = np.flatnonzero((last_s2 >= 0) & (last_s2 <= last_s1))
        if ok.size:
            k = ok[0]
            return np.concatenate([pairs[k], [[last_s1[k], last_s2[k]]]])
    raise ValueError(
        f"rejection sampling found no singular values for sigma={sigma} with N={n_maps} maps in "
        f"{MAX_REJECTION_TRIES} tries: sigma is too close to the ends of (0, {3 * n_maps}]; use "
        f"method='sequential' or a sigma nearer {1.5 * n_maps}"
    )


def _uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    """U(lo, hi), clipped because ``lo + (hi - lo) * u`` may round one ulp past `hi`."""
    return min(max(rng.uniform(lo, hi), lo), hi)


def _tidy(svs: np.ndarray) -> np.ndarray:
    """Enforce ``0 <= s2 <= s1 <= 1`` exactly: the solved last pair can miss a bound by an ulp of rounding, and
    moving it there changes the weighted sum by as little."""
    svs = np.clip(svs, 0.0, 1.0)
    return np.stack([svs.max(1), svs.min(1)], axis=1)


def sample_system(
    rng: np.random.Generator,
    n_maps: int,
    sigma: float,
    *,
    translation: float = 1.0,
    method: SvMethod = "sequential",
) -> np.ndarray:
    """A random system with the given sigma factor (Anderson & Farrell's ``sample_system``).

    Each map is ``A_i = U_i diag(s_i1, s_i2) V_i`` with ``U_i, V_i = R(theta) diag(+-1, +-1)``: an independent
    random sign per axis (a reflection), then a rotation by ``theta ~ U(-pi, pi)``; the translation is
    ``(e, f) ~ U(-translation, translation)^2``; ``p_i`` is ``|det A_i|`` normalised (uniform in the measure-zero
    case that every map is singular).

    Args:
        rng: the random generator.
        n_maps: maps N.
        sigma: sigma factor in ``(0, 3N]``; see :func:`default_sigma_range`.
        translation: half-width of the translation range (>= 0).
        method: singular-value sampler, see :func:`sample_singular_values`.

    Returns:
        ``(n_maps, 7)`` float64 rows ``a b c d e f p``.
    """
    if not np.isfinite(translation) or translation < 0:
        raise ValueError(f"translation must be a finite number >= 0, got {translation}")
    svs = sample_singular_values(rng, n_maps, sigma, method)
    left = _rotation_reflection(rng, n_maps)
    right = _rotation_reflection(rng, n_maps)
    linear = left @ (svs[:, :, None] * right)  # U diag(s) V: diag(s) scales the rows of V
    system = np.empty((n_maps, 7))
    system[:, :4] = linear.reshape(n_maps, 4)
    system[:, 4:6] = rng.uniform(-translation, translation, (n_maps, 2))
    system[:, 6] = det_probabilities(system)
    return system


def _rotation_reflection(rng: np.random.Generator, n_maps: int) -> np.ndarray:
    """`n_maps` orthogonal 2x2 matrices ``R(theta) diag(+-1, +-1)``."""
    signs = rng.choice(np.array([-1.0, 1.0]), (n_maps, 2))
    theta = rng.uniform(-np.pi, np.pi, n_maps)
    cos, sin = np.cos(theta), np.sin(theta)
    rotation = np.stack([np.stack([cos, -sin], 1), np.stack([sin, cos], 1)], 1)
    return rotation * signs[:, None, :]  # right-multiplying by diag(signs) scales the columns


def det_probabilities(systems: np.ndarray, n_maps: np.ndarray | None = None) -> np.ndarray:
    """The FractalDB/Anderson map probabilities: ``|det A_i|`` normalised over each system's maps.

    Args:
        systems: ``(..., K, >=4)`` rows starting ``a b c d``; rows past a system's map count must be zero.
        n_maps: maps of each system ``(...)``; default K.

    Returns:
        ``(..., K)``; a system whose maps are all singular (zero determinants) gets uniform probabilities over its
        maps instead of a division by zero.
    """
    systems = np.asarray(systems, np.float64)
    det = np.abs(systems[..., 0] * systems[..., 3] - systems[..., 1] * systems[..., 2])
    count = det.shape[-1] if n_maps is None else np.asarray(n_maps)[..., None]
    uniform = (np.arange(det.shape[-1]) < count) / count
    total = det.sum(axis=-1, keepdims=True)
    return np.where(total > 0, det / np.where(total > 0, total, 1.0), uniform)


def fractaldb_candidates(
    rng: np.random.Generator, count: int, *, min_maps: int = 2, max_maps: int = 7, param_range: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """FractalDB's candidate systems (fdsl-spec 2.1): N ~ U{min_maps..max_maps} maps, every a..f ~ U(-r, r), p from
    ``|det A|``. No contractivity check: FractalDB's category search filters candidates by fill rate instead.

    The draws, in this order: `count` map counts, then ``(count, max_maps, 6)`` coefficients (rows past a
    candidate's N are drawn and zeroed, so a candidate never depends on another's N).

    Returns:
        ``params`` ``(count, max_maps, 7)`` float64 rows ``a b c d e f p`` (rows past N zero) and ``n_maps``
        ``(count,)`` int32, the layout :func:`fdsl_app.render.render_ifs` takes.
    """
    _check_n_maps(min_maps)
    if not min_maps <= max_maps:
        raise ValueError(f"max_maps must be >= min_maps ({min_maps}), got {max_maps}")
    if not np.isfinite(param_range) or param_range <= 0:
        raise ValueError(f"param_range must be a finite number > 0, got {param_range}")
    n_maps = rng.integers(min_maps, max_maps + 1, size=count).astype(np.int32)
    coefs = rng.uniform(-param_range, param_range, size=(count, max_maps, 6))
    coefs[np.arange(max_maps) >= n_maps[:, None]] = 0.0
    return np.concatenate([coefs, det_probabilities(coefs, n_maps)[..., None]], axis=-1), n_maps


def _check_n_maps(n_maps: int) -> None:
    if isinstance(n_maps, bool) or not isinstance(n_maps, int | np.integer) or n_maps < 1:
        raise ValueError(f"n_maps must be an int >= 1, got {n_maps!r}")
