"""Channel importance of the selected module for the class the views use: every channel's
first-order estimate and the exact drop of the largest few, computed once per image, module and
class and shared with ``explorer.channel_importance()``."""

from __future__ import annotations

from ...capture import resolve_modules
from ...errors import NotReadyError
from ...importance import ChannelImportance
from ..schema import ImportancePayload
from .base import Context, Panel

__all__ = ["ImportancePanel", "importance_of"]


class ImportancePanel(Panel):
    name = "importance"
    after = ("layer", "class")
    inputs = ("show_importance",)
    owns = {"_importance": "importance"}

    def build(self, ctx: Context) -> dict[str, ImportancePayload | None]:
        layer, name = ctx.view.layer, ctx.selected_module
        payload = None
        if ctx.show_importance and name and layer and layer["kind"] in ("maps", "vector"):
            cls = ctx.session.default_class(ctx.selected_class)
            payload = ctx.session.importance(name, cls, layer["call"])
        return {"_importance": payload}


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
