"""Grad-CAM at the selected module for the class (picked, else the largest predicted), summed
over the class's pixels or a drawn region: one forward and backward serves every hooked
module, kept in the model's store; ``explorer.grad_cam()`` reads the same."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ...errors import LayerScopeError, NotReadyError
from ...gradients import GradCam, grad_cam
from ...nested import first_tensor
from ...spatial import spatial_maps
from .. import validation as check
from ..payload import class_label, gradcam_payload
from ..photo import photo_spec
from ..schema import GradcamPayload
from ..spec import Spec, histogram_spec
from ..viewstate import ViewState
from .base import Context, Panel
from .layer import LAYER_COLOUR, check_budget

__all__ = ["GradcamPanel", "explain"]


class GradcamPanel(Panel):
    name = "gradcam"
    after = ("layer", "class")
    inputs = ("overlay", "gradcam_region")
    owns = {"_gradcam": "gradcam"}
    validates = ("gradcam_region",)
    views = ("gradcam", "gradient")
    shown = ("gradient",)  # the map itself is drawn over the photo (the image view)

    def __init__(self) -> None:
        # Grad-CAM of a later call of a module run several times (one forward and backward
        # each), for this image: the store's pass covers first calls.
        self.later: dict[Any, GradCam] = {}

    def new_image(self) -> None:
        self.later = {}

    def check(self, ctx: Context, name: str, value: Any) -> list[float]:
        return check.check_region(list(value))

    def build(self, ctx: Context) -> dict[str, GradcamPayload | None]:
        layer, name, s = ctx.view.layer, ctx.selected_module, ctx.session
        if ctx.overlay != "gradcam" or not name:
            return {"_gradcam": None}
        cls = s.default_class(ctx.selected_class)
        cams = {}
        region = ctx.gradcam_region or None
        call = layer["call"] if layer else 0
        if layer and layer["kind"] == "maps" and call:
            at = (name, call, cls, tuple(region or ()))
            if at not in self.later:
                g = grad_cam(s.model, s.inputs, name, cls, region=s.region_mask(region),
                             call=call, layout=s.layouts.get(name))  # fmt: skip
                assert isinstance(g, GradCam)  # one image: one result
                self.later[at] = g
            cams = {name: self.later[at]}
        elif layer and layer["kind"] == "maps":
            cams = s.grad_cams(list(ctx.hooked_modules), cls, region)
        if name not in cams:
            raise LayerScopeError(f"Grad-CAM needs a spatial map; {name} has none")
        g = cams[name]
        label = class_label(s.class_names, cls)
        key = ("gradcam", name, call, cls, label, g.score, g.pixels, ctx.bins)
        payload = ctx.memo.get_or_make(key, (g.cam, g.gradient), lambda: gradcam_payload(
            name, cls, label, g.cam, g.gradient, score=g.score, pixels=g.pixels, bins=ctx.bins
        ))  # fmt: skip
        check_budget(ctx)
        return {"_gradcam": payload}

    def figure(self, view: ViewState, name: str) -> Spec:
        gc, layer = view.gradcam, view.layer
        if not gc or (view.options.overlay != "gradcam" and name == "gradient"):
            raise NotReadyError("no Grad-CAM computed: set overlay='gradcam' first")
        # A module run several times: say which call's Grad-CAM this is.
        first = f" (call {layer['call']})" if layer and layer.get("calls", 1) > 1 else ""
        if name == "gradcam":
            title = f"Grad-CAM of {gc['name']} at {gc['module']}{first}"
            return photo_spec(view, "gradcam", title)
        if not layer or layer["module"] != gc["module"]:
            raise NotReadyError(f"the Grad-CAM shown is {gc['module']}'s")
        title = f"Gradient of P({gc['name']}) at {gc['module']}{first}"
        return histogram_spec([("gradient", gc["histogram"], LAYER_COLOUR)], title)


def explain(
    ctx: Context, module: str | None, target_class: int | None, region: list[float] | None
) -> GradCam:
    """What ``explorer.grad_cam()`` returns: the views' pass when it holds ``module``, else
    Grad-CAM computed afresh."""
    name = module or ctx.selected_module
    if not name:
        raise NotReadyError("no module selected: hook one first")
    s = ctx.session
    cls = s.default_class(ctx.selected_class if target_class is None else target_class)
    if name in ctx.hooked_modules:
        # The views' pass (one forward and backward for every hooked module, kept in the
        # store) serves it when it is there: a lecture asks for what it just drew.
        cached = s.grad_cams([name], cls, region).get(name)
        calls = s.capture([name], "hooked modules").calls(name) if cached is not None else []
        out = first_tensor(calls[0]) if calls else None
        # Served from the store only as the module gave it: not dropped or kept in bfloat16
        # by the budget (then computed afresh below).
        if cached is not None and out is not None and out.dtype == cached.gradient.dtype:
            activation = spatial_maps(out, 0, s.layouts.get(name))[0]
            assert activation is not None  # its Grad-CAM was computed: it has maps
            weights = cached.gradient.float().mean(dim=(1, 2))
            return replace(cached, activation=activation, weights=weights)
    result = grad_cam(s.model, s.inputs, name, cls, region=s.region_mask(region),
                      layout=s.layouts.get(name))  # fmt: skip
    assert isinstance(result, GradCam)  # the Explorer's input is one image: one result
    return result
