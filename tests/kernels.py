"""Run a snippet under each SIMD kernel of the C++ module (AVX2, and the baseline forced by FDSL_FORCE_GENERIC=1)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fdsl_app import render


def outputs_per_kernel(code: str) -> dict[str, list[str]]:
    """``{"avx2": words, "generic": words}``: what `code` prints (its first word must be ``render.fast_kernel()``)
    in a child process per kernel; skips where this CPU has no AVX2."""
    if render.fast_kernel() != "avx2":
        pytest.skip("this CPU has no AVX2: only the generic kernel exists here")
    here = os.path.dirname(os.path.abspath(__file__))
    # The children import the same fdsl_app as this process (installed, or a source tree with the built module).
    path = os.pathsep.join([os.path.dirname(os.path.dirname(render.__file__)), here, os.environ.get("PYTHONPATH", "")])
    runs = {}
    for flag in ("0", "1"):
        env = {**os.environ, "FDSL_FORCE_GENERIC": flag, "PYTHONPATH": path}
        done = subprocess.run([sys.executable, "-c", code], cwd=here, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        words = done.stdout.split()
        runs[words[0]] = words[1:]
    assert sorted(runs) == ["avx2", "generic"], runs
    return runs
