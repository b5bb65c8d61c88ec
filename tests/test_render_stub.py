"""The type stub fdsl_app/render/_render.pyi says what the compiled module holds: the same names, and for every
function the binding's arguments in its order, with defaults where the binding has them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from fdsl_app.render import _render

STUB = Path(_render.__file__).with_name("_render.pyi")
if not STUB.is_file():  # an installed package carries no stub; the source tree does
    STUB = Path(__file__).resolve().parents[1] / "fdsl_app" / "render" / "_render.pyi"


def _arguments(node: ast.FunctionDef) -> list[tuple[str, bool]]:
    args = node.args.args
    first_default = len(args) - len(node.args.defaults)
    return [(a.arg, i >= first_default) for i, a in enumerate(args)]


def _stub_functions() -> dict[str, list[tuple[str, bool]]]:
    """Functions and class methods (``Class.method``, properties left out) with their arguments."""
    tree = ast.parse(STUB.read_text())
    out = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            out[node.name] = _arguments(node)
        elif isinstance(node, ast.ClassDef):
            for method in node.body:
                if isinstance(method, ast.FunctionDef) and not method.decorator_list:
                    out[f"{node.name}.{method.name}"] = _arguments(method)
    return out


def _stub_names() -> set[str]:
    tree = ast.parse(STUB.read_text())
    defs = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)}
    return defs | {n.target.id for n in tree.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}


def _stub_class_members() -> dict[str, set[str]]:
    tree = ast.parse(STUB.read_text())
    return {
        n.name: {m.name for m in n.body if isinstance(m, ast.FunctionDef) and m.name != "__init__"}
        for n in tree.body if isinstance(n, ast.ClassDef)
    }  # fmt: skip


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside brackets (types such as ``NDArray[numpy.float64]`` hold commas of their own)."""
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    return [p.strip() for p in [*parts, current] if p.strip()]


def _binding_arguments(function: object) -> list[tuple[str, bool]]:
    """``(name, has a default)`` from pybind11's signature line, ``name(a: T, b: T = v) -> R``."""
    line = function.__doc__.splitlines()[0]
    inside = line[line.index("(") + 1 : line.rindex(") ->")]
    return [(part.split(":")[0].strip(), "=" in part) for part in _split_top_level(inside)]


def test_the_stub_names_every_public_name_of_the_module():
    public = {name for name in dir(_render) if not name.startswith("_")}
    assert _stub_names() == public


@pytest.mark.parametrize("name", sorted(_stub_class_members()))
def test_each_stub_class_names_every_public_member(name):
    public = {m for m in dir(getattr(_render, name)) if not m.startswith("_")}
    assert _stub_class_members()[name] == public


@pytest.mark.parametrize("name", sorted(_stub_functions()))
def test_each_stub_function_has_the_bindings_arguments(name):
    function = _render
    for part in name.split("."):
        function = getattr(function, part)
    assert _stub_functions()[name] == _binding_arguments(function)
