"""The Graph view: how data flows through the model, from the first forward's recording (the
same pass that learns the execution order and the layouts: no forward of its own), opened as the
tree is (``graph_open``: the modules shown with their children; the tree's expand and collapse
set it), drawn left to right; hooked modules marked like the tree's, the selected one too. A
click on a module hooks it (as a click on its tree row does); hovering a node marks its row."""

from __future__ import annotations

from typing import Any

import traitlets as t

from ...errors import NotReadyError
from ...graph import graph_of
from ...graph.draw import drawing, graph_spec
from ..spec import Spec
from ..viewstate import ViewState
from .base import Context, Panel

__all__ = ["GraphPanel"]


class GraphPanel(Panel):
    name = "graph"
    after = ("hooks",)  # its colours follow the hooked and selected modules
    inputs = ("show_graph", "graph_open")
    owns = {"_graph": "extra._graph"}
    views = shown = ("graph",)
    traits = {
        "show_graph": t.Bool(False).tag(sync=True),
        "graph_open": t.List(t.Unicode(), default_value=None, allow_none=True).tag(sync=True),
    }

    def __init__(self) -> None:
        self._laid: dict[Any, dict[str, Any]] = {}  # drawings by (input shape, opened modules)

    def build(self, ctx: Context) -> dict[str, Any]:
        s = ctx.session
        recording = s.flows.get(tuple(s.inputs.shape))
        if not ctx.show_graph or recording is None:
            return {"_graph": None}
        opened = ctx.graph_open
        key = (tuple(s.inputs.shape), None if opened is None else tuple(sorted(opened)))
        if key not in self._laid:
            g = graph_of(s.model, recording, depth=1)
            if opened is not None:  # the tree's expanded modules
                g.open_only(ctx.known([n for n in opened if n]))
            self._laid[key] = drawing(g)
        return {"_graph": {**self._laid[key], "hooked": list(ctx.hooked_modules),
                           "selected": ctx.selected_module}}  # fmt: skip

    def figure(self, view: ViewState, name: str) -> Spec:
        g = view.extra.get("_graph")
        if not g:
            raise NotReadyError("no graph shown: set explorer.show_graph = True")
        return graph_spec(g)
