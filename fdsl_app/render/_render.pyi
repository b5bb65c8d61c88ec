"""Type stubs of the compiled renderer. Use fdsl_app.render, which converts and documents the arguments."""

import numpy as np
import numpy.typing as npt

build_flags: str

def fast_kernel() -> str: ...
def render_ifs(
    params: npt.NDArray[np.float64],
    n_maps: npt.NDArray[np.int32],
    out: npt.NDArray[np.uint8],
    seeds: npt.NDArray[np.uint64],
    patch_seeds: npt.NDArray[np.uint64],
    flips: npt.NDArray[np.uint8],
    n_points: int,
    mode: str,
    raster: str,
    color: bool,
    pad: int,
    threads: int,
    chains: int,
    burn_in: int,
    start_at_fixed_point: bool,
    keep_aspect: bool,
    crops: npt.NDArray[np.float64] | None = None,
    crop_pad_fraction: float = 0.0,
) -> npt.NDArray[np.uint8]: ...
def fill_rate(
    params: npt.NDArray[np.float64],
    n_maps: npt.NDArray[np.int32],
    seeds: npt.NDArray[np.uint64],
    n_points: int,
    size: int,
    pad: int,
    threads: int,
) -> npt.NDArray[np.float64]: ...
def legacy_uniforms(seed: int, n: int) -> npt.NDArray[np.float64]: ...

class PublishedStream:
    def __init__(self, seed: int, min_maps: int, max_maps: int, param_range: float, n_points: int) -> None: ...
    def examine(
        self, count: int, size: int, pad: int, threads: int
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int32], npt.NDArray[np.float64]]: ...
    def skip(self, count: int) -> npt.NDArray[np.int32]: ...
    @property
    def consumed(self) -> int: ...

def render_contours(
    params: npt.NDArray[np.float64],
    out: npt.NDArray[np.uint8],
    seeds: npt.NDArray[np.uint64],
    style: str,
    canvas_size: float,
    threads: int,
) -> npt.NDArray[np.uint8]: ...
def perlin1(xs: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]: ...
def build_cache(
    params: npt.NDArray[np.float64],
    n_maps: npt.NDArray[np.int32],
    out: npt.NDArray[np.uint64],
    n_points: int,
    pad: int,
    dilate: bool,
    threads: int,
) -> npt.NDArray[np.uint64]: ...
def draw_cached(
    cache: npt.NDArray[np.uint64],
    index: npt.NDArray[np.int64],
    patch_seeds: npt.NDArray[np.uint64],
    crops: npt.NDArray[np.int32] | None,
    flips: npt.NDArray[np.uint8],
    out: npt.NDArray[np.uint8],
    kind: str,
    threads: int,
) -> npt.NDArray[np.uint8]: ...
def render_ifs3d(
    params: npt.NDArray[np.float64],
    n_maps: npt.NDArray[np.int32],
    seeds: npt.NDArray[np.uint64],
    cameras: npt.NDArray[np.float64],
    out: npt.NDArray[np.uint8],
    n_points: int,
    threads: int,
) -> npt.NDArray[np.uint8]: ...
def project_points(
    points: npt.NDArray[np.float64],
    cameras: npt.NDArray[np.float64],
    out: npt.NDArray[np.uint8],
    threads: int,
) -> npt.NDArray[np.uint8]: ...
def cloud_ifs3d(params: npt.NDArray[np.float64], uniforms: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]: ...
def chain_uniforms(seed: int, n: int) -> npt.NDArray[np.float64]: ...
