"""Ablations: the prediction with the chosen channels set to zero, beside the model's own."""

from __future__ import annotations

from typing import Any

from .. import validation as check
from ..schema import AblationPayload
from .base import Context, Panel

__all__ = ["AblationPanel"]


class AblationPanel(Panel):
    name = "ablation"
    after = ("image",)
    inputs = ("ablations",)
    owns = {"_ablation": "ablation"}
    validates = ("ablations",)

    def check(self, ctx: Context, name: str, value: Any) -> dict[str, list[int]]:
        value = {str(k): list(v) for k, v in value.items() if len(v)}
        ctx.known(list(value))
        shapes = ctx.session.capturer.known_shapes(ctx.session.inputs) or {}
        return check.check_ablations(value, shapes)

    def build(self, ctx: Context) -> dict[str, AblationPayload | None]:
        ablations = dict(ctx.ablations)
        return {"_ablation": ctx.session.ablate(ablations) if ablations else None}
