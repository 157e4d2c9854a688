"""The image and what is drawn over it: a bundled sample picked by name or an uploaded file
becomes the image shown (the scene: photo, geometry, prediction; every panel after it starts
again), and the overlay's options restyle the views without a step. A dataset example's unit,
marked on the image, lives and goes with it."""

from __future__ import annotations

from typing import Any

from ...images import SAMPLE_IMAGES, sample_image
from .. import validation as check
from ..photo import need_segmentation, photo_spec
from ..spec import Spec
from ..steps import Unchanged
from ..viewstate import ViewState
from .base import SCENE, Context, Panel

__all__ = ["ImagePanel"]


class ImagePanel(Panel):
    name = SCENE
    inputs = ("image_name", "_upload")
    owns = {"_unit_mark": "unit"}
    validates = ("overlay_opacity",)
    views = ("image", "overlay", "mask")
    shown = ("image",)

    def __init__(self) -> None:
        self.pending: tuple[Any, str] | None = None  # an upload's bytes and name

    def changed(self, ctx: Context, name: str, value: Any) -> bool:
        if name != "_upload":
            return True
        if (value or {}).get("data") is None:
            return False
        self.pending = (bytes(value["data"]), str(value.get("name", "upload")))
        return True

    def check(self, ctx: Context, name: str, value: Any) -> Any:
        return check.check_opacity(value)

    def build(self, ctx: Context) -> None:
        pending, self.pending = self.pending, None
        if pending is None and ctx.image_name in SAMPLE_IMAGES:
            pending = (sample_image(ctx.image_name), ctx.image_name)
        if pending is None or pending[1] == ctx.shown_name and pending[1] in SAMPLE_IMAGES:
            return
        try:
            ctx.show_image(*pending)
        except Exception as exc:  # the image shown is still the one before, and its views
            ctx.quietly(image_name=ctx.shown_name)
            raise Unchanged(f"{type(exc).__name__}: {exc}") from exc

    def figure(self, view: ViewState, name: str) -> Spec:
        if name == "image":  # what the widget's photo shows, in the overlay mode chosen
            return photo_spec(view)
        if name == "mask":
            need_segmentation(view)
            return photo_spec(view, "mask", "Predicted mask")
        return photo_spec(view, "channel" if view.options.overlay == "channel" else "aggregate")
