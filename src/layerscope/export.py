"""A single self-contained HTML file of what the Explorer shows: plotly.js inlined, every hooked
module's views, interactive (hover, zoom) with no kernel and no network."""

from __future__ import annotations

import html
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from . import payload
from .figures import build_figure

if TYPE_CHECKING:
    from .explorer import Explorer

__all__ = ["explorer_html"]

_PER_KIND = {
    "maps": ("overlay", "channel", "aggregate", "grid", "histogram"),
    "vector": ("vector", "histogram"),
    "values": ("histogram",),
}


def _module_state(ex: Explorer, name: str) -> SimpleNamespace:
    """The views' state for one hooked module, computed without touching the widget."""
    calls = ex._outputs(name)
    state = SimpleNamespace(
        _image=ex._image,
        _geometry=ex._geometry,
        _segmentation=ex._segmentation,
        _class_score=ex._class_score,
        _gradcam={},
        aggregate=ex.aggregate,
        colorscale=ex.colorscale,
        overlay_opacity=ex.overlay_opacity,
        _layer={},
        _channel={},
    )
    if not calls:
        return state
    layer = payload.layer_payload(
        name,
        "",
        calls[0],
        call=0,
        calls=len(calls),
        topk=ex._topk,
        bins=ex._bins,
        class_names=ex.class_names,
    )
    state._layer = layer
    if layer["kind"] == "maps":
        channel = ex.selected_channel if name == ex.selected_module else layer["topk"][0]
        channel = channel if 0 <= channel < layer["channels"] else layer["topk"][0]
        edges = layer["histogram"]["edges"]
        state._channel = payload.channel_payload(
            calls[0], channel, bins=ex._bins, value_range=[edges[0], edges[-1]]
        )
    return state


def explorer_html(ex: Explorer, path: str | Path) -> Path:
    """Write the HTML file and return its path."""
    parts: list[str] = []
    first = [True]

    def add(fig: Any) -> None:
        fig.update_layout(height=380, width=460)
        parts.append(
            fig.to_html(full_html=False, include_plotlyjs=first[0], config={"displaylogo": False})
        )
        first[0] = False

    sections = []
    base = _module_state(ex, "")
    if ex._segmentation:
        parts.clear()
        add(build_figure(base, "mask"))  # type: ignore[arg-type]
        if ex._class_score:
            add(build_figure(base, "score"))  # type: ignore[arg-type]
        sections.append(("Prediction", list(parts)))
    for name in ex.hooked_modules:
        state = _module_state(ex, name)
        parts.clear()
        for view in _PER_KIND.get(state._layer.get("kind", ""), ()):
            add(build_figure(state, view))  # type: ignore[arg-type]
        sections.append((name, list(parts)))
    notice = f"<p class='notice'>{html.escape(ex._notice)}</p>" if ex._notice else ""
    body = "\n".join(
        f"<section><h2>{html.escape(title)}</h2><div class='row'>{''.join(figs)}</div></section>"
        for title, figs in sections
    )
    doc = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>LayerScope: {html.escape(ex._title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:16px}} .row{{display:flex;flex-wrap:wrap;
gap:8px}} .notice{{background:#fff4ce;padding:4px 8px}}</style></head>
<body><h1>LayerScope: {html.escape(ex._title)}</h1>{notice}
<p>Hooked modules: {html.escape(", ".join(ex.hooked_modules) or "none")}.</p>
{body}</body></html>"""
    out = Path(path)
    out.write_text(doc, encoding="utf-8")
    return out
