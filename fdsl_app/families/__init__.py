"""Formula families, registered by name: ``list_families()``, ``create_family(name, **settings)``.

Each family module registers itself on import; importing this package imports them all.
"""

from fdsl_app.families.base import RENDER_SETTINGS, ClassParams, Family
from fdsl_app.families.params_io import load_params, save_params
from fdsl_app.families.registry import (
    create_family,
    family_class,
    list_families,
    make_settings,
    named_params,
    params_file,
    register_family,
    register_named_params,
    resolve_family,
)

__all__ = [
    "RENDER_SETTINGS", "ClassParams", "Family", "create_family", "family_class", "list_families", "load_params",
    "make_settings", "named_params", "params_file", "register_family", "register_named_params", "resolve_family",
    "save_params",
]  # fmt: skip

# Family modules register themselves on import.
from fdsl_app.families import contours, exfractaldb, fractaldb, onepfrac  # noqa: E402, F401
