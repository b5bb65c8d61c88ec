"""What produced a result: package versions, the git commit, the renderer's build and the machine.

Run directories (``env.json``), parameter files and benchmark reports record these, so a figure or a model can be
traced to the code and hardware that made it.
"""

from __future__ import annotations

import platform
import subprocess
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from fdsl_app import render


def version(name: str) -> str | None:
    """Installed version of a distribution, or None."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def package_version() -> str:
    """fdsl_app's own version (``"unknown"`` when it runs from a source tree that was never installed)."""
    return version("fdsl_app") or "unknown"


def versions(names: Iterable[str]) -> dict[str, str | None]:
    """Installed versions of the named distributions (None for those missing)."""
    return {name: version(name) for name in names}


def git_commit() -> str | None:
    """The commit of the source tree fdsl_app runs from, if it is a git checkout."""
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parent)  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout.strip()


def cpu_model() -> str:
    """CPU model name from ``/proc/cpuinfo`` (Linux), else what :mod:`platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine() -> dict[str, Any]:
    """Where something ran: CPU, cores, renderer build and SIMD kernel, platform, Python and numpy."""
    return {
        "cpu_model": cpu_model(),
        "cores": render.cpu_count(),
        "fast_kernel": render.fast_kernel(),
        "build_flags": render.build_flags(),
        "platform": platform.platform(),
        "versions": {"python": platform.python_version(), "fdsl_app": package_version(), "numpy": np.__version__,
                     "pillow": version("pillow")},  # fmt: skip
    }
