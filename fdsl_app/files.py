"""Files that are whole or absent: a write goes to a temporary file next to its target, renamed onto it at the end.

A crash or kill mid-write leaves the previous file (or none) under the target's name, never half of one; the
temporary file is removed on every failure the process survives. A file that several processes of a node may want
to make (a cache, a regenerated parameter set) is made by one of them under :func:`locked` while the others wait.
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_TEMPORARY = re.compile(r".+\.tmp\d+")  # <target>.tmp<pid>


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path next to `path` to write to; renamed onto `path` when the block ends without an exception."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # gone already after the rename


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Write `data` (text as UTF-8) to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)


def leftover_temporaries(folder: Path) -> list[Path]:
    """The temporary files of :func:`atomic_path` in `folder`: a process killed mid-write leaves them."""
    return [p for p in folder.glob("*.tmp*") if _TEMPORARY.fullmatch(p.name) and p.is_file()]


@contextmanager
def locked(path: str | Path) -> Iterator[None]:
    """An exclusive lock on `path` (created if missing) for the block: one maker per node, the others wait."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
