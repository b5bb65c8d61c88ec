"""Compare the regenerated FractalDB-1k categories with the published ones, value for value.

    python scripts/check_published_fractaldb1k.py PUBLISHED [--params FILE]

PUBLISHED is either the published repository's folder of category files (``data/csv_rate0.2_category1000``, with
its ``csv*/NNNNN.csv`` subfolders) or one CSV of all of them with rows ``category,map,a,b,c,d,e,f,p``. FILE is a
parameter file of ``fdsl_app search fractaldb --published`` (default: the named set ``fractaldb1k-published``,
made now if missing). Prints how many categories match exactly (every value equal as float64) and lists the first
that differ; exits 1 unless all match.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

from fdsl_app.families import load_params, params_file
from fdsl_app.families.fractaldb_csv import read_fractaldb_csv_folder


def published_categories(path: Path) -> list[np.ndarray]:
    """The published systems, one ``(N, 7)`` array per category, in category order."""
    if path.is_dir():
        params, n_maps = read_fractaldb_csv_folder(path)
        return [params[c, : n_maps[c]] for c in range(len(params))]
    rows: dict[int, list[list[float]]] = {}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            rows.setdefault(int(row["category"]), []).append([float(row[k]) for k in "abcdefp"])
    return [np.array(rows[c]) for c in sorted(rows)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("published", type=Path, help="the published category CSVs: a folder, or one combined CSV")
    parser.add_argument("--params", default="fractaldb1k-published", help="regenerated parameter file or set name")
    args = parser.parse_args()
    published = published_categories(args.published)
    ours = load_params(params_file(args.params)).arrays
    differ = [
        c for c, system in enumerate(published)
        if c >= len(ours["n_maps"]) or not np.array_equal(ours["params"][c, : ours["n_maps"][c]], system)
    ]  # fmt: skip
    print(f"{len(published) - len(differ)} of {len(published)} published categories match exactly")
    if differ:
        print(f"first that differ: {differ[:10]}")
    return 0 if not differ else 1


if __name__ == "__main__":
    sys.exit(main())
