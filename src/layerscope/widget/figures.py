"""The views as plotly ``go.Figure`` objects, drawn from a :class:`ViewState`, the data the
widget draws, so an exported figure shows what was on screen. Colour scales are the contract's
explicit stops, the same the browser uses."""

from __future__ import annotations

import base64
from typing import Any, TypeVar

import numpy as np
import plotly.graph_objects as go

from ..errors import LayerScopeError, NotReadyError
from ..images import Geometry
from .contract import colorscale_stops
from .dataset_figure import dataset_figure
from .schema import decode_array
from .viewstate import ViewState

_T = TypeVar("_T")

__all__ = ["build_figure", "VIEWS", "views_for"]

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
    "ablation",
    "importance",
    "dataset",
)
_PER_KIND = {
    "maps": ("overlay", "channel", "aggregate", "grid", "histogram"),
    "vector": ("vector", "histogram"),
    "values": ("histogram",),
}


def views_for(view: ViewState) -> tuple[str, ...]:
    """The views that have something to show for the view-state's module."""
    kind: str = view.layer["kind"] if view.layer else ""
    extra = ("importance",) if view.importance else ()
    if view.dataset and "examples" in view.dataset:
        extra = (*extra, "dataset")
    return (*_PER_KIND.get(kind, ()), *extra)


def _two(v: list[_T]) -> tuple[_T, _T]:
    return (v[0], v[1])


def _layout(fig: go.Figure, title: str) -> go.Figure:
    fig.update_layout(title=title, margin=dict(l=40, r=10, t=40, b=30), height=420)
    return fig


def _heatmap(z: np.ndarray, title: str, colorscale: str) -> go.Figure:
    fig = go.Figure(go.Heatmap(z=z, colorscale=colorscale_stops(colorscale)))
    fig.update_yaxes(autorange="reversed", scaleanchor="x")
    return _layout(fig, title)


def _need_maps(view: ViewState) -> dict[str, Any]:
    layer: dict[str, Any] = dict(view.layer or {})
    if layer.get("kind") != "maps":
        what = layer.get("module", "no module")
        raise NotReadyError(f"{what!r} has no spatial maps to show: hook a conv layer first")
    return layer


def _aggregate(layer: dict[str, Any], how: str) -> np.ndarray:
    names = layer["aggregate_names"]  # carried in the payload: no positional convention
    return decode_array(layer["aggregates"])[names.index(how)]


def build_figure(view: ViewState, name: str) -> go.Figure:
    """One view of ``view`` as a figure; ``name`` is one of :data:`VIEWS`."""
    if name not in VIEWS:
        raise LayerScopeError(f"unknown view {name!r}; choose one of {', '.join(VIEWS)}")
    layer: dict[str, Any] = dict(view.layer or {})
    cs, scene = view.options.colorscale, view.scene
    if name == "histogram":
        return _histogram(view, layer)
    if name in ("mask", "score"):
        if not scene.segmentation:
            raise LayerScopeError("no segmentation output: the model's output is not a class map")
        if name == "score":
            s = scene.class_score
            if not s:
                raise NotReadyError("no class selected for the score map")
            return _heatmap(decode_array(s["map"]), f"P({s['name']}) per pixel", cs)
        fig = _image_figure(view, "Predicted mask")
        fig.add_layout_image(_layout_image(scene.segmentation["mask_png"], "image/png", view, 0.5))
        return fig
    if name == "vector":
        return _vector(layer)
    if name == "ablation":
        return _ablation(view)
    if name == "importance":
        return _importance(view)
    if name == "dataset":
        return dataset_figure(view.dataset)
    if name == "gradcam":
        gc = view.gradcam
        if not gc:
            raise NotReadyError("no Grad-CAM computed: set overlay='gradcam' first")
        fig = _image_figure(view, f"Grad-CAM of {gc['name']} at {gc['module']}")
        _add_overlay(fig, view, decode_array(gc["map"]), gc["map_size"], gc["map_pool"])
        return fig
    if name == "overlay":
        fig = _image_figure(view, f"{layer.get('module', '')} on the image")
        if layer.get("kind") == "maps":
            z = _aggregate(layer, view.options.aggregate)
            _add_overlay(fig, view, z, layer["map_size"], layer["map_pool"])
        return fig
    layer = _need_maps(view)
    if name == "channel":
        ch = view.channel
        if not ch:
            raise NotReadyError(f"no channel of {layer['module']} selected")
        title = f"{layer['module']} · channel {ch['channel']} of {layer['channels']}"
        return _heatmap(decode_array(ch["map"]), title, cs)
    if name == "aggregate":
        how = view.options.aggregate
        return _heatmap(_aggregate(layer, how), f"{layer['module']} · {how} over channels", cs)
    return _grid(layer, cs)


def _histogram(view: ViewState, layer: dict[str, Any]) -> go.Figure:
    if "histogram" not in layer:
        raise NotReadyError("no hooked module to show: hook one first")
    fig = go.Figure()
    ch = view.channel
    for label, hist in (
        ("whole layer", layer["histogram"]),
        (f"channel {ch['channel'] if ch else None}", ch["histogram"] if ch else None),
    ):
        if hist:
            counts, edges = np.asarray(hist["counts"], float), np.asarray(hist["edges"])
            fig.add_bar(
                x=(edges[:-1] + edges[1:]) / 2,
                y=counts / max(counts.sum(), 1),
                width=edges[1] - edges[0],
                name=label,
                opacity=0.65,
            )
    fig.update_layout(barmode="overlay", bargap=0)
    fig.update_yaxes(type="log", tickformat=".0%")
    return _layout(fig, "Value histogram")


