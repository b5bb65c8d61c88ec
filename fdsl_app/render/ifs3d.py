"""The 3D IFS renderer's Python face (ExFractalDB, MV-FractalDB, 3D-OFDB; spec section 5).

The published pipeline (``masora1030/CVPR2022-Pretrained-ViT-PyTorch:exfractaldb_render``) runs a 3D chaos game,
normalises the cloud and draws it with OpenGL. Here every step is in C++ on the CPU:

- chain: from (0, 0, 0), ``n_points - 1`` points (the published ``calculate(n)`` draws one fewer than asked), map
  ``j`` = the first whose cumulative probability is ``>= u`` (none: the point repeats), in float64.
- normalisation: joint min-max of all coordinates to [-1, 1], then each axis minus its sum / ``n_points`` (the
  published centroid divides by ``n_points``, not by the points drawn).
- camera: glm's ``perspective(45 deg, 1, near 1, far 100)`` times ``lookAt(eye, 0, up)`` with the eye at
  ``-4 R (1, 0, 0)`` and ``up = R (0, 1, 0)``, ``R = rotY(yaw) rotZ(pitch)`` (published views: pitch 0).
- splat: white (255) on black, one pixel per point at ``floor`` of the window coordinates
  ``(ndc + 1) * size / 2``; image row 0 is OpenGL's bottom row, as in the published PNGs (read back with
  glReadPixels and saved unflipped). Points past the near or far plane or off the image are skipped.

Differences from the published renderer: float64 throughout (OpenGL: float32 vertices and matrices), so a point
within about 1e-4 px of a pixel edge may land in the neighbouring pixel; no depth test (one colour: it cannot change
a pixel); GL_POINTS of size 1 light the pixel whose square holds the point, which is what ``floor`` does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fdsl_app.render import _render
from fdsl_app.render.args import call_native, float_array, int_arg, per_sample, threads_arg

#: The published chain length (``point_num``): ``n_points - 1`` points are drawn.
PUBLISHED_POINTS = 10_000
#: Columns of one map: ``a b c d e f g h i j k l p`` (x' = a x + b y + c z + j, ...; p its probability).
MAP_COLUMNS = 13


def _cameras(cameras: np.ndarray | Sequence, batch: int) -> np.ndarray:
    cams = float_array(cameras, "cameras")
    if cams.ndim == 1 and cams.shape == (2,):
        cams = np.ascontiguousarray(np.broadcast_to(cams, (batch, 2)))
    return cams


def render_ifs3d(
    params: np.ndarray,
    out: np.ndarray,
    *,
    seeds: int | Sequence[int] | np.ndarray,
    cameras: np.ndarray | Sequence,
    n_maps: Sequence[int] | np.ndarray | None = None,
    n_points: int = PUBLISHED_POINTS,
    threads: int | None = None,
) -> np.ndarray:
    """Render 3D IFS point clouds into ``out`` (uint8 ``(B, H, W)``) and return it.

    Args:
        params: ``(B, K, 13)`` maps per sample (rows ``a .. l p``); only the first ``n_maps[b]`` rows are used.
        seeds: per-sample (or one) 64-bit seed of the chain's uniforms (:func:`chain_uniforms`).
        cameras: ``(B, 2)`` (or one) ``(yaw, pitch)`` in radians (the published views: pitch 0).
        n_maps: maps per sample (default: K).
        n_points: the published ``point_num``; ``n_points - 1`` points are drawn.
    """
    params = float_array(params, "params")
    if params.ndim != 3:
        raise ValueError(f"params must have shape (batch, maps, 13), got shape {params.shape}")
    batch = params.shape[0]
    n_maps = per_sample(params.shape[1] if n_maps is None else n_maps, "n_maps", batch, np.int32)
    return call_native(
        _render.render_ifs3d, params, n_maps, per_sample(seeds, "seeds", batch, np.uint64), _cameras(cameras, batch),
        out, int_arg(n_points, "n_points"), threads_arg(threads),
    )  # fmt: skip


def project_points(
    points: np.ndarray, out: np.ndarray, *, cameras: np.ndarray | Sequence, threads: int | None = None
) -> np.ndarray:
    """Draw point sets ``(B, 3, N)`` (planes x, y, z) into ``out`` (uint8 ``(B, H, W)``) with the camera above."""
    points = float_array(points, "points")
    batch = points.shape[0] if points.ndim == 3 else 0
    return call_native(_render.project_points, points, _cameras(cameras, batch), out, threads_arg(threads))


def cloud_ifs3d(params: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """The published normalised cloud ``(3, n - 1)`` of one system ``(K, 13)`` from ``n`` uniforms (the category
    search feeds numpy's legacy stream here, as the published search does)."""
    return call_native(_render.cloud_ifs3d, float_array(params, "params"), float_array(uniforms, "uniforms"))


def chain_uniforms(seed: int, n: int) -> np.ndarray:
    """The ``n`` uniforms :func:`render_ifs3d` draws for `seed` (a counter-based hash; for tests and oracles)."""
    return call_native(_render.chain_uniforms, int_arg(seed, "seed"), int_arg(n, "n"))
