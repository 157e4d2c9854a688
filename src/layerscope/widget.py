"""The anywidget: synced traits and nothing else. The controller lives in explorer.py."""

from __future__ import annotations

import pathlib

import anywidget
import traitlets as t

__all__ = ["LayerScopeWidget"]

_STATIC = pathlib.Path(__file__).parent / "static"


class LayerScopeWidget(anywidget.AnyWidget):
    _esm = _STATIC / "widget.js"
    _css = _STATIC / "layerscope.css"

    hooked_modules = t.List(t.Unicode(), default_value=[]).tag(sync=True)
    """Qualified names of the modules whose outputs are captured (the tree's marked nodes)."""
    selected_module = t.Unicode("").tag(sync=True)
    """The hooked module the views show."""
    selected_call = t.Int(0).tag(sync=True)
    """Which call of the selected module to show (a reused ReLU runs several times)."""
    selected_frame = t.Int(0).tag(sync=True)
    """Which frame of a video output (N, C, T, H, W) the maps show."""
    selected_channel = t.Int(0).tag(sync=True)
    """The channel shown in the channel heatmap."""
    aggregate = t.Enum(["mean", "max", "l2"], "mean").tag(sync=True)
    """How the aggregate map combines channels."""
    overlay = t.Enum(["aggregate", "channel", "mask", "gradcam", "none"], "aggregate").tag(
        sync=True
    )
    """What is drawn over the image; ``gradcam`` computes Grad-CAM at the selected module for
    ``selected_class`` (one backward pass)."""
    gradcam_region = t.List(t.Float(), default_value=[]).tag(sync=True)
    """Image-pixel box (y0, x0, y1, x1) over which Grad-CAM sums the class score; empty: the
    pixels predicted as the class."""
    overlay_opacity = t.Float(0.55).tag(sync=True)
    """Opacity of the overlay, 0 to 1."""
    colorscale = t.Unicode("Viridis").tag(sync=True)
    """Plotly colour scale of the heatmaps and the overlay."""
    selected_class = t.Int(-1).tag(sync=True)
    """Class whose score map is shown (segmentation models); -1 picks the largest non-background."""

    image_name = t.Unicode("").tag(sync=True)
    """The shown image: a bundled sample's name (setting one loads it) or an uploaded file's."""

    _tree = t.List(t.Dict()).tag(sync=True)
    _samples = t.List(t.Unicode()).tag(sync=True)
    _upload = t.Dict().tag(sync=True)
    _image = t.Dict().tag(sync=True)
    _geometry = t.Dict().tag(sync=True)
    _layer = t.Dict().tag(sync=True)
    _channel = t.Dict().tag(sync=True)
    _segmentation = t.Dict().tag(sync=True)
    _class_score = t.Dict().tag(sync=True)
    _prediction = t.Dict().tag(sync=True)
    _gradcam = t.Dict().tag(sync=True)
    _status = t.Dict({"state": "idle"}).tag(sync=True)
    _error = t.Unicode("").tag(sync=True)
    _notice = t.Unicode("").tag(sync=True)
    _title = t.Unicode("").tag(sync=True)
