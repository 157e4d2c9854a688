"""Views as plotly figure specs: plain data, defined once, drawn three ways.

A panel's ``figure(view, name)`` returns a spec (``{"data": [...], "layout": {...}}``, arrays
as numpy). ``explorer.figure()`` and ``to_html`` make a ``plotly.graph_objects.Figure`` of it
(:func:`to_plotly`); the live widget sends it as a trait (:func:`for_browser`: arrays as binary
buffers) and the browser draws it as given, adding only the theme's colours and the linking
that needs no kernel (hover marks, clicks), found by ``layout.meta["link"]``.

Pictures are referred to, not copied into each spec: ``layout.images[i].source`` is one of
the references below, resolved to the widget's own image URLs in the browser and to data URLs
here."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from ..errors import LayerScopeError
from .contract import colorscale_stops
from .viewstate import ViewState

__all__ = ["Spec", "layout", "heatmap_spec", "histogram_spec", "box_shape", "for_browser",
           "to_plotly", "IMAGE", "MASK", "EDITED", "CHANGED", "crop_ref", "payload_ref",
           "picture_mime",
           "HEIGHT"]  # fmt: skip

Spec = dict[str, Any]
HEIGHT = 300
IMAGE, MASK = "layerscope:image", "layerscope:mask"  # the photo; the predicted mask
EDITED, CHANGED = "layerscope:edited", "layerscope:changed"  # with channels ablated
_CROP = "layerscope:crop:"  # a dataset example's patch, by rank
_PAYLOAD = "layerscope:payload:"  # a PNG in a panel's own payload: trait and key


def crop_ref(rank: int) -> str:
    return f"{_CROP}{rank}"


def payload_ref(trait: str, *path: str | int) -> str:
    """A picture (PNG or JPEG bytes) held in a panel's own payload, at ``path`` in
    ``view.extra[trait]`` (keys and list indices): the browser reads it from the trait, the
    export from the view-state."""
    return ":".join([f"{_PAYLOAD}{trait}", *map(str, path)])


def picture_mime(data: bytes) -> str:
    return "image/jpeg" if data[:2] == b"\xff\xd8" else "image/png"


def layout(title: str, link: str = "", height: int = HEIGHT, **more: Any) -> dict[str, Any]:
    """The layout every view starts from; ``link`` names the behaviour the browser attaches
    ("map": hover marks a cell, "image": hover and click link the photo, "channels": a click
    selects the bar's channel, "examples": a click opens a patch's image, "tiles")."""
    base: dict[str, Any] = {
        "title": {"text": title, "font": {"size": 12}, "x": 0.02, "xanchor": "left"},
        "margin": {"l": 36, "r": 8, "t": 28, "b": 28},
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
        "font": {"size": 11},
        "height": height,
        "autosize": True,
        "uirevision": title,
        "meta": {"link": link},
    }
    base.update(more)
    return base


def box_shape(box: dict[str, float], color: str, dash: str = "solid") -> dict[str, Any]:
    """A rectangle outline in data coordinates; ``box``: x0, x1, y0, y1."""
    return {"type": "rect", "xref": "x", "yref": "y", **box,
            "line": {"color": color, "width": 2, "dash": dash},
            "fillcolor": "rgba(0,0,0,0)"}  # fmt: skip


def heatmap_spec(
    z: np.ndarray, title: str, colorscale: str, *, zmin: float | None = None,
    zmax: float | None = None,
) -> Spec:  # fmt: skip
    """One map (a channel, an aggregate, a class score), y down; hover marks its cell."""
    trace: dict[str, Any] = {"type": "heatmap", "z": np.asarray(z, np.float32),
             "colorscale": colorscale_stops(colorscale), "colorbar": {"thickness": 10},
             "hovertemplate": "row %{y}, col %{x}<br>%{z:.4g}<extra></extra>"}  # fmt: skip
    if zmin is not None:
        trace.update(zmin=zmin, zmax=zmax)
    return {
        "data": [trace],
        "layout": layout(
            title, "map",
            xaxis={"showgrid": False, "zeroline": False, "constrain": "domain"},
            yaxis={"autorange": "reversed", "showgrid": False, "zeroline": False,
                   "scaleanchor": "x"},
            shapes=[],
        ),
    }  # fmt: skip


def histogram_spec(hists: list[tuple[str, Any, str]], title: str) -> Spec:
    """Value histograms as fractions of values, overlaid: (name, {counts, edges}, colour)."""
    data = []
    for name, h, color in hists:
        counts, edges = np.asarray(h["counts"], float), np.asarray(h["edges"], float)
        data.append({"type": "bar", "name": name, "x": (edges[:-1] + edges[1:]) / 2,
                     "y": counts / max(counts.sum(), 1), "width": float(edges[1] - edges[0]),
                     "marker": {"color": color}, "opacity": 0.65,
                     "hovertemplate": f"%{{x:.3g}}: %{{y:.2%}}<extra>{name}</extra>"})  # fmt: skip
    return {
        "data": data,
        "layout": layout(
            title, barmode="overlay", bargap=0, legend={"orientation": "h", "y": -0.18},
            yaxis={"type": "log", "tickformat": "~%", "title": {"text": "fraction"},
                   "automargin": True},
            xaxis={},
        ),
    }  # fmt: skip


# -- to the browser and to plotly.py -------------------------------------------------------------

# numpy dtype -> plotly.js typed-array code, and the dtype sent: exact for each (a 64-bit
# integer as a float64: exact up to 2**53; a float16 widened).
_DTYPES = {"float64": ("f8", np.float64), "float32": ("f4", np.float32),
           "float16": ("f4", np.float32), "int64": ("f8", np.float64),
           "uint64": ("f8", np.float64), "int32": ("i4", np.int32), "uint32": ("u4", np.uint32),
           "int16": ("i2", np.int16), "uint16": ("u2", np.uint16), "int8": ("i1", np.int8),
           "uint8": ("u1", np.uint8), "bool": ("u1", np.uint8)}  # fmt: skip


def for_browser(value: Any) -> Any:
    """``value`` with every numpy array as plotly.js's typed-array spec, its bytes a binary
    buffer of the widget's message (``{"dtype", "bdata", "shape"}``), numpy scalars as numbers."""
    if isinstance(value, dict):
        return {k: for_browser(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [for_browser(v) for v in value]
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "USO":  # text and objects: as a list, the way plotly.py sends
            return for_browser(value.tolist())
        if value.dtype.name not in _DTYPES or value.ndim > 3:
            raise LayerScopeError(
                f"a view's array has dtype {value.dtype} and {value.ndim} dimensions: send "
                "numbers in at most 3 dimensions"
            )
        code, kind = _DTYPES[value.dtype.name]
        arr = np.ascontiguousarray(value, dtype=kind)
        return {"dtype": code, "bdata": arr.tobytes(), "shape": ",".join(map(str, arr.shape))}
    if isinstance(value, np.generic):
        return value.item()
    return value


def _data_url(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def _source(ref: str, view: ViewState) -> str:
    if ref == IMAGE:
        return _data_url(view.scene.image["jpeg"], "image/jpeg")
    if ref == MASK and view.scene.segmentation:
        return _data_url(view.scene.segmentation["mask_png"], "image/png")
    a: Any = view.ablation or {}
    if ref == EDITED and "mask_png" in a:
        return _data_url(a["mask_png"], "image/png")
    if ref == CHANGED and "changed_png" in a:
        return _data_url(a["changed_png"], "image/png")
    if ref.startswith(_PAYLOAD):
        trait, *path = ref[len(_PAYLOAD) :].split(":")
        data: Any = view.extra.get(trait) or {}
        for key in path:
            data = data[int(key)] if isinstance(data, list) else (data or {}).get(key)
        if isinstance(data, bytes):
            return _data_url(data, picture_mime(data))
    if ref.startswith(_CROP) and view.dataset and "examples" in view.dataset:
        return _data_url(view.dataset["examples"][int(ref[len(_CROP) :])]["crop"], "image/jpeg")
    raise LayerScopeError(f"a view refers to {ref!r}, which this view-state does not hold")


def to_plotly(spec: Spec, view: ViewState) -> Any:
    """The spec as a ``plotly.graph_objects.Figure``, its pictures embedded as data URLs."""
    import plotly.graph_objects as go

    lay = dict(spec.get("layout", {}))
    if "images" in lay:
        lay["images"] = [{**im, "source": _source(im["source"], view)} for im in lay["images"]]
    return go.Figure(data=spec.get("data", []), layout=lay)
