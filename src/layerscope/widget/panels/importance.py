"""Channel importance of the selected module for the class the views use: every channel's
first-order estimate and the exact drop of the largest few, computed once per image, module and
class and shared with ``explorer.channel_importance()``."""

from __future__ import annotations

from ...capture import resolve_modules
from ...errors import NotReadyError
from ...importance import ChannelImportance
from ..schema import ImportancePayload
from ..spec import Spec, layout
from ..viewstate import ViewState
from .base import Context, Panel

__all__ = ["ImportancePanel", "importance_of"]


class ImportancePanel(Panel):
    name = "importance"
    after = ("layer", "class")
    inputs = ("show_importance",)
    owns = {"_importance": "importance"}
    views = ("importance",)
    shown = views

    def build(self, ctx: Context) -> dict[str, ImportancePayload | None]:
        layer, name = ctx.view.layer, ctx.selected_module
        payload = None
        if ctx.show_importance and name and layer and layer["kind"] in ("maps", "vector"):
            cls = ctx.session.default_class(ctx.selected_class)
            payload = ctx.session.importance(name, cls, layer["call"])
        return {"_importance": payload}

    def figure(self, view: ViewState, name: str) -> Spec:
        imp, layer = view.importance, view.layer
        if not imp or not layer or imp["module"] != layer["module"]:
            raise NotReadyError("no channel importance: set explorer.show_importance = True")
        return importance_spec(imp, view.channel["channel"] if view.channel else -1)


def importance_spec(imp: ImportancePayload, selected: int) -> Spec:
    """Channels by their effect on the class score: the first-order estimate and, where
    measured, the exact drop when zeroed; each bar carries its channel (a click selects it)."""
    labels = [f"#{c}" for c in imp["channels"]]
    rho = imp["rank_correlation"]
    title = (
        f"{imp['module']} · drop of the {imp['name']} score when a channel is zeroed"
        + ("" if rho is None else f" · rank correlation {rho:.2f}")
        + " (click a bar)"
    )
    data = [{"type": "bar", "name": name, "x": labels, "y": values, "customdata": imp["channels"],
             "marker": {"color": color},
             "hovertemplate": f"%{{x}}: %{{y:.4g}}<extra>{short}</extra>"}
            for name, short, values, color in (
                ("estimate (first order)", "estimate", imp["estimate"], "#4c78a8"),
                ("exact (channel zeroed)", "exact", imp["exact"], "#54a24b"))]  # fmt: skip
    # The selected channel gets a band behind its bars: recolouring the bars would recolour
    # the legend's swatches too (plotly draws them in the first bar's colour).
    at = imp["channels"].index(selected) if selected in imp["channels"] else -1
    band = [{"type": "rect", "xref": "x", "yref": "paper", "x0": at - 0.5, "x1": at + 0.5,
             "y0": 0, "y1": 1, "fillcolor": "rgba(245,133,24,0.3)", "line": {"width": 0},
             "layer": "below"}] if at >= 0 else []  # fmt: skip
    return {"data": data, "layout": layout(
        title, "channels", barmode="group", shapes=band, legend={"orientation": "h", "y": -0.25},
        xaxis={"type": "category"},
        yaxis={"zeroline": True, "title": {"text": "score drop"}})}  # fmt: skip


def importance_of(ctx: Context, module: str | None, target_class: int | None) -> ChannelImportance:
    """What ``explorer.channel_importance()`` returns (the view's result when it is the same)."""
    name = module or ctx.selected_module
    if not name:
        raise NotReadyError("no module selected: hook one first, or pass module=")
    (name,) = resolve_modules(ctx.session.model, [name], ctx.modules)
    s = ctx.session
    cls = s.default_class(ctx.selected_class if target_class is None else target_class)
    layer = ctx.view.layer
    call = layer["call"] if layer and name == ctx.selected_module else 0
    return s.channel_importance(name, cls, call)
