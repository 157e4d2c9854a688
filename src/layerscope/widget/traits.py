"""The anywidget and its synced traits. Public traits are what a click changes and a cell can set;
private ones (``_layer``, ...) carry the payloads of :mod:`layerscope.widget.schema`, always
through :func:`~layerscope.widget.schema.json_safe`."""

from __future__ import annotations

import pathlib
from collections.abc import Callable
from typing import Any

import anywidget
import traitlets as t

from .contract import AGGREGATES, COLORSCALES, DEFAULT_COLORSCALE, OVERLAYS
from .schema import json_safe

__all__ = ["LayerScopeWidget", "PUBLIC_TRAITS", "payload_trait"]

_STATIC = pathlib.Path(__file__).resolve().parent.parent / "static"


def _payload_to_json(value: Any, _widget: Any) -> Any:
    return json_safe(value)  # binary buffers pass; NaN and infinity become null


def payload_trait(default: Any = None) -> t.TraitType:
    trait = t.Dict() if default is None else t.Dict(default)
    return trait.tag(sync=True, to_json=_payload_to_json)


class LayerScopeWidget(anywidget.AnyWidget):
    """The synced state of the Explorer's widget (see :class:`layerscope.Explorer`)."""

    _refused: Callable[[str, str], None] = staticmethod(lambda name, message: None)
    """Told of a value from the browser refused (the Explorer shows it as its panel's error)."""

    def set_state(self, sync_data: dict[str, Any]) -> None:
        """Values from the browser, one by one: a refused one is shown as an error (the panel's
        that takes it) and sent back as it was kept, and does not undo the others."""
        for name, value in sync_data.items():
            try:
                super().set_state({name: value})
            except t.TraitError as exc:
                self._refused(name, str(exc))
                self.send_state(name)

    _esm = _STATIC / "widget.js"
    _css = _STATIC / "layerscope.css"

    hooked_modules = t.List(t.Unicode(), default_value=[]).tag(sync=True)
    """Qualified names of the modules whose outputs are captured (the tree's marked nodes).
    Type: list of str. Default: []. Unknown names are refused with close matches."""
    selected_module = t.Unicode("").tag(sync=True)
    """The hooked module the views show; selecting an unhooked module hooks it. Default: ""."""
    selected_call = t.Int(0).tag(sync=True)
    """Which call of the selected module to show (a reused ReLU runs several times), from 0."""
    selected_frame = t.Int(0).tag(sync=True)
    """Which frame of a video output (N, C, T, H, W) the maps show, from 0."""
    selected_channel = t.Int(0).tag(sync=True)
    """The channel shown in the channel heatmap; set to the most active one when the selected
    module changes."""
    aggregate = t.Enum(list(AGGREGATES), AGGREGATES[0]).tag(sync=True)
    """How the aggregate map combines channels: one of ``AGGREGATES`` (mean, max, l2)."""
    overlay = t.Enum(list(OVERLAYS), "aggregate").tag(sync=True)
    """What is drawn over the image: aggregate, channel, mask, gradcam (Grad-CAM at the selected
    module for ``selected_class``: one forward and backward for every hooked module) or none."""
    gradcam_region = t.List(t.Float(), default_value=[]).tag(sync=True)
    """Image-pixel box (y0, x0, y1, x1) over which Grad-CAM sums the class score; empty: the
    pixels predicted as the class."""
    overlay_opacity = t.Float(0.55).tag(sync=True)
    """Opacity of the overlay, 0 to 1."""
    colorscale = t.Enum(list(COLORSCALES), DEFAULT_COLORSCALE).tag(sync=True)
    """Colour scale of the heatmaps and the overlay; the same stops in the widget, in
    ``figure()`` and in ``to_html()``."""
    selected_class = t.Int(-1).tag(sync=True)
    """Class whose score map (segmentation) or Grad-CAM is shown; -1 picks the largest predicted
    non-background class, or the top prediction."""
    ablations = t.Dict(value_trait=t.List(), default_value={}).tag(sync=True)
    """Channels set to zero, by module (``{"backbone.layer4": [3, 7]}``): the prediction views
    show the edited prediction beside the model's own. Shift-click a channel tile to toggle one;
    an empty dict is the model's own prediction."""
    show_importance = t.Bool(False).tag(sync=True)
    """Whether to compute and show the selected module's channel importance for the selected
    class (one forward and backward, and exact ablations of the top channels)."""
    image_name = t.Unicode("").tag(sync=True)
    """The shown image: a bundled sample's name (setting one loads it) or an uploaded file's."""

    _tree = t.List(t.Dict()).tag(sync=True)
    _samples = t.List(t.Unicode()).tag(sync=True)
    _shown_views = t.List(t.Unicode()).tag(sync=True)  # each in trait _view_<name>
    _upload = t.Dict().tag(sync=True)
    _image = payload_trait()
    _geometry = payload_trait()
    _layer = payload_trait()
    _channel = payload_trait()
    _segmentation = payload_trait()
    _class_score = payload_trait()
    _prediction = payload_trait()
    _gradcam = payload_trait()
    _ablation = payload_trait()
    _importance = payload_trait()
    _dataset = payload_trait()
    _unit_mark = payload_trait()
    _status = payload_trait({"state": "idle"})
    _error = t.Unicode("").tag(sync=True)
    _notice = t.Unicode("").tag(sync=True)
    _title = t.Unicode("").tag(sync=True)


# What a user may pass to the Explorer besides its own arguments: the documented traits.
PUBLIC_TRAITS = tuple(
    name for name in LayerScopeWidget.class_trait_names(sync=True) if not name.startswith("_")
)
