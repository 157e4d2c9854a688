"""The package's layering, read from the source: the engine and the analysis never import the
widget side (only the package's __init__ re-exports it), and the widget side never reaches into
another module's private names. Every module of every subpackage is read (``dataset/``,
``featurevis/``, ``widget/panels/``, ...), with relative imports resolved to absolute names."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "layerscope"
WIDGET = PACKAGE / "widget"


def _modules(root: Path) -> list[Path]:
    """Every module under ``root``, subpackages included, at any depth."""
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def _package_of(path: Path) -> list[str]:
    """The dotted package ``path`` belongs to (its own, for a package's ``__init__``)."""
    return ["layerscope", *path.relative_to(PACKAGE).parent.parts]


def _imports(path: Path, source: str | None = None) -> list[tuple[str, list[str]]]:
    """(absolute module, imported names) of every import in ``path`` (or in ``source``, read as
    if it were that file), at any depth (also inside functions and ``if TYPE_CHECKING``)."""
    tree = ast.parse(path.read_text() if source is None else source)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names = [a.name for a in node.names]
            if node.level:
                package = _package_of(path)
                assert node.level <= len(package), (path, node.level)
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            found.append((module, names))
        elif isinstance(node, ast.Import):
            found.extend((a.name, []) for a in node.names)
    return found


def _reaches_widget(module: str, names: list[str]) -> bool:
    """Whether ``from module import names`` (or ``import module``) loads the widget side:
    ``module`` is it, or one of ``names`` is it as a submodule (``from .. import widget``)."""
    targets = [module, *(f"{module}.{n}" for n in names)]
    return any(t == "layerscope.widget" or t.startswith("layerscope.widget.") for t in targets)


def test_every_subpackage_is_read():
    read = {p.parent.relative_to(PACKAGE).as_posix() for p in _modules(PACKAGE)}
    assert {".", "dataset", "featurevis", "widget", "widget/panels"} <= read, read


def test_relative_imports_resolve_to_the_module_they_name():
    dataset, panels = PACKAGE / "dataset" / "a.py", WIDGET / "panels" / "__init__.py"
    assert _imports(dataset, "from ..widget import x") == [("layerscope.widget", ["x"])]
    assert _imports(dataset, "from . import y") == [("layerscope.dataset", ["y"])]
    assert _imports(PACKAGE / "a.py", "from . import widget") == [("layerscope", ["widget"])]
    assert _imports(panels, "from .. import y") == [("layerscope.widget", ["y"])]
    assert _imports(panels, "from ...errors import E") == [("layerscope.errors", ["E"])]
    assert _reaches_widget("layerscope", ["widget"])
    assert _reaches_widget("layerscope.widget.schema", ["LayerPayload"])
    assert not _reaches_widget("layerscope.widgets_elsewhere", [])
    assert not _reaches_widget("layerscope.reduce", ["widget_like"])


def test_analysis_never_imports_the_widget_side():
    checked = 0
    for path in _modules(PACKAGE):
        if path == PACKAGE / "__init__.py" or WIDGET in path.parents:
            continue
        checked += 1
        for module, names in _imports(path):
            assert not _reaches_widget(module, names), (str(path.relative_to(PACKAGE)), module)
    assert checked > 30  # the engine, the analysis and their subpackages


def test_the_widget_side_imports_no_private_names():
    for path in _modules(WIDGET):
        for module, names in _imports(path):
            private = [n for n in names if n.startswith("_") and n != "__future__"]
            assert not private, (str(path.relative_to(PACKAGE)), module, private)
