"""Argument checks shared by the renderer's faces (C++ and torch): exact types, one value per sample, ranges.

Each raises ``TypeError`` (wrong kind of value) or ``ValueError`` (out of range) naming the argument; nothing is
converted silently.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

import numpy as np


def cpu_count() -> int:
    """Cores this process may run on (the default thread count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def shown(value: object, width: int = 40) -> str:
    """`value`'s repr on one line, cut to `width` characters (an array's repr spans lines)."""
    text = " ".join(repr(value).split())
    return text if len(text) <= width else text[: width - 3] + "..."


def threads_arg(threads: int | None) -> int:
    if threads is None:
        return cpu_count()
    if isinstance(threads, bool) or not isinstance(threads, int | np.integer):
        raise TypeError(f"threads must be a positive int or None (all cores), got {type(threads).__name__}")
    return int(threads)


def per_sample(value: int | Sequence[int] | np.ndarray, name: str, batch: int, dtype: type) -> np.ndarray:
    """A scalar broadcast to the batch, or one value per sample; integers only, never negative."""
    if isinstance(value, list | tuple | range) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        value = np.array(value, dtype=object)  # Python ints beyond int64 (64-bit seeds) must not turn float
        if value.size and (value.min() < 0 or value.max() > np.iinfo(dtype).max):
            raise ValueError(f"{name} must be in [0, {np.iinfo(dtype).max}], got {value.min()} .. {value.max()}")
        value = value.astype(dtype)
    arr = np.asarray(value)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
        raise TypeError(f"{name} must be an int or an array of ints, got {arr.dtype} {shown(value, 60)}")
    if arr.ndim == 0:
        arr = np.full(batch, arr)
    if arr.shape != (batch,):
        raise ValueError(f"{name} must be a scalar or have shape ({batch},), got shape {arr.shape}")
    if arr.size and arr.min() < 0:
        raise ValueError(f"{name} must be >= 0, got {arr.min()}")
    info = np.iinfo(dtype)
    if arr.size and int(arr.max()) > info.max:
        raise ValueError(f"{name} must be <= {info.max}, got {arr.max()}")
    return np.ascontiguousarray(arr, dtype=dtype)


def float_array(value: np.ndarray | Sequence, name: str) -> np.ndarray:
    try:
        return np.ascontiguousarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a numeric array: {err}") from None


def int_arg(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {shown(value)}")
    return int(value)


def int_rows(value: np.ndarray | Sequence, name: str, batch: int, columns: int, dtype: type) -> np.ndarray:
    """``(batch, columns)`` integers (one row per sample) as a C-contiguous array of `dtype`; never rounds floats."""
    arr = np.asarray(value)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
        raise TypeError(f"{name} must be an array of ints, got {arr.dtype}; round pixel boxes explicitly")
    if arr.shape != (batch, columns):
        raise ValueError(f"{name} must have shape ({batch}, {columns}), got shape {arr.shape}")
    info = np.iinfo(dtype)
    if arr.size and (int(arr.min()) < info.min or int(arr.max()) > info.max):
        raise ValueError(f"{name} must be in [{info.min}, {info.max}], got {arr.min()} .. {arr.max()}")
    return np.ascontiguousarray(arr, dtype=dtype)


# pybind11's signature types -> what passes them, and its name; "object" parameters check themselves in C++.
_ACCEPTS = {
    "str": ((str,), "a str"),
    "bool": ((bool, np.bool_), "a bool"),
    "typing.SupportsInt | typing.SupportsIndex": ((int, np.integer), "an int"),
    "typing.SupportsFloat | typing.SupportsIndex": ((int, float, np.integer, np.floating), "a number"),
}


def call_native(function, *args):  # noqa: ANN001, ANN201 - any binding of fdsl_app.render._render
    """Call a binding; its type refusal ("incompatible function arguments", a dozen lines naming no argument)
    becomes one line naming the first argument of the wrong type and what it takes."""
    try:
        return function(*args)
    except TypeError as err:
        text = str(err)
        if "incompatible function arguments" not in text:
            raise
        signature = text.split("1. (", 1)[1].split(") ->", 1)[0]
        params = [p.split(": ", 1) for p in re.split(r", (?=\w+: )", signature)]
        for (name, kind), value in zip(params, args, strict=False):
            types, expected = _ACCEPTS.get(kind, (object, ""))
            if not isinstance(value, types):
                raise TypeError(f"{function.__name__}(): {name} must be {expected}, got "
                                f"{type(value).__name__} {shown(value)}") from None  # fmt: skip
        raise TypeError(f"{function.__name__}(): arguments of the wrong type: {signature}") from None
