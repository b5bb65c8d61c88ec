"""One registry of formula families keyed by name, after timm's model registry.

``register_family`` (a class decorator), ``list_families("frac*")`` (wildcards), ``create_family(name, **settings)``
(keyword overrides of the family's ``Settings``, type-checked; an unknown name or setting lists the known ones).
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import typing
import warnings
from typing import Any

from fdsl_app.families.base import Family

_FAMILIES: dict[str, type[Family]] = {}


def register_family(cls: type[Family]) -> type[Family]:
    """Class decorator: make `cls` creatable by its ``name``."""
    if cls.name in _FAMILIES and _FAMILIES[cls.name] is not cls:
        warnings.warn(f"family {cls.name!r} registered twice; the later definition wins", stacklevel=2)
    _FAMILIES[cls.name] = cls
    return cls


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
