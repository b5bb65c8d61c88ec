"""The published ExFractalDB pipeline restated in numpy: the tests' oracle for the C++ 3D renderer.

Chain and normalisation follow ``exfractaldb_render/3dfractal_render`` (``IteratedFunctionSystem.calculate``,
``min_max``, ``centoroid``); the camera follows ``image_render/render.py`` (PyGLM ``perspective`` and ``lookAt``,
the OpenGL viewport), here in float64 with the projection and view matrices applied one after the other.
"""

from __future__ import annotations

import numpy as np

FOV_Y = np.radians(45.0)
NEAR, FAR, DISTANCE = 1.0, 100.0, 4.0


def chain(systems: np.ndarray, n_maps: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """Points ``(S, 3, n - 1)`` of S systems ``(S, K, 13)`` from uniforms ``(S, n)``, all systems at once."""
    s_idx = np.arange(len(systems))
    cum = np.cumsum(systems[:, :, 12], axis=1)  # sequential, like the published running sum
    cum[np.arange(systems.shape[1])[None, :] >= n_maps[:, None]] = -np.inf  # padding maps never match
    points = np.empty((len(systems), 3, uniforms.shape[1] - 1))
    x = np.zeros((len(systems), 3))
    with np.errstate(over="ignore", invalid="ignore"):  # divergent systems: inf, then NaN, as published
        for t in range(points.shape[2]):
            hit = uniforms[:, t : t + 1] <= cum
            w = systems[s_idx, hit.argmax(axis=1)]
            new = np.stack([
                x[:, 0] * w[:, 0] + x[:, 1] * w[:, 1] + x[:, 2] * w[:, 2] + w[:, 9],
                x[:, 0] * w[:, 3] + x[:, 1] * w[:, 4] + x[:, 2] * w[:, 5] + w[:, 10],
                x[:, 0] * w[:, 6] + x[:, 1] * w[:, 7] + x[:, 2] * w[:, 8] + w[:, 11],
            ], axis=1)  # fmt: skip
            # No map matched (rounding in the sum): the published loop appends the previous point again.
            x = np.where(hit.any(axis=1)[:, None], new, x)
            points[:, :, t] = x
    return points


def normalise(points: np.ndarray, divisor: int) -> np.ndarray:
    """``min_max(axis=None)`` to [-1, 1], then ``centoroid``: each axis minus its sequential sum / `divisor`."""
    with np.errstate(invalid="ignore", divide="ignore"):
        lo, hi = points.min(), points.max()
        result = ((points - lo) / (hi - lo)) * 2.0 - 1.0
        centre = np.cumsum(result, axis=-1)[..., -1:] / divisor  # Python's sum(): left to right
        return result - centre


def look_at(eye: np.ndarray, centre: np.ndarray, up: np.ndarray) -> np.ndarray:
    """glm::lookAtRH as a row-major 4x4 matrix."""
    f = (centre - eye) / np.sqrt(np.dot(centre - eye, centre - eye))
    s = np.cross(f, up)
    s = s / np.sqrt(np.dot(s, s))
    u = np.cross(s, f)
    return np.array([[*s, -np.dot(s, eye)], [*u, -np.dot(u, eye)], [*-f, np.dot(f, eye)], [0.0, 0.0, 0.0, 1.0]])


def perspective(fov_y: float, aspect: float, near: float, far: float) -> np.ndarray:
    """glm::perspectiveRH_NO as a row-major 4x4 matrix."""
    t = np.tan(fov_y / 2.0)
    m = np.zeros((4, 4))
    m[0, 0], m[1, 1] = 1.0 / (aspect * t), 1.0 / t
    m[2, 2], m[2, 3] = -(far + near) / (far - near), -(2.0 * far * near) / (far - near)
    m[3, 2] = -1.0
    return m


def camera(yaw: float, pitch: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(projection, view) of the published camera: ``R = rotY(yaw) rotZ(pitch)``, eye ``-4 R x``, up ``R y``."""
    cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
    rot = np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]]) @ np.array(
        [[cp, -sp, 0.0], [sp, cp, 0.0], [0.0, 0.0, 1.0]]
    )
    direction, up = rot[:, 0], rot[:, 1]
    return perspective(FOV_Y, 1.0, NEAR, FAR), look_at(-DISTANCE * direction, np.zeros(3), up)


def window_coords(points: np.ndarray, yaw: float, pitch: float, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Window coordinates ``(x, y)`` (y up from the bottom row) of points ``(3, N)``; NaN where clipped."""
    proj, view = camera(yaw, pitch)
    homogeneous = np.vstack([points, np.ones(points.shape[1])])
    clip = proj @ (view @ homogeneous)
    with np.errstate(invalid="ignore", divide="ignore"):
        inside = (clip[3] > 0) & (clip[2] >= -clip[3]) & (clip[2] <= clip[3])
        x = (clip[0] / clip[3]) * (size / 2) + size / 2
        y = (clip[1] / clip[3]) * (size / 2) + size / 2
    inside &= (x >= 0) & (x < size) & (y >= 0) & (y < size)
    return np.where(inside, x, np.nan), np.where(inside, y, np.nan)


def render(points: np.ndarray, yaw: float, pitch: float, size: int) -> np.ndarray:
    """The published image of points ``(3, N)``: white 1 px points on black, row 0 = OpenGL's bottom row."""
    x, y = window_coords(points, yaw, pitch, size)
    keep = np.isfinite(x)
    image = np.zeros((size, size), np.uint8)
    image[np.floor(y[keep]).astype(int), np.floor(x[keep]).astype(int)] = 255
    return image
