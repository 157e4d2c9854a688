"""The data flow of one recorded forward as a graph at a chosen level of the module tree.

Nodes are the modules at the level shown (a module with children is one node, until it is
expanded), the modules without children above that level, the functions where tensors meet in
an expanded module (add, cat, mul, interpolate, ...), and the input and the output. A module
called several times has **one node per call** (``"backbone.layer1.0.relu#1"`` is the second),
so a reused ReLU is a chain, never a loop. Edges carry the shape of the tensor that flows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import UnknownModuleError, close_matches
from .record import Event, Recording

__all__ = ["Node", "Edge", "ModuleGraph"]


@dataclass(frozen=True)
class Node:
    """``id``: the module's name (with ``#call`` for a module called more than once), or
    ``<module>/<function>#<n>`` for a function, ``input``, ``output``. ``module``: the module
    it is (a function: the module it runs in). ``expandable``: a module with children, shown
    as one node. ``order``: when it first ran (for a stable layout)."""

    id: str
    kind: str
    module: str
    label: str
    shape: tuple[int, ...] | None
    call: int
    calls: int
    expandable: bool
    order: int


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    shape: tuple[int, ...]


def _depth(path: str) -> int:
    return -1 if path == "" else path.count(".")


class ModuleGraph:
    """``module_graph(model, x, depth)``'s result: ``nodes``, ``edges``; ``expand(name)`` and
    ``collapse(name)`` follow the module tree's levels (both return the graph)."""

    def __init__(self, recording: Recording, children: dict[str, list[str]], depth: int,
                 classes: dict[str, str] | None = None) -> None:  # fmt: skip
        self.recording = recording
        self.children = children
        self.classes = classes or {}  # module -> class name, for labels
        self.depth = depth
        self.opened = {p for p, kids in children.items() if kids and _depth(p) < depth}
        self._events = {e.id: e for e in recording.events}
        self._nodes: list[Node] = []
        self._edges: list[Edge] = []
        self._build()

    @property
    def nodes(self) -> list[Node]:
        return list(self._nodes)

    @property
    def edges(self) -> list[Edge]:
        return list(self._edges)

    def node(self, node_id: str) -> Node:
        for n in self._nodes:
            if n.id == node_id:
                return n
        raise UnknownModuleError(node_id, close_matches(node_id, [n.id for n in self._nodes]))

    def _known(self, name: str) -> None:
        if name not in self.children:
            raise UnknownModuleError(name, close_matches(name, self.children))

    def expand(self, name: str) -> ModuleGraph:
        """Show ``name``'s children (and open every module above it)."""
        self._known(name)
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            path = ".".join(parts[:i])
            if self.children.get(path):
                self.opened.add(path)
        self._build()
        return self

    def collapse(self, name: str) -> ModuleGraph:
        """Show ``name`` as one node again (its inner modules closed too)."""
        self._known(name)
        self.opened = {p for p in self.opened if p != name and not p.startswith(name + ".")}
        self._build()
        return self

    def open_only(self, names: list[str]) -> ModuleGraph:
        """Show these modules opened and no others (a module shows opened when every module
        above it is opened too, as a tree's row does)."""
        for name in names:
            self._known(name)
        self.opened = {n for n in names if self.children.get(n)}
        self._build()
        return self

    # -- building ---------------------------------------------------------------------------

    def _shown(self, event: Event) -> Event:
        """The event a node stands for: the outermost closed module around it, or itself."""
        for sid in event.scope:
            outer = self._events[sid]
            if outer.name != "" and outer.name not in self.opened:
                return outer
        return event

    def _id(self, e: Event) -> str:
        if e.kind == "module":
            return e.name if self.recording.calls.get(e.name, 1) == 1 else f"{e.name}#{e.call}"
        if e.kind == "function":
            scope = self._events[e.scope[-1]].name if e.scope else ""
            return f"{scope or 'model'}/{e.name}#{e.id}"
        return e.kind

    def _node(self, e: Event) -> Node:
        module = e.name if e.kind == "module" else (
            self._events[e.scope[-1]].name if e.scope else "")  # fmt: skip
        label = e.name.rsplit(".", 1)[-1] if e.kind == "module" else e.name
        if label.isdigit() and e.name in self.classes:  # "classifier.0" -> "0 ASPP"
            label = f"{label} {self.classes[e.name]}"
        if e.kind == "module" and self.recording.calls.get(e.name, 1) > 1:
            label = f"{label} #{e.call}"
        return Node(self._id(e), e.kind, module, label or "model", e.shape, e.call,
                    self.recording.calls.get(e.name, 1) if e.kind == "module" else 1,
                    e.kind == "module" and bool(self.children.get(e.name)), e.id)  # fmt: skip

    def _build(self) -> None:
        nodes: dict[str, Node] = {}
        edges: dict[tuple[str, str], Edge] = {}
        for e in self.recording.events:
            if e.kind == "module" and (not e.leaf or e.name == ""):
                continue  # a container is a scope: its inner events speak for it
            shown = self._shown(e)
            target = self._id(shown)
            if target not in nodes:
                nodes[target] = self._node(shown)
            for producer, shape in e.inputs:
                source = self._id(self._shown(self._events[producer]))
                if source != target and (source, target) not in edges:
                    edges[(source, target)] = Edge(source, target, shape)
        self._nodes = sorted(nodes.values(), key=lambda n: n.order)
        self._edges = list(edges.values())

    def figure(self, hooked: list[str] | None = None, selected: str = "") -> Any:
        """The graph drawn left to right as a ``plotly.graph_objects.Figure`` (the Explorer's
        Graph view draws the same); ``hooked`` and ``selected`` modules are marked."""
        import plotly.graph_objects as go

        from .draw import drawing, graph_spec

        spec = graph_spec({**drawing(self), "hooked": hooked or [], "selected": selected})
        return go.Figure(data=spec["data"], layout=spec["layout"])

    def __repr__(self) -> str:
        return (
            f"ModuleGraph({len(self._nodes)} nodes, {len(self._edges)} edges, depth={self.depth})"
        )
