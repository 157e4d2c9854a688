"""A single self-contained HTML file of view-states: every hooked module's views, interactive
(hover, zoom) with no kernel and no network. plotly.js is inlined once, as the same partial
build the widget ships (heatmap, histogram and bar traces), not the full 4.6 MB library."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from pathlib import Path

import plotly.io as pio

from .figures import build_figure, module_views
from .panels.base import Panel
from .viewstate import ViewState

__all__ = ["write_html", "PLOTLY_BUNDLE"]

PLOTLY_BUNDLE = Path(__file__).resolve().parent.parent / "static" / "plotly-partial.js"
_STYLE = """body{font-family:system-ui,sans-serif;margin:16px} .row{display:flex;flex-wrap:wrap;
gap:8px} .plot{width:460px} .notice{background:#fff4ce;padding:4px 8px}"""


def _plotly_js() -> str:
    if not PLOTLY_BUNDLE.is_file():
        raise FileNotFoundError(
            f"{PLOTLY_BUNDLE} is missing: build the front end (cd js && npm run build), or "
            "reinstall layerscope"
        )
    return PLOTLY_BUNDLE.read_text(encoding="utf-8").replace("</script", "<\\/script")


def write_html(
    path: str | Path,
    panels: Mapping[str, Panel],
    *,
    title: str,
    prediction: ViewState | None,
    modules: list[tuple[str, ViewState]],
    notice: str = "",
) -> Path:
    """Write the file: the prediction's views (mask, score map) when ``prediction`` is given,
    then each module's views."""
    sections: list[tuple[str, list[str]]] = []
    plots: list[str] = []

    def add(view: ViewState, name: str) -> str:
        fig = build_figure(panels, view, name)
        fig.update_layout(width=460)  # the height is the view's own
        div = f"layerscope-plot-{len(plots)}"
        # "</" inside a script would end it early: escape it in the JSON (still valid JSON).
        spec = pio.to_json(fig, validate=False, remove_uids=True).replace("</", "<\\/")
        plots.append(f"draw({json.dumps(div)}, {spec});")
        return f'<div class="plot plotly-graph-div" id="{div}"></div>'

    if prediction is not None and prediction.extra.get("_graph"):
        sections.append(("How data flows", [add(prediction, "graph")]))
    if prediction is not None and prediction.scene.segmentation:
        figs = [add(prediction, "mask")]
        if prediction.scene.class_score:
            figs.append(add(prediction, "score"))
        sections.append(("Prediction", figs))
    if prediction is not None and prediction.ablation:
        sections.append(("With channels ablated", [add(prediction, "ablation")]))
    for module, view in modules:
        sections.append((module, [add(view, name) for name in module_views(panels, view)]))
    body = "\n".join(
        f"<section><h2>{html.escape(heading)}</h2><div class='row'>{''.join(divs)}</div></section>"
        for heading, divs in sections
    )
    note = f"<p class='notice'>{html.escape(notice)}</p>" if notice else ""
    hooked = ", ".join(m for m, _ in modules) or "none"
    script = "\n".join(plots)
    doc = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>LayerScope: {html.escape(title)}</title>
<style>{_STYLE}</style>
<script>{_plotly_js()}</script></head>
<body><h1>LayerScope: {html.escape(title)}</h1>{note}
<p>Hooked modules: {html.escape(hooked)}.</p>
{body}
<script>
function draw(id, fig) {{
  Plotly.newPlot(id, fig.data, fig.layout, {{displaylogo: false, responsive: true}});
}}
{script}
</script></body></html>"""
    out = Path(path)
    out.write_text(doc, encoding="utf-8")
    return out
