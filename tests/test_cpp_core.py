"""Builds the C++ unit tests of csrc/core (CMake, FDSL_BUILD_TESTS) and runs them under CTest."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def build_and_run_ctest(build: Path, *options: str) -> None:
    """Configures csrc's unit tests (no Python module) in ``build`` with extra CMake ``options``, builds them and
    asserts that CTest passes every one."""
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.fail("cmake not found: install the test extra (pip install '.[test]')")
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    only_tests = ["-DFDSL_BUILD_PYTHON=OFF", "-DFDSL_BUILD_TESTS=ON"]
    for cmd in (
        [cmake, "-S", str(ROOT), "-B", str(build), *generator, *only_tests, *options],
        [cmake, "--build", str(build), "--parallel"],
        [str(Path(cmake).with_name("ctest")), "--test-dir", str(build), "--output-on-failure"],
    ):
        result = subprocess.run(cmd, capture_output=True, text=True)
        assert result.returncode == 0, f"{' '.join(cmd)}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    assert "100% tests passed" in result.stdout


def test_cpp_unit_tests_pass(tmp_path):
    build_and_run_ctest(tmp_path / "build")


@pytest.mark.slow
def test_cpp_unit_tests_pass_under_sanitizers(tmp_path):
    # AddressSanitizer and UBSan with float-cast-overflow: undefined behaviour (e.g. NaN cast to int) or a memory
    # error aborts the test binary, which fails its CTest entry.
    build_and_run_ctest(tmp_path / "build", "-DFDSL_SANITIZE=ON")