def _vector(layer: dict[str, Any]) -> go.Figure:
    if layer.get("kind") != "vector":
        raise LayerScopeError(f"{layer.get('module', 'no module')!r} is not a vector output")
    labels = [
        f"{lab} ({i})" if lab else f"#{i}"
        for i, lab in zip(layer["top_index"], layer["top_label"] or [""] * len(layer["top_index"]))
    ]
    fig = go.Figure(go.Bar(x=layer["top_value"], y=labels, orientation="h"))
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, f"{layer['module'] or 'model'} · top {len(labels)} of {layer['length']}")


def _ablation(view: ViewState) -> go.Figure:
    a = view.ablation
    if not a:
        raise NotReadyError("no ablation: set explorer.ablations = {module: [channels]} first")
    n = sum(len(v) for v in a["ablations"].values())
    if a["kind"] == "classification":
        labels = [e["label"] for e in a["scores"]]
        fig = go.Figure([go.Bar(y=labels, x=[e["before"] for e in a["scores"]], name="before",
                                orientation="h"),
                         go.Bar(y=labels, x=[e["after"] for e in a["scores"]], name="after",
                                orientation="h")])  # fmt: skip
        fig.update_yaxes(autorange="reversed")
        return _layout(fig, f"Top scores with {n} channel(s) ablated")
    fig = _image_figure(view, f"{n} channel(s) ablated: {a['changed_fraction']:.1%} of pixels "
                              "changed class (highlighted)")  # fmt: skip
    fig.add_layout_image(_layout_image(a["mask_png"], "image/png", view, 0.45))
    fig.add_layout_image(_layout_image(a["changed_png"], "image/png", view, 0.99))
    return fig


def _importance(view: ViewState) -> go.Figure:
    imp = view.importance
    if not imp:
        raise NotReadyError("no channel importance: set explorer.show_importance = True first")
    labels = [f"#{c}" for c in imp["channels"]]
    exact = [v if v is not None else float("nan") for v in imp["exact"]]
    fig = go.Figure([go.Bar(x=labels, y=imp["estimate"], name="estimate (first order)"),
                     go.Bar(x=labels, y=exact, name="exact (channel zeroed)")])  # fmt: skip
    fig.update_layout(barmode="group")
    return _layout(fig, f"{imp['module']} · drop of the {imp['name']} score when a channel is "
                        "zeroed")  # fmt: skip


def _grid(layer: dict[str, Any], cs: str) -> go.Figure:
    tiles, k = decode_array(layer["tiles"]), len(layer["topk"])
    cols = 4
    fig = go.Figure()
    for i in range(k):
        lo, hi = layer["tile_min"][i], layer["tile_max"][i]
        fig.add_heatmap(
            z=lo + tiles[i] / 255 * (hi - lo),
            colorscale=colorscale_stops(cs),
            showscale=False,
            xaxis=f"x{i + 1}",
            yaxis=f"y{i + 1}",
            name=f"#{layer['topk'][i]}",
        )
    fig.update_layout(grid=dict(rows=-(-k // cols), columns=cols, pattern="independent"))
    fig.update_yaxes(autorange="reversed", showticklabels=False)
    fig.update_xaxes(showticklabels=False)
    return _layout(fig, f"{layer['module']} · top {k} channels: {layer['topk']}")


def _layout_image(data: bytes, mime: str, view: ViewState, opacity: float = 1.0) -> dict[str, Any]:
    h, w = view.scene.image["size"]
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


def _image_figure(view: ViewState, title: str) -> go.Figure:
    h, w = view.scene.image["size"]
    fig = go.Figure()
    fig.add_layout_image(_layout_image(view.scene.image["jpeg"], "image/jpeg", view))
    fig.update_xaxes(range=[0, w], visible=False)
    fig.update_yaxes(range=[h, 0], visible=False, scaleanchor="x")
    if view.unit:  # a dataset example's unit: its cell (solid) and receptive field (dashed)
        colour = "#00e5ff"
        for (y0, x0, y1, x1), dash in ((view.unit["cell"], "solid"), (view.unit["field"], "dash")):
            fig.add_shape(type="rect", x0=x0, y0=y0, x1=x1, y1=y1,
                          line=dict(color=colour, width=2, dash=dash))  # fmt: skip
    return _layout(fig, title)


def _add_overlay(
    fig: go.Figure, view: ViewState, z: np.ndarray, size: list[int], pool: int
) -> None:
    """A pooled map over the photo: each cell placed on its footprint in image pixels."""
    g = view.scene.geometry
    geometry = Geometry(
        _two(g["image_size"]), _two(g["input_size"]), _two(g["scale"]), _two(g["offset"])
    )
    p = geometry.overlay_placement((size[0], size[1]), pool)
    fig.add_heatmap(
        z=z,
        x0=p["x0"],
        dx=p["dx"],
        y0=p["y0"],
        dy=p["dy"],
        colorscale=colorscale_stops(view.options.colorscale),
        opacity=view.options.overlay_opacity,
    )
