"""The layer views of the selected module: its channel maps, aggregate map, top-k grid,
histogram and statistics (or its vector, or what it is), for the selected call and frame. It
brings the selected channel along, and shares the module's output with the panels after it
(``ctx.outputs["layer"]``: the one output held outside the memory budget, when the store
could not keep it)."""

from __future__ import annotations

import warnings
from typing import Any

from ...nested import iter_tensors
from .. import validation as check
from ..schema import LayerPayload
from ..viewstate import ViewState, module_view
from .base import Context, Panel

__all__ = ["LayerPanel", "check_budget", "module_view_of"]


class LayerPanel(Panel):
    name = "layer"
    after = ("hooks",)
    inputs = ("selected_module", "selected_call", "selected_frame")
    owns = {"_layer": "layer", "_channel": "channel"}
    covers = ("channel",)  # the channel comes with the layer
    validates = ("selected_module", "selected_call", "selected_frame")

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
