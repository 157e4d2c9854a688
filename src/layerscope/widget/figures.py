"""Which panel draws which view: ``explorer.figure(name)`` and the export ask the panel that
declares ``name`` for its spec (:mod:`~layerscope.widget.spec`), the same the widget draws, and
make a plotly ``go.Figure`` of it. Colour scales are the contract's explicit stops."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import LayerScopeError, NotReadyError
from .panels.base import Panel
from .spec import Spec, to_plotly
from .viewstate import ViewState

__all__ = ["build_figure", "spec_of", "module_views", "view_names", "SCENE_VIEWS"]

# Views of the image and its prediction, not of a module: the export shows them once.
SCENE_VIEWS = ("image", "mask", "score", "ablation", "graph")


def view_names(panels: Mapping[str, Panel]) -> dict[str, Panel]:
    """Every view the panels draw, and the panel that draws it."""
    return {v: p for p in panels.values() for v in p.views}


def spec_of(panels: Mapping[str, Panel], view: ViewState, name: str) -> Spec:
    """View ``name`` of ``view`` as a spec, drawn by the panel that declares it."""
    owners = view_names(panels)
    if name not in owners:
        raise LayerScopeError(f"unknown view {name!r}; choose one of {', '.join(owners)}")
    return owners[name].figure(view, name)


def build_figure(panels: Mapping[str, Panel], view: ViewState, name: str) -> Any:
    """View ``name`` of ``view`` as a ``plotly.graph_objects.Figure``."""
    return to_plotly(spec_of(panels, view, name), view)


def module_views(panels: Mapping[str, Panel], view: ViewState) -> list[str]:
    """The views that have something to show for the view-state's module."""
    names = []
    for name, panel in view_names(panels).items():
        if name in SCENE_VIEWS:
            continue
        try:
            panel.figure(view, name)
        except NotReadyError:
            continue
        names.append(name)
    return names
