"""The hooked modules (the tree's marked nodes): modules hooked together are captured together
(one forward, progress shown) before any view changes, and the newest one is selected."""

from __future__ import annotations

from typing import Any

from .base import Context, Panel

__all__ = ["HooksPanel"]


class HooksPanel(Panel):
    name = "hooks"
    after = ("image",)
    inputs = ("hooked_modules",)
    validates = ("hooked_modules",)

    def __init__(self) -> None:
        self.hooked: list[str] = []  # as of the last run, for this image
        self.renewed = False

    def new_image(self) -> None:
        self.hooked = []  # every hooked module is new for a new image
        self.renewed = True  # ... but the selection stays where it was

    def check(self, ctx: Context, name: str, value: Any) -> list[str]:
        return ctx.known(list(dict.fromkeys(value)))

    def build(self, ctx: Context) -> None:
        names = list(ctx.hooked_modules)
        added = [n for n in names if n not in self.hooked]
        renewed, self.renewed = self.renewed, False
        self.hooked = names
        # The layer panel takes the selected one's calls from here, not from the store again.
        # One module added under the Grad-CAM overlay: its Grad-CAM will run only what follows
        # it, from the modules before it, kept by this same forward.
        ctx.session.prefetch(added, stand_ins=ctx.overlay == "gradcam" and len(added) == 1)
        pick = ctx.selected_module
        if not names:
            pick = ""
        elif added and not (renewed and pick in names):
            pick = added[-1]
        elif pick not in names:
            pick = names[-1]
        if pick != ctx.selected_module:
            ctx.set(selected_module=pick)
        elif added:  # the selection stays, but its output is new (a new image)
            ctx.mark("layer")
