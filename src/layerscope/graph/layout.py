"""A layered drawing of a data-flow graph, left to right (the Sugiyama scheme, kept small):
each node in the column after the longest path from the input, long edges broken by
placeholders so they take part in the ordering, the nodes of each column ordered by the
barycentre of their neighbours (sweeps right and left), then spread about the middle."""

from __future__ import annotations

from collections import defaultdict

from .model import Edge, Node

__all__ = ["layered"]

_SWEEPS = 4


def _columns(nodes: list[Node], edges: list[Edge]) -> dict[str, int]:
    """Longest path from the sources, in execution order (edges run forward in time; one
    that would not is ignored rather than loop)."""
    order = {n.id: i for i, n in enumerate(nodes)}
    into: dict[str, list[str]] = defaultdict(list)
    for e in edges:
        if order[e.source] < order[e.target]:
            into[e.target].append(e.source)
    col: dict[str, int] = {}
    for n in nodes:
        col[n.id] = max((col[s] + 1 for s in into[n.id]), default=0)
    return col


def layered(nodes: list[Node], edges: list[Edge]) -> dict[str, tuple[float, float]]:
    """(x, y) of every node: x its column, y its place in the column (centred on 0)."""
    if not nodes:
        return {}
    col = _columns(nodes, edges)
    order = {n.id: i for i, n in enumerate(nodes)}
    # Long edges through placeholders, one per column crossed, so they pull their ends apart
    # from the nodes they pass.
    links: list[tuple[str, str]] = []
    for e in edges:
        a, b = col[e.source], col[e.target]
        if a >= b:
            continue
        prev = e.source
        for c in range(a + 1, b):
            dummy = f"\0{e.source}>{e.target}@{c}"
            col[dummy] = c
            order[dummy] = order[e.source]
            links.append((prev, dummy))
            prev = dummy
        links.append((prev, e.target))
    columns: dict[int, list[str]] = defaultdict(list)
    for v in sorted(col, key=lambda v: (col[v], order[v])):
        columns[col[v]].append(v)
    left: dict[str, list[str]] = defaultdict(list)
    right: dict[str, list[str]] = defaultdict(list)
    for u, w in links:
        right[u].append(w)
        left[w].append(u)
    place = {v: float(i) for c in columns.values() for i, v in enumerate(c)}
    last = max(columns)
    for sweep in range(_SWEEPS):
        forward = sweep % 2 == 0
        for c in range(1, last + 1) if forward else range(last - 1, -1, -1):
            side = left if forward else right

            def centre(v: str, side: dict[str, list[str]] = side) -> float:
                near = side[v]
                return sum(place[u] for u in near) / len(near) if near else place[v]

            columns[c].sort(key=centre)
            for i, v in enumerate(columns[c]):
                place[v] = float(i)
    out = {}
    for c, vs in columns.items():
        for i, v in enumerate(vs):
            if not v.startswith("\0"):
                out[v] = (float(c), i - (len(vs) - 1) / 2)
    return out
