"""Determinism across threads and batches, and the GIL released while rendering."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from fdsl_app import render
from fdsl_app.families.sampling import fractaldb_candidates


def _mixed_batch(count: int = 9) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    params, n_maps = fractaldb_candidates(rng, count, min_maps=2, max_maps=8)
    return params, n_maps


@pytest.mark.parametrize("mode, raster", [("reference", "patch"), ("fast", "patch"), ("fast", "density")])
def test_thread_count_does_not_change_the_bytes(mode, raster):
    params, n_maps = _mixed_batch()
    kw = dict(n_maps=n_maps, mode=mode, raster=raster, seeds=np.arange(9) + 40, flips=np.arange(9) % 4,
              n_points=20_000)  # fmt: skip
    images = [render.render_ifs(params, np.empty((9, 64, 64), np.uint8), threads=t, **kw) for t in (1, 2, 5, 16)]
    for other in images[1:]:
        assert np.array_equal(images[0], other)


def test_a_batch_equals_its_samples_rendered_one_by_one():
    params, n_maps = _mixed_batch()
    seeds, flips = np.arange(9) + 3, np.arange(9) % 4
    batch = render.render_ifs(params, np.empty((9, 48, 48, 3), np.uint8), n_maps=n_maps, seeds=seeds, flips=flips,
                              raster="patch", mode="fast", color=True, n_points=10_000)  # fmt: skip
    for i in range(9):
        one = render.render_ifs(params[i : i + 1], np.empty((1, 48, 48, 3), np.uint8), n_maps=n_maps[i : i + 1],
                                seeds=seeds[i], flips=flips[i], raster="patch", mode="fast", color=True,
                                n_points=10_000)  # fmt: skip
        assert np.array_equal(batch[i], one[0]), f"sample {i}"


def test_every_pixel_is_written():
    params, n_maps = _mixed_batch(3)
    out = np.full((3, 40, 40), 255, np.uint8)  # stale contents must not survive
    render.render_ifs(params, out, n_maps=n_maps, n_points=2000)
    fresh = render.render_ifs(params, np.zeros((3, 40, 40), np.uint8), n_maps=n_maps, n_points=2000)
    assert np.array_equal(out, fresh)


def test_gil_is_released_during_a_render():
    params, n_maps = _mixed_batch(4)
    out = np.empty((4, 256, 256), np.uint8)
    start = time.perf_counter()
    render.render_ifs(params, out, n_maps=n_maps, n_points=400_000, threads=1)
    single = time.perf_counter() - start
    repeats = max(1, int(np.ceil(0.6 / single)))  # a render of at least ~0.6 s
    done = threading.Event()

    def work():
        for _ in range(repeats):
            render.render_ifs(params, out, n_maps=n_maps, n_points=400_000, threads=1)
        done.set()

    worker = threading.Thread(target=work)
    worker.start()
    ticks = [time.perf_counter()]
    while not done.is_set():
        time.sleep(0.001)  # Python code that needs the GIL on every iteration
        ticks.append(time.perf_counter())
    worker.join()
    duration = ticks[-1] - ticks[0]
    longest_gap = float(np.max(np.diff(ticks)))
    # With the GIL held, this thread would stall for a whole render (~duration / repeats) at a time.
    assert duration > 0.3 and longest_gap < 0.2 * duration / repeats + 0.02, (duration, longest_gap, repeats)
