"""One registry of formula families keyed by name, after timm's model registry.

``register_family`` (a class decorator), ``list_families("frac*")`` (wildcards), ``create_family(name, **settings)``
(keyword overrides of the family's ``Settings``, type-checked; an unknown name or setting lists the known ones).
Named parameter sets (``register_named_params``): a run may name one, e.g. ``fractaldb1k-published``, wherever it
takes a parameter file; the set's maker writes the file on first use.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import typing
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fdsl_app.families.base import RENDER_SETTINGS, ClassParams, Family, SettingsMismatch
from fdsl_app.families.params_io import load_params

_FAMILIES: dict[str, type[Family]] = {}
#: name -> (one-line description, a function that returns the set's parameter file, making it when missing)
_NAMED_PARAMS: dict[str, tuple[str, Callable[[], Path]]] = {}


def register_family(cls: type[Family]) -> type[Family]:
    """Class decorator: make `cls` creatable by its ``name``."""
    if cls.name in _FAMILIES and _FAMILIES[cls.name] is not cls:
        warnings.warn(f"family {cls.name!r} registered twice; the later definition wins", stacklevel=2)
    _FAMILIES[cls.name] = cls
    return cls


def register_named_params(name: str, description: str, make: Callable[[], Path]) -> None:
    """Let runs name a parameter set instead of a file: `make` returns its file, writing it on first use."""
    _NAMED_PARAMS[name] = (description, make)


def named_params() -> dict[str, str]:
    """The named parameter sets and their descriptions."""
    return {name: description for name, (description, _) in sorted(_NAMED_PARAMS.items())}


def params_file(params: str | Path) -> Path:
    """The parameter file a run gave: a path, or the file of a named set (made now if missing).

    Raises:
        ValueError: neither an existing file nor a set's name (the message lists the names).
    """
    if str(params) in _NAMED_PARAMS:
        return _NAMED_PARAMS[str(params)][1]()
    path = Path(params)
    if not path.is_file():
        close = difflib.get_close_matches(str(params), _NAMED_PARAMS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(
            f"parameter file {path} does not exist{hint}: give a file written by `fdsl_app search` or a named set "
            f"({', '.join(named_params()) or 'none'})"
        )
    return path


def list_families(pattern: str = "*") -> list[str]:
    """Registered family names matching a shell-style wildcard, sorted."""
    return sorted(name for name in _FAMILIES if fnmatch.fnmatchcase(name, pattern))


def family_class(name: str) -> type[Family]:
    try:
        return _FAMILIES[name]
    except KeyError:
        close = difflib.get_close_matches(name, _FAMILIES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown family {name!r}{hint}; known families: {', '.join(list_families())}") from None


def create_family(name: str, **settings: Any) -> Family:
    """The family `name` with its default settings, overridden by `settings`."""
    cls = family_class(name)
    return cls(make_settings(cls, settings))


def resolve_family(
    name: str | None, settings: dict[str, Any], params_path: str | Path | None = None
) -> tuple[Family, ClassParams | None]:
    """The family to render with, and the parameter file's contents (None without a file).

    With a parameter file, its generation settings hold and `settings` may change only how samples are drawn;
    `name` may then be None (the file's family).

    Raises:
        ValueError: no family named, an unknown family or setting, a file of another family, or `settings` that
            contradict the file's; the message names what is wrong.
    """
    if params_path is None:
        if name is None:
            raise ValueError("name a family (see `fdsl_app families`) or give a parameter file")
        return create_family(name, **settings), None
    params_path = params_file(params_path)
    params = load_params(params_path)
    name = name or params.family
    family_class(name)  # an unknown name is reported as such, before the file's settings are tried on it
    if params.family != name:
        raise ValueError(
            f"parameter file {params_path} is for family {params.family!r}, not {name!r}: use family "
            f"{params.family!r}, or generate parameters for {name!r} with `fdsl_app search {name}`"
        )
    family = create_family(name, **{**params.settings, **settings})
    try:
        family.check_params(params)
    except SettingsMismatch as err:
        raise ValueError(
            f"{err}; with a parameter file ({params_path}) the generation settings come from the file, only render "
            f"settings ({', '.join(sorted(RENDER_SETTINGS))}) may be given"
        ) from None
    except ValueError as err:
        raise ValueError(f"{params_path}: {err}") from None
    return family, params


def make_settings(cls: type[Family], values: dict[str, Any]) -> Any:
    """``cls.Settings`` from defaults and `values`, each checked against the field's type."""
    fields = {f.name: f for f in dataclasses.fields(cls.Settings)}
    hints = typing.get_type_hints(cls.Settings)
    for key, value in values.items():
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"{cls.name} has no setting {key!r}{hint}; its settings: {', '.join(fields)}")
        values[key] = _coerce(value, hints[key], f"{cls.name}.{key}")
    return cls.Settings(**values)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Accept `value` for a field of type `hint` (int for float, list for tuple), else TypeError."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Literal:
        if value not in args:
            raise ValueError(f"{where} must be one of {', '.join(repr(a) for a in args)}, got {value!r}")
        return value
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, where)
            except TypeError as err:
                errors.append(str(err))
        raise TypeError(errors[0])
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise TypeError(f"{where} must be a tuple, got {type(value).__name__} {value!r}")
        item = args[0] if args else Any
        return tuple(_coerce(v, item, where) for v in value)
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    is_bool_for_int = hint is int and isinstance(value, bool)
    if hint is Any or (isinstance(hint, type) and isinstance(value, hint) and not is_bool_for_int):
        return value
    name = getattr(hint, "__name__", str(hint))
    raise TypeError(f"{where} must be {name}, got {type(value).__name__} {value!r}")
