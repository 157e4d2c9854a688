"""The Explorer's views as plotly ``go.Figure`` objects, built from the same payloads the widget
draws, so an exported figure shows what was on screen."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

import numpy as np
import plotly.graph_objects as go

from .errors import LayerScopeError

if TYPE_CHECKING:
    from .explorer import Explorer

__all__ = ["build_figure", "VIEWS"]

VIEWS = (
    "overlay",
    "channel",
    "aggregate",
    "grid",
    "histogram",
    "mask",
    "score",
    "vector",
    "gradcam",
)
_AGGREGATES = ("mean", "max", "l2")


def _array(payload: dict[str, Any]) -> np.ndarray:
    return np.frombuffer(payload["data"], dtype=payload["dtype"]).reshape(payload["shape"])


def _layout(fig: go.Figure, title: str) -> go.Figure:
    fig.update_layout(title=title, margin=dict(l=40, r=10, t=40, b=30), height=420)
    return fig


def _heatmap(z: np.ndarray, title: str, colorscale: str) -> go.Figure:
    fig = go.Figure(go.Heatmap(z=z, colorscale=colorscale))
    fig.update_yaxes(autorange="reversed", scaleanchor="x")
    return _layout(fig, title)


def _need_maps(ex: Explorer) -> dict[str, Any]:
    layer = ex._layer
    if layer.get("kind") != "maps":
        what = layer.get("module", "no module")
        raise LayerScopeError(f"{what!r} has no spatial maps to show: hook a conv layer first")
    return layer


def build_figure(ex: Explorer, view: str) -> go.Figure:
    if view not in VIEWS:
        raise LayerScopeError(f"unknown view {view!r}; choose one of {', '.join(VIEWS)}")
    layer, cs = ex._layer, ex.colorscale
    if view == "histogram":
        if "histogram" not in layer:
            raise LayerScopeError("no hooked module to show: hook one first")
        fig = go.Figure()
        for name, hist in (
            ("whole layer", layer["histogram"]),
            (f"channel {ex._channel.get('channel')}", ex._channel.get("histogram")),
        ):
            if hist:
                counts, edges = np.asarray(hist["counts"], float), np.asarray(hist["edges"])
                fig.add_bar(
                    x=(edges[:-1] + edges[1:]) / 2,
                    y=counts / max(counts.sum(), 1),
                    width=edges[1] - edges[0],
                    name=name,
                    opacity=0.65,
                )
        fig.update_layout(barmode="overlay", bargap=0)
        fig.update_yaxes(type="log", tickformat=".0%")
        return _layout(fig, "Value histogram")
    if view in ("mask", "score"):
        seg = ex._segmentation
        if not seg:
            raise LayerScopeError("no segmentation output: the model's output is not a class map")
        if view == "score":
            s = ex._class_score
            return _heatmap(_array(s["map"]), f"P({s['name']}) per pixel", cs)
        fig = _image_figure(ex, "Predicted mask")
        fig.add_layout_image(_layout_image(seg["mask_png"], "image/png", ex, opacity=0.5))
        return fig
    if view == "vector":
        if layer.get("kind") != "vector":
            raise LayerScopeError(f"{layer.get('module', 'no module')!r} is not a vector output")
        labels = [
            f"{lab} ({i})" if lab else f"#{i}"
            for i, lab in zip(
                layer["top_index"], layer["top_label"] or [""] * len(layer["top_index"])
            )
        ]
        fig = go.Figure(go.Bar(x=layer["top_value"], y=labels, orientation="h"))
        fig.update_yaxes(autorange="reversed")
        return _layout(
            fig, f"{layer['module'] or 'model'} · top {len(labels)} of {layer['length']}"
        )
    if view == "gradcam":
        gc = getattr(ex, "_gradcam", {}) or {}
        if not gc:
            raise LayerScopeError("no Grad-CAM computed: set overlay='gradcam' first")
        fig = _image_figure(ex, f"Grad-CAM of {gc['name']} at {gc['module']}")
        _add_overlay(fig, ex, _array(gc["map"]), gc["map_size"], gc["map_pool"], cs)
        return fig
    if view == "overlay":
        fig = _image_figure(ex, f"{layer.get('module', '')} on the image")
        if layer.get("kind") == "maps":
            z = _array(layer["aggregates"])[_AGGREGATES.index(ex.aggregate)]
            _add_overlay(fig, ex, z, layer["map_size"], layer["map_pool"], cs)
        return fig
    layer = _need_maps(ex)
    if view == "channel":
        title = f"{layer['module']} · channel {ex._channel['channel']} of {layer['channels']}"
        return _heatmap(_array(ex._channel["map"]), title, cs)
    if view == "aggregate":
        z = _array(layer["aggregates"])[_AGGREGATES.index(ex.aggregate)]
        return _heatmap(z, f"{layer['module']} · {ex.aggregate} over channels", cs)
    tiles, k = _array(layer["tiles"]), len(layer["topk"])
    cols = 4
    fig = go.Figure()
    for i in range(k):
        lo, hi = layer["tile_min"][i], layer["tile_max"][i]
        fig.add_heatmap(
            z=lo + tiles[i] / 255 * (hi - lo),
            colorscale=cs,
            showscale=False,
            xaxis=f"x{i + 1}",
            yaxis=f"y{i + 1}",
            name=f"#{layer['topk'][i]}",
        )
    fig.update_layout(grid=dict(rows=-(-k // cols), columns=cols, pattern="independent"))
    fig.update_yaxes(autorange="reversed", showticklabels=False)
    fig.update_xaxes(showticklabels=False)
    return _layout(fig, f"{layer['module']} · top {k} channels: {layer['topk']}")


def _layout_image(data: bytes, mime: str, ex: Explorer, opacity: float = 1.0) -> dict[str, Any]:
    h, w = ex._image["size"]
    return dict(
        source=f"data:{mime};base64,{base64.b64encode(data).decode()}",
        xref="x",
        yref="y",
        x=0,
        y=0,
        sizex=w,
        sizey=h,
        sizing="stretch",
        opacity=opacity,
        layer="below" if opacity == 1.0 else "above",
    )


def _image_figure(ex: Explorer, title: str) -> go.Figure:
    h, w = ex._image["size"]
    fig = go.Figure()
    fig.add_layout_image(_layout_image(ex._image["jpeg"], "image/jpeg", ex))
    fig.update_xaxes(range=[0, w], visible=False)
    fig.update_yaxes(range=[h, 0], visible=False, scaleanchor="x")
    return _layout(fig, title)


def _add_overlay(
    fig: go.Figure, ex: Explorer, z: np.ndarray, size: list[int], pool: int, colorscale: str
) -> None:
    """A pooled map over the photo: each cell placed on its footprint in image pixels."""
    g, (lh, lw) = ex._geometry, size
    dy = g["input_size"][0] / lh * pool * g["scale"][0]
    dx = g["input_size"][1] / lw * pool * g["scale"][1]
    fig.add_heatmap(
        z=z,
        x0=g["offset"][1] + dx / 2,
        dx=dx,
        y0=g["offset"][0] + dy / 2,
        dy=dy,
        colorscale=colorscale,
        opacity=ex.overlay_opacity,
    )
