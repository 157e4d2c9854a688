"""A data-flow graph as plain data: placed (:func:`drawing`) and as a plotly figure spec
(:func:`graph_spec`), the one drawing the widget's Graph view, ``explorer.figure("graph")``,
the export and ``ModuleGraph.figure()`` share."""

from __future__ import annotations

from typing import Any

from .layout import layered
from .model import ModuleGraph

__all__ = ["drawing", "graph_spec"]

HOOKED, SELECTED, IDLE, FUNCTION, ENDS = "#4c78a8", "#e45756", "#c8ccd4", "#9aa0a6", "#444444"


def drawing(g: ModuleGraph) -> dict[str, Any]:
    """The graph as plain data, placed: nodes (with x, y), edges."""
    at = layered(g.nodes, g.edges)
    nodes = [{"id": n.id, "kind": n.kind, "module": n.module, "label": n.label,
              "shape": list(n.shape) if n.shape else None, "expandable": n.expandable,
              "x": at[n.id][0], "y": at[n.id][1]} for n in g.nodes]  # fmt: skip
    edges = [{"source": e.source, "target": e.target, "shape": list(e.shape)} for e in g.edges]
    return {"nodes": nodes, "edges": edges}


def _shape(s: list[int] | None) -> str:
    return "×".join(map(str, s)) if s else ""


def graph_spec(g: dict[str, Any]) -> dict[str, Any]:
    """Nodes left to right in the order data reaches them; modules are circles (hooked ones in
    the tree's blue, the selected one red; a module with children a larger ring until opened),
    functions small diamonds; edges say the shape that flows when hovered."""
    at = {n["id"]: (n["x"], n["y"]) for n in g["nodes"]}
    ex: list[float | None] = []
    ey: list[float | None] = []
    mx, my, tips = [], [], []
    for e in g["edges"]:
        (x0, y0), (x1, y1) = at[e["source"]], at[e["target"]]
        ex += [x0, x1, None]
        ey += [y0, y1, None]
        mx.append((x0 + x1) / 2)
        my.append((y0 + y1) / 2)
        tips.append(f"{e['source']} → {e['target']}<br>{_shape(e['shape'])}")
    hooked, selected = set(g["hooked"]), g["selected"]
    modules = [n for n in g["nodes"] if n["kind"] == "module"]
    others = [n for n in g["nodes"] if n["kind"] != "module"]

    def colour(n: dict[str, Any]) -> str:
        return SELECTED if n["module"] == selected else HOOKED if n["module"] in hooked else IDLE

    data = [
        {"type": "scatter", "mode": "lines", "x": ex, "y": ey, "hoverinfo": "skip",
         "line": {"color": "#9aa0a6", "width": 1}, "showlegend": False},
        {"type": "scatter", "mode": "markers", "x": mx, "y": my, "text": tips,
         "hovertemplate": "%{text}<extra></extra>", "marker": {"size": 8, "opacity": 0},
         "showlegend": False, "name": "edges"},
        {"type": "scatter", "mode": "markers+text", "name": "modules",
         "x": [n["x"] for n in modules], "y": [n["y"] for n in modules],
         # every other column's labels below: neighbours' labels do not run into each other
         "text": [n["label"] for n in modules],
         "textposition": ["top center" if int(n["x"]) % 2 == 0 else "bottom center"
                          for n in modules],
         "textfont": {"size": 9}, "customdata": [n["module"] for n in modules],
         "hovertext": [f"{n['id']}<br>{_shape(n['shape'])}"
                       + ("<br>(has children: open it in the tree)" if n["expandable"] else "")
                       + "<br>click: hook / unhook" for n in modules],
         "hoverinfo": "text", "meta": {"role": "modules"}, "showlegend": False,
         "marker": {"size": [14 if n["expandable"] else 10 for n in modules],
                    "color": [colour(n) for n in modules],
                    "line": {"width": 1, "color": "#555555"}}},
        {"type": "scatter", "mode": "markers+text", "name": "functions",
         "x": [n["x"] for n in others], "y": [n["y"] for n in others],
         "text": [n["label"] for n in others], "textposition": "bottom center",
         "textfont": {"size": 9},
         "hovertext": [f"{n['label']} in {n['module'] or 'the model'}<br>{_shape(n['shape'])}"
                       for n in others], "hoverinfo": "text", "showlegend": False,
         "marker": {"size": 8, "symbol": ["square" if n["kind"] in ("input", "output")
                                          else "diamond" for n in others],
                    "color": [ENDS if n["kind"] in ("input", "output") else FUNCTION
                              for n in others]}},
    ]  # fmt: skip
    tall = max((sum(1 for n in g["nodes"] if n["x"] == x) for x in {n["x"] for n in g["nodes"]}),
               default=1)  # fmt: skip
    title = (
        f"How data flows: {len(modules)} modules, {len(others) - 2} functions "
        "(click a module to hook it; open modules in the tree)"
    )
    layout = {"title": {"text": title, "font": {"size": 12}, "x": 0.02, "xanchor": "left"},
              "height": max(300, 90 + 46 * tall), "autosize": True, "hovermode": "closest",
              "font": {"size": 11}, "paper_bgcolor": "rgba(0,0,0,0)",
              "plot_bgcolor": "rgba(0,0,0,0)", "uirevision": "graph", "meta": {"link": "graph"},
              "xaxis": {"visible": False},
              "yaxis": {"visible": False, "autorange": "reversed"},
              "margin": {"l": 8, "r": 8, "t": 28, "b": 8}}  # fmt: skip
    return {"data": data, "layout": layout}
