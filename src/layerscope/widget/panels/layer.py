"""The layer views of the selected module: its channel maps, aggregate map, top-k grid,
histogram and statistics (or its vector, or what it is), for the selected call and frame. It
brings the selected channel along, and shares the module's output with the panels after it
(``ctx.outputs["layer"]``: the one output held outside the memory budget, when the store
could not keep it)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from ...errors import NotReadyError
from ...nested import iter_tensors
from .. import validation as check
from ..contract import colorscale_stops
from ..schema import LayerPayload, decode_array
from ..spec import Spec, heatmap_spec, histogram_spec, layout
from ..viewstate import ViewState, module_view
from .base import Context, Panel
from .concepts import unit_concept

__all__ = ["LayerPanel", "check_budget", "module_view_of", "channel_fits", "need_maps"]

LAYER_COLOUR, CHANNEL_COLOUR = "#4c78a8", "#f58518"


class LayerPanel(Panel):
    name = "layer"
    after = ("hooks",)
    inputs = ("selected_module", "selected_call", "selected_frame")
    owns = {"_layer": "layer", "_channel": "channel"}
    covers = ("channel",)  # the channel comes with the layer
    validates = ("selected_module", "selected_call", "selected_frame")
    views = ("aggregate", "grid", "histogram", "vector")
    shown = views

    def check(self, ctx: Context, name: str, value: Any) -> Any:
        module = ctx.selected_module
        if name == "selected_module":
            return value and ctx.known([value])[0]
        if name == "selected_call":
            counts = ctx.session.capturer.known_call_counts(ctx.session.inputs) or {}
            return check.check_call(value, module, counts.get(module, 1))
        return check.check_frame(value, ctx.view.layer, module)

    def build(self, ctx: Context) -> dict[str, Any] | None:
        name = ctx.selected_module
        if not name:
            return {"_layer": None, "_channel": None}
        if name not in ctx.hooked_modules:
            ctx.hook(name)  # selecting an unhooked module hooks it; the hooks panel selects it
            return None
        held = ctx.outputs.pop("layer", None)
        moved = held is None or held[0] != name
        if moved and (ctx.selected_call or ctx.selected_frame):
            ctx.quietly(selected_call=0, selected_frame=0)
        if not ctx.session.ready(name):  # a capture is coming: the widget says so at once
            pending: LayerPayload = {"module": name, "kind": "pending", "cls": "", "call": 0,
                                     "calls": 0}  # fmt: skip
            ctx.pending(self.name, {"_layer": pending, "_channel": None})
        view, calls = module_view_of(ctx, name, call=ctx.selected_call, frame=ctx.selected_frame,
                                     channel=None if moved else ctx.selected_channel)  # fmt: skip
        ctx.outputs["layer"] = (name, calls)
        ctx.session.drop_prefetched()  # nothing but the selected output is held past a click
        ctx.publish({"_layer": view.layer, "_channel": view.channel})
        if view.channel is not None and view.channel["channel"] != ctx.selected_channel:
            ctx.quietly(selected_channel=view.channel["channel"])
        check_budget(ctx)
        return None

    def export(self, ctx: Context, module: str, view: ViewState) -> ViewState:
        return module_view_of(ctx, module)[0]

    def figure(self, view: ViewState, name: str) -> Spec:
        if name == "histogram":
            return _histogram(view)
        if name == "vector":
            return _vector(view)
        layer = need_maps(view)
        cs = view.options.colorscale
        if name == "aggregate":
            how = view.options.aggregate
            z = decode_array(layer["aggregates"])[layer["aggregate_names"].index(how)]
            title = f"{layer['module']} · {how} over {layer['channels']} channels"
            return heatmap_spec(z, title, cs)
        return _grid(layer, cs, lambda c: _named(unit_concept(view, layer["module"], c)))


def _named(concept: tuple[str, float] | None) -> str:
    return f"{concept[0]} {concept[1]:.2f}" if concept else ""


def need_maps(view: ViewState) -> LayerPayload:
    layer = view.layer
    if not layer or layer["kind"] != "maps":
        what = layer["module"] if layer else "no module"
        raise NotReadyError(f"{what!r} has no spatial maps to show: hook a conv layer first")
    return layer


def channel_fits(view: ViewState) -> bool:
    """The channel payload is the shown layer's (they arrive together; a stale one is not)."""
    ch, layer = view.channel, view.layer
    return bool(ch and layer and ch["module"] == layer["module"] and ch["call"] == layer["call"])


