"""The selected channel of the selected module: its heatmap, histogram and statistics, on the
layer's value range (a module's first view brings its most active channel along)."""

from __future__ import annotations

from typing import Any

from torch import nn

from ...compare import Comparison, compare_images, compare_models
from ...errors import ArgumentError, NotReadyError
from ...preprocess import Preprocess
from .. import validation as check
from ..payload import channel_payload
from ..schema import ChannelPayload, decode_array
from ..spec import Spec, heatmap_spec
from ..viewstate import ViewState
from .base import Context, Panel
from .concepts import unit_concept
from .layer import channel_fits, need_maps

__all__ = ["ChannelPanel", "compare_maps"]


class ChannelPanel(Panel):
    name = "channel"
    after = ("layer",)
    inputs = ("selected_channel",)
    owns = {"_channel": "channel"}
    validates = ("selected_channel",)
    views = ("channel",)
    shown = views

    def check(self, ctx: Context, name: str, value: Any) -> int:
        return check.check_channel(value, ctx.view.layer, ctx.selected_module)

    def build(self, ctx: Context) -> dict[str, ChannelPayload | None] | None:
        layer, held = ctx.view.layer, ctx.outputs.get("layer")
        if not layer or layer["kind"] != "maps" or held is None:
            return None
        name, calls = held
        call, edges = layer["call"], layer["histogram"]["edges"]
        payload = channel_payload(name, call, calls[call], ctx.selected_channel, bins=ctx.bins,
                                  value_range=[edges[0], edges[-1]], frame=layer.get("frame", 0),
                                  layout=ctx.session.layout(name, calls[call]))  # fmt: skip
        return {"_channel": payload}

    def figure(self, view: ViewState, name: str) -> Spec:
        layer, ch = need_maps(view), view.channel
        if not ch or not channel_fits(view):
            raise NotReadyError(f"no channel of {layer['module']} selected")
        title = f"{layer['module']} · channel {ch['channel']} of {layer['channels']}"
        named = unit_concept(view, layer["module"], ch["channel"])  # a dissection's concept
        title += f" · {named[0]} (IoU {named[1]:.2f})" if named else ""
        return heatmap_spec(decode_array(ch["map"]), title, view.options.colorscale)


def compare_maps(
    ctx: Context, image: Any, model: nn.Module | None, module: str | None, channel: int | str | None
) -> Comparison:
    """What ``explorer.compare()`` returns: the selected channel's map (or ``channel``'s, or
    the aggregate map) for this image against ``image``, or against ``model``."""
    name = module or ctx.selected_module
    if not name:
        raise NotReadyError("no module selected: hook one first, or pass module=")
    if (image is None) == (model is None):
        raise ArgumentError("pass either image= (another image) or model= (another model)")
    ch = None if channel == "aggregate" else int(channel) if channel is not None else (
        ctx.selected_channel if name == ctx.selected_module else None)  # fmt: skip
    s = ctx.session
    pre, how = s.preprocess, ctx.aggregate
    if model is not None:  # (then image is None)
        return compare_models(s.model, model, s.prepared.image, name, preprocess=pre, channel=ch,
                              aggregate=how, labels=("this model", "other model"))  # fmt: skip
    if isinstance(pre, Preprocess) and not pre.crop:  # both sides one size: the maps line up
        pre = Preprocess(resize=s.prepared.geometry.input_size, mean=pre.mean, std=pre.std)
    return compare_images(s.model, s.prepared.image, image, name, preprocess=pre, channel=ch,
                          aggregate=how,
                          labels=(ctx.image_name or "this image", "other image"))  # fmt: skip
