"""Ablations: the prediction with the chosen channels set to zero, beside the model's own."""

from __future__ import annotations

from typing import Any

from ...errors import NotReadyError
from .. import validation as check
from ..photo import photo_spec
from ..schema import AblationPayload
from ..spec import Spec, layout
from ..viewstate import ViewState
from .base import Context, Panel

__all__ = ["AblationPanel"]


class AblationPanel(Panel):
    name = "ablation"
    after = ("image",)
    inputs = ("ablations",)
    owns = {"_ablation": "ablation"}
    validates = ("ablations",)
    views = ("ablation",)  # live, the photo shows the edited mask and the legend the shares

    def check(self, ctx: Context, name: str, value: Any) -> dict[str, list[int]]:
        value = {str(k): list(v) for k, v in value.items() if len(v)}
        ctx.known(list(value))
        shapes = ctx.session.capturer.known_shapes(ctx.session.inputs) or {}
        return check.check_ablations(value, shapes)

    def build(self, ctx: Context) -> dict[str, AblationPayload | None]:
        ablations = dict(ctx.ablations)
        return {"_ablation": ctx.session.ablate(ablations) if ablations else None}

    def figure(self, view: ViewState, name: str) -> Spec:
        a = view.ablation
        if not a:
            raise NotReadyError("no ablation: set explorer.ablations = {module: [channels]} first")
        n = sum(len(v) for v in a["ablations"].values())
        if a.get("kind") != "classification":
            title = (f"{n} channel(s) ablated: {a.get('changed_fraction', 0.0):.1%} of pixels "
                     "changed class (highlighted)")  # fmt: skip
            return photo_spec(view, "mask", title)
        scores = a.get("scores", [])
        labels = [e["label"] for e in scores]
        data = [
            {
                "type": "bar",
                "orientation": "h",
                "name": when,
                "y": labels,
                "x": [e[when] for e in scores],
            }
            for when in ("before", "after")
        ]
        return {"data": data, "layout": layout(
            f"Top scores with {n} channel(s) ablated", yaxis={"autorange": "reversed",
            "automargin": True}, margin={"l": 120, "r": 8, "t": 28, "b": 28})}  # fmt: skip