def _histogram(view: ViewState) -> Spec:
    layer = view.layer
    if not layer or "histogram" not in layer:
        raise NotReadyError("no hooked module to show: hook one first")
    hists = [("whole layer", layer["histogram"], LAYER_COLOUR)]
    ch = view.channel
    if ch and channel_fits(view):
        hists.append((f"channel {ch['channel']}", ch["histogram"], CHANNEL_COLOUR))
    return histogram_spec(hists, "Value histogram")


def _vector(view: ViewState) -> Spec:
    """A vector's top entries (class logits, pooled features) as bars, best on top."""
    layer: Any = view.layer or {}
    if layer.get("kind") != "vector":
        raise NotReadyError(f"{layer.get('module', 'no module')!r} is not a vector output")
    names = layer["top_label"] or [None] * len(layer["top_index"])
    labels = [f"{n} ({i})" if n else f"#{i}" for i, n in zip(layer["top_index"], names)]
    probs = layer.get("top_probability")
    title = f"{layer['module'] or 'model'} · top {len(labels)} of {layer['length']}"
    trace = {"type": "bar", "orientation": "h", "y": labels, "x": layer["top_value"],
             "marker": {"color": LAYER_COLOUR},
             "hovertemplate": "%{y}: %{x:.4g}<br>%{text}<extra></extra>",
             "text": ([f"p = {p * 100:.1f}%" for p in probs] if probs
                      else [""] * len(labels))}  # fmt: skip
    return {"data": [trace], "layout": layout(
        title, yaxis={"autorange": "reversed", "automargin": True},
        xaxis={"zeroline": True}, margin={"l": 120, "r": 8, "t": 28, "b": 28})}  # fmt: skip


GRID_COLUMNS = 4


def _grid(layer: LayerPayload, cs: str, label: Callable[[int], str]) -> Spec:
    """The top-k channels' maps, one small heatmap each on its own axes (the browser draws
    them as tiles: click selects the channel, shift-click ablates it), each named by its
    channel and, when a dissection names the unit, its concept and IoU."""
    tiles, k = decode_array(layer["tiles"]), len(layer["topk"])
    rows = -(-k // GRID_COLUMNS)
    data: list[dict[str, Any]] = []
    axes: dict[str, dict[str, Any]] = {}
    for i, c in enumerate(layer["topk"]):
        lo, hi = layer["tile_min"][i], layer["tile_max"][i]
        n = "" if i == 0 else str(i + 1)
        data.append({"type": "heatmap", "z": lo + tiles[i].astype(np.float32) / 255 * (hi - lo),
                     "zmin": lo, "zmax": hi, "colorscale": colorscale_stops(cs),
                     "showscale": False, "xaxis": f"x{n}", "yaxis": f"y{n}",
                     "name": f"#{c} {label(c)}".strip(),
                     "meta": {"channel": c},
                     "hovertemplate": f"channel {c}<br>%{{z:.3g}}<extra></extra>"})  # fmt: skip
        axes[f"xaxis{n}"] = {"showticklabels": False}
        axes[f"yaxis{n}"] = {"showticklabels": False, "autorange": "reversed"}
    title = f"{layer['module']} · top {k} channels by mean activation"
    grid = {"rows": rows, "columns": GRID_COLUMNS, "pattern": "independent"}
    return {"data": data, "layout": layout(title, "tiles", height=120 + 90 * rows, grid=grid,
                                           **axes)}  # fmt: skip


def module_view_of(ctx: Context, name: str, **kw: Any) -> tuple[ViewState, list[Any]]:
    """The view-state of module ``name`` (``call``, ``frame``, ``channel`` as in
    :func:`~layerscope.widget.viewstate.module_view`) and its calls' outputs."""
    s = ctx.session
    calls = s.calls(name)
    layout = s.layout(name, calls[kw.get("call", 0)]) if calls else None
    view = module_view(ctx.view, name, type(ctx.modules[name]).__name__, calls, topk=ctx.topk,
                       bins=ctx.bins, class_names=s.class_names, layout=layout,
                       rf=s.fields.get(name), memo=ctx.memo, **kw)  # fmt: skip
    return view, calls


def check_budget(ctx: Context) -> None:
    """The selected module's output is the one thing held outside the model's budget, and
    only when the store could not keep it: say so."""
    held = ctx.outputs.get("layer")
    if held is None or ctx.session.holds(held[0]):
        return
    size = sum(x.numel() * x.element_size() for c in held[1] for x in iter_tensors(c))
    if size:
        warnings.warn(
            f"LayerScope: the selected module {held[0]}'s output ({size:,} bytes) "
            "is held by the Explorer beyond the memory budget of the model's store "
            f"({ctx.session.capturer.memory_budget:,} bytes); raise memory_budget to "
            "keep it in the cache",
            ResourceWarning,
            stacklevel=2,
        )
