"""The Dataset panel: a sweep over many images for the widget's model, the selected channel's
top images and the channels' statistics; opening an example makes its image the Explorer's,
with the unit marked. The payloads are :mod:`~layerscope.widget.dataset_view`'s."""

from __future__ import annotations

from typing import Any

from ...dataset import Sweep
from ...dataset import sweep as run_sweep
from ...dataset.format import model_fingerprint
from ...errors import LayerScopeError, NotReadyError
from ..dataset_figure import dataset_spec
from ..dataset_view import CropCache, dataset_payload, example, unit_mark
from ..schema import DatasetPayload
from ..spec import Spec
from ..viewstate import ViewState
from .base import Context, Panel

__all__ = ["DatasetPanel"]


class DatasetPanel(Panel):
    name = "dataset"
    after = ("layer", "channel")
    owns = {"_dataset": "dataset"}
    messages = ("show-example",)
    views = ("dataset",)
    shown = views

    def figure(self, view: ViewState, name: str) -> Spec:
        return dataset_spec(view.dataset)

    def __init__(self) -> None:
        self.sweep: Sweep | None = None
        self.crops = CropCache()

    @staticmethod
    def checked(sweep: Any, what: str) -> Sweep | None:
        if sweep is not None and not isinstance(sweep, Sweep):
            raise LayerScopeError(
                f"{what} takes a layerscope.Sweep (from layerscope.sweep or Sweep.load), got "
                f"{type(sweep).__name__}"
            )
        return sweep

    def use(self, model: Any, sweep: Any, what: str = "dataset_sweep") -> None:
        """Show ``sweep`` (None: none); a sweep of other weights is refused: its scores and
        units would be marked on maps this model computes, where they do not hold."""
        self.checked(sweep, what)
        if sweep is not None and sweep.fingerprint != model_fingerprint(model):
            raise LayerScopeError(
                "this sweep was made with another model (its weights fingerprint "
                f"{sweep.fingerprint[:12]}... is not this model's): its examples and scores would "
                "not match what this Explorer shows. Sweep this model (explorer.sweep(images)), "
                "or give the Explorer the model the sweep was made with"
            )
        self.sweep = sweep

    def run_sweep(
        self, ctx: Context, images: Any, modules: list[str] | None, options: dict[str, Any]
    ) -> Sweep:
        return ctx.over_images(run_sweep, images, modules, options, "dataset sweep", "sweep")

    def show_example(self, ctx: Context, rank: int) -> None:
        module, channel = ctx.selected_module, ctx.selected_channel
        if self.sweep is None:
            raise NotReadyError("no dataset sweep: explorer.sweep(images) runs one")
        ex = example(self.sweep, module, channel, rank)
        ctx.show_image(self.sweep.original(ex.index), str(ex.source))
        ctx.run()
        if ctx.selected_module == module and ctx.selected_channel != channel:
            ctx.set(selected_channel=channel)
        size = ctx.view.scene.image["size"]
        ctx.publish({"_unit_mark": unit_mark(self.sweep, module, channel, rank, size)})

    def message(self, ctx: Context, content: dict[str, Any]) -> None:
        self.show_example(ctx, int(content.get("rank", -1)))

    def build(self, ctx: Context) -> dict[str, DatasetPayload | None]:
        layer, name = ctx.view.layer, ctx.selected_module
        if self.sweep is not None:  # shared: the panels after it show its patches too
            ctx.outputs[self.name] = (self.sweep, self.crops)
        payload = None
        if self.sweep is not None and name and layer and layer["kind"] in ("maps", "vector"):
            payload = dataset_payload(self.sweep, name, ctx.selected_channel, self.crops)
        return {"_dataset": payload}

    def export(self, ctx: Context, module: str, view: ViewState) -> ViewState:
        if self.sweep is None or module not in self.sweep.modules or not view.channel:
            return view
        payload = dataset_payload(self.sweep, module, view.channel["channel"], self.crops)
        return view.with_(dataset=payload)
