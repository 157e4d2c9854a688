"""The photo as a view: the image with what the overlay mode draws over it (a map of the
selected module placed on its footprint, the predicted mask, Grad-CAM), the prediction with
channels ablated and its changed pixels, a dataset example's unit and the Grad-CAM region. One
definition for the widget's image, ``figure("overlay" | "mask" | "gradcam" | "ablation")``
and the export."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import NotReadyError
from ..images import Geometry
from .contract import colorscale_stops
from .schema import decode_array
from .spec import CHANGED, EDITED, IMAGE, MASK, Spec, box_shape, layout
from .viewstate import ViewState

__all__ = ["photo_spec", "UNIT_COLOUR"]

UNIT_COLOUR = "#00e5ff"


def _geometry(view: ViewState) -> Geometry:
    g = view.scene.geometry

    def two(v: list[Any]) -> tuple[Any, Any]:
        return (v[0], v[1])

    return Geometry(two(g["image_size"]), two(g["input_size"]), two(g["scale"]), two(g["offset"]))


def _overlay(view: ViewState, mode: str) -> dict[str, Any] | None:
    """The map over the photo in ``mode``: a transparent one where the mode draws none (it
    still carries hover over the photo); None when the module has no maps."""
    layer = view.layer
    if not layer or layer["kind"] != "maps":
        return None
    names = layer["aggregate_names"]
    aggregates = decode_array(layer["aggregates"])
    z, name, size, pool = aggregates[0], "", layer["map_size"], layer["map_pool"]
    opacity = view.options.overlay_opacity
    ch, gc = view.channel, view.gradcam
    if mode == "channel" and ch and ch["module"] == layer["module"]:
        z, name = decode_array(ch["map"]), f"channel {ch['channel']}"
    elif mode == "gradcam" and gc and gc["module"] == layer["module"]:
        z, name = decode_array(gc["map"]), f"Grad-CAM: {gc['name']}"
        if layer.get("calls", 1) > 1:  # of the call shown
            name += f" (call {layer['call']})"
        size, pool = gc["map_size"], gc["map_pool"]
    elif mode in ("aggregate", "channel"):
        how = view.options.aggregate
        z, name = aggregates[names.index(how)], how
    else:
        opacity = 0.0
    p = _geometry(view).overlay_placement((size[0], size[1]), pool)
    return {"type": "heatmap", "z": np.asarray(z, np.float32), **p,
            "colorscale": colorscale_stops(view.options.colorscale), "opacity": opacity,
            "showscale": opacity > 0, "colorbar": {"thickness": 10, "len": 0.8}, "name": name,
            "hovertemplate": "x %{x:.0f}, y %{y:.0f}<br>%{z:.3g}<extra></extra>"}  # fmt: skip


def _picture(source: str, w: int, h: int, opacity: float, below: bool = False) -> dict[str, Any]:
    return {"source": source, "xref": "x", "yref": "y", "x": 0, "y": 0, "sizex": w, "sizey": h,
            "sizing": "stretch", "opacity": opacity,
            "layer": "below" if below else "above"}  # fmt: skip


def photo_spec(view: ViewState, mode: str | None = None, title: str | None = None) -> Spec:
    """The photo in overlay ``mode`` (default: the view's own)."""
    mode = mode or view.options.overlay
    h, w = view.scene.image["size"]
    layer: Any = view.layer or {}
    overlay = _overlay(view, mode)
    a: Any = view.ablation or {}
    images = [_picture(IMAGE, w, h, 1.0, below=True)]
    if view.scene.segmentation and (mode == "mask" or overlay is None):
        # With channels ablated, the mask is the edited prediction.
        images.append(_picture(EDITED if "mask_png" in a else MASK, w, h,
                               view.options.overlay_opacity))  # fmt: skip
    if "changed_png" in a:  # the pixels whose class the ablation changed, fully opaque
        images.append(_picture(CHANGED, w, h, 1.0))
    shapes = []
    if view.unit:  # a dataset example's unit: its cell (solid) and receptive field (dotted)
        for box, dash in ((view.unit["cell"], "solid"), (view.unit["field"], "dot")):
            clipped = {"y0": max(0, box[0]), "x0": max(0, box[1]),
                       "y1": min(h, box[2]), "x1": min(w, box[3])}  # fmt: skip
            shapes.append(box_shape(clipped, UNIT_COLOUR, dash))
    region = view.options.gradcam_region
    if mode == "gradcam" and len(region) == 4:
        y0, x0, y1, x1 = region
        shapes.append(box_shape({"y0": y0, "x0": x0, "y1": y1, "x1": x1}, UNIT_COLOUR, "dot"))
    if title is None:
        maps = layer.get("kind") == "maps"
        title = f"{layer.get('module') or 'model'} on the image" if maps else "Input image"
    return {
        "data": [overlay] if overlay else [],
        "layout": layout(
            title, "image", images=images, shapes=shapes, hovermode="closest",
            xaxis={"range": [0, w], "showgrid": False, "zeroline": False,
                   "constrain": "domain", "visible": False},
            yaxis={"range": [h, 0], "showgrid": False, "zeroline": False, "scaleanchor": "x",
                   "visible": False},
        ),
    }  # fmt: skip


def need_segmentation(view: ViewState) -> None:
    if not view.scene.segmentation:
        raise NotReadyError("no segmentation output: the model's output is not a class map")
