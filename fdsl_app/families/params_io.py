"""Class parameters as data: one ``.npz`` file holding the arrays and a JSON header (family, settings, seed,
package version, generation statistics, format version). Loading checks everything and says what is wrong."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from fdsl_app.families.base import ClassParams
from fdsl_app.files import atomic_path
from fdsl_app.provenance import package_version

FORMAT = 1
_HEADER = "__fdsl_header__"


def save_params(params: ClassParams, path: str | Path) -> Path:
    """Write `params` to `path` (``.npz``), atomically: a crash never leaves a half-written file under that name."""
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    if not path.parent.exists():
        raise ValueError(f"cannot write {path}: folder {path.parent} does not exist")
    header = {
        "format": FORMAT,
        "family": params.family,
        "settings": params.settings,
        "seed": params.seed,
        "version": params.version or package_version(),
        "stats": params.stats,
        "arrays": sorted(params.arrays),
    }
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **{_HEADER: np.frombuffer(json.dumps(header).encode(), np.uint8)}, **params.arrays)
    except OSError as err:
        raise ValueError(f"cannot write parameter file {path}: {err.strerror or err}") from None
    return path


def load_params(path: str | Path, family: str | None = None) -> ClassParams:
    """Read a parameter file; `family`, if given, must match the file's family."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"parameter file {path} does not exist")
    try:
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as data:
            if _HEADER not in data.files:
                header = None
            else:
                header = json.loads(bytes(data[_HEADER]).decode())
                arrays = {name: data[name] for name in header["arrays"]}
    except (zipfile.BadZipFile, OSError, EOFError, KeyError, ValueError, AttributeError, UnicodeDecodeError) as err:
        raise ValueError(f"parameter file {path} is corrupt or truncated ({type(err).__name__}: {err})") from None
    if header is None:
        raise ValueError(f"{path} is not an fdsl_app parameter file (no header); `fdsl_app search` writes one")
    if header.get("format", 0) > FORMAT:
        raise ValueError(
            f"parameter file {path} has format {header['format']}, newer than this fdsl_app reads ({FORMAT}); "
            f"upgrade fdsl_app (the file was written by version {header.get('version')})"
        )
    if family is not None and header["family"] != family:
        raise ValueError(f"parameter file {path} is for family {header['family']!r}, not {family!r}")
    return ClassParams(
        family=header["family"], settings=header["settings"], seed=int(header["seed"]), arrays=arrays,
        stats=header.get("stats", {}), version=header.get("version", ""),
    )  # fmt: skip
