"""The published FractalDB category files: one CSV per category (``%05d.csv``), one row ``a,b,c,d,e,f,p`` per map."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from fdsl_app import render
from fdsl_app.families.sampling import det_probabilities


def read_fractaldb_csv_folder(path: str | Path, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read the published FractalDB category CSVs of a folder (and its subfolders, as in the repository's csv0..39).

    Files are taken in sorted file-name order (the ``%05d.csv`` category number). Each file has one row ``a,b,c,d,
    e,f,p`` per map, no header; rows of 6 numbers get p = ``|det A|`` normalised, p not summing to 1 is normalised.

    Args:
        path: the folder.
        limit: read only the first `limit` files.

    Returns:
        ``params`` ``(C, K, 7)`` (K = most maps of any file, rows past a system's N zero) and ``n_maps`` ``(C,)``.

    Raises:
        ValueError: no folder, no CSV files, or a bad file (named with its line).
    """
    folder = Path(path)
    if not folder.is_dir():
        raise ValueError(f"FractalDB CSV folder {folder} does not exist")
    files = sorted(folder.rglob("*.csv"), key=lambda f: (f.name, f.as_posix()))
    if not files:
        raise ValueError(f"FractalDB CSV folder {folder} holds no .csv files")
    systems = [read_fractaldb_csv(f) for f in files[:limit]]
    return render.pack_systems(systems)


def read_fractaldb_csv(path: Path) -> np.ndarray:
    """One category CSV as ``(N, 7)`` rows ``a b c d e f p`` (see :func:`read_fractaldb_csv_folder`)."""
    rows: list[list[float]] = []
    for line_no, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            values = [float(v) for v in line.split(",")]
        except ValueError:
            raise ValueError(f"{path}, line {line_no}: not comma-separated numbers: {line.strip()!r:.80}") from None
        if len(values) not in (6, 7) or (rows and len(values) != len(rows[0])):
            raise ValueError(f"{path}, line {line_no}: {len(values)} numbers; every row must be a,b,c,d,e,f[,p]")
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"{path}, line {line_no}: numbers must be finite")
        rows.append(values)
    if not 2 <= len(rows) <= render.MAX_MAPS:
        raise ValueError(f"{path}: {len(rows)} maps; a FractalDB category has 2..{render.MAX_MAPS}")
    system = np.array(rows)
    p = system[:, 6] if system.shape[1] == 7 else det_probabilities(system)
    if p.min() < 0 or p.sum() <= 0:
        raise ValueError(f"{path}: map probabilities p must be >= 0 with a positive sum")
    # Leave published p (summing to 1 up to rounding) bit-exact; renormalise only what clearly does not sum to 1.
    if abs(p.sum() - 1.0) > 1e-9:
        p = p / p.sum()
    return np.column_stack([system[:, :6], p])
