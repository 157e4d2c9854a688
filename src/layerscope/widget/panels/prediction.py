"""The model's prediction for a class: the class's score map (a segmentation), for the class
picked in the legend or the largest predicted one. The mask and a classifier's top classes are
the scene's (they change with the image only)."""

from __future__ import annotations

from typing import Any

from ...errors import NotReadyError
from .. import validation as check
from ..photo import need_segmentation
from ..schema import ClassScorePayload, decode_array
from ..spec import Spec, heatmap_spec
from ..viewstate import ViewState
from .base import Context, Panel

__all__ = ["ClassPanel"]


class ClassPanel(Panel):
    name = "class"
    after = ("image",)
    inputs = ("selected_class",)
    owns = {"_class_score": "scene.class_score"}
    validates = ("selected_class",)
    views = ("score",)
    shown = views

    def check(self, ctx: Context, name: str, value: Any) -> int:
        return check.check_class(value, len(ctx.session.class_names))

    def build(self, ctx: Context) -> dict[str, ClassScorePayload | None] | None:
        s = ctx.session
        if s.class_kind is None:
            return None
        return {"_class_score": s.class_score(s.default_class(ctx.selected_class))}

    def figure(self, view: ViewState, name: str) -> Spec:
        need_segmentation(view)
        score = view.scene.class_score
        if not score:
            raise NotReadyError("no class selected for the score map")
        return heatmap_spec(decode_array(score["map"]), f"P({score['name']}) per pixel",
                            view.options.colorscale, zmin=0.0, zmax=1.0)  # fmt: skip
