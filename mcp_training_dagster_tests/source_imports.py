"""What a Python source file imports, read from its syntax tree (nothing is imported): the one walker behind the
layer rule (``test_code_quality.py``) and the serving core's import rule (``serving/test_import_rule.py``)."""

import ast
from dataclasses import dataclass


@dataclass(frozen=True)
class Imported:
    module: str  # as written: ``import a.b`` and ``from a.b import c`` -> "a.b"; ``from .x import y`` -> "x"
    relative: bool  # ``from .x import y``
    guarded: bool  # inside the body of a ``try`` that catches ImportError / ModuleNotFoundError


def imported_modules(tree: ast.Module) -> list[Imported]:
    """Every import in the module, in ``ast.walk`` order (``from . import x`` names no module: left out)."""
    guarded: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
            isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError") for h in node.handlers
        ):
            guarded |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Imported(a.name, False, id(node) in guarded) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append(Imported(node.module, node.level > 0, id(node) in guarded))
    return found
