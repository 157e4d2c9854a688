"""The view-state: what the views draw, as data. The Python counterpart of ``js/src/state.js``.

A :class:`ViewState` holds, for one image, one module (and its call, frame and channel) and the
view options, the payloads of :mod:`layerscope.widget.schema`. The live widget publishes one as
its traits; ``explorer.figure(...)`` and ``explorer.to_html(...)`` render from the same objects,
so what is exported is what was on screen, and nothing reads the Explorer's internals. New views
(dataset examples, interventions) add their payloads here."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import OutOfRangeError
from ..nested import first_tensor
from ..receptive import ReceptiveField
from ..spatial import Layout
from .contract import DEFAULT_COLORSCALE
from .memo import PayloadMemo
from .payload import channel_payload, layer_payload
from .schema import (
    AblationPayload,
    ChannelPayload,
    ClassScorePayload,
    DatasetPayload,
    GeometryPayload,
    GradcamPayload,
    ImagePayload,
    ImportancePayload,
    LayerPayload,
    PredictionPayload,
    SegmentationPayload,
    UnitMarkPayload,
)

__all__ = ["Scene", "ViewOptions", "ViewState", "module_view"]


@dataclass(frozen=True)
class Scene:
    """What every view of one image shares: the photo, where the model's input lies on it, and
    the model's prediction (a segmentation's mask and score map, or a classifier's top
    classes)."""

    title: str
    notice: str
    image: ImagePayload
    geometry: GeometryPayload
    segmentation: SegmentationPayload | None = None
    class_score: ClassScorePayload | None = None
    prediction: PredictionPayload | None = None


@dataclass(frozen=True)
class ViewOptions:
    aggregate: str = "mean"
    colorscale: str = DEFAULT_COLORSCALE
    overlay: str = "aggregate"
    overlay_opacity: float = 0.55
    gradcam_region: tuple[float, ...] = ()


@dataclass(frozen=True)
class ViewState:
    """One screenful: the scene, the selected module's ``layer`` and ``channel`` payloads, the
    Grad-CAM of that module when shown, the prediction with channels ablated and the selected
    module's channel importance when asked for, the selected channel over a dataset sweep, and
    the options the views are drawn with."""

    scene: Scene
    options: ViewOptions = field(default_factory=ViewOptions)
    layer: LayerPayload | None = None
    channel: ChannelPayload | None = None
    gradcam: GradcamPayload | None = None
    ablation: AblationPayload | None = None
    importance: ImportancePayload | None = None
    dataset: DatasetPayload | None = None
    unit: UnitMarkPayload | None = None  # a dataset example's unit, marked on its image
    extra: dict[str, Any] = field(default_factory=dict)  # other panels' payloads, by trait

    def with_(self, **changes: Any) -> ViewState:
        return replace(self, **changes)


def module_view(
    base: ViewState,
    name: str,
    cls: str,
    calls: list[Any],
    *,
    call: int = 0,
    frame: int = 0,
    channel: int | None = None,
    topk: int = 16,
    bins: int = 64,
    class_names: list[str] | None = None,
    layout: Layout | None = None,
    rf: ReceptiveField | None = None,
    memo: PayloadMemo | None = None,
) -> ViewState:
    """The view-state of one module call: its layer payload and the selected channel's (the
    most active one when ``channel`` is None or out of range). With a ``memo``, the layer
    payload of an output seen before is reused."""
    if calls and not 0 <= call < len(calls):
        raise OutOfRangeError(f"{name} ran {len(calls)} time(s): call {call} does not exist")
    output = calls[call] if calls else None
    rf = rf if call == 0 else None
    names = tuple(class_names) if class_names is not None else None
    key = (name, cls, call, len(calls), frame, topk, bins, names, layout, rf)

    def make() -> LayerPayload:
        return layer_payload(name, cls, output, call=call, calls=len(calls), topk=topk,
                             bins=bins, frame=frame, class_names=class_names, layout=layout,
                             rf=rf)  # fmt: skip

    layer = memo.get_or_make(key, output, make) if memo is not None else make()
    chosen = None
    if layer["kind"] == "maps" and first_tensor(output) is not None:
        pick = channel if channel is not None and 0 <= channel < layer["channels"] else None
        edges = layer["histogram"]["edges"]
        chosen = channel_payload(
            name,
            call,
            output,
            layer["topk"][0] if pick is None else pick,
            bins=bins,
            value_range=[edges[0], edges[-1]],
            frame=frame,
            layout=layout,
        )
    return base.with_(layer=layer, channel=chosen, gradcam=None)
