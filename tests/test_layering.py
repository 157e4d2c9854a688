"""The package's layering, read from the source: the engine and the analysis never import the
widget side (only the package's __init__ re-exports it), and the widget side never reaches into
another module's private names."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "layerscope"


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            level = "." * node.level
            found.append((level + (node.module or ""), [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found.extend((a.name, []) for a in node.names)
    return found


def test_analysis_never_imports_the_widget_side():
    for path in PACKAGE.glob("*.py"):
        if path.name == "__init__.py":
            continue
        for module, names in _imports(path):
            assert not module.startswith(".widget") and "widget" not in names, (path.name, module)
            assert not module.startswith("layerscope.widget"), (path.name, module)


def test_the_widget_side_imports_no_private_names():
    for path in (PACKAGE / "widget").glob("*.py"):
        for module, names in _imports(path):
            private = [n for n in names if n.startswith("_") and n != "__future__"]
            assert not private, (path.name, module, private)
