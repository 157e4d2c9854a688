"""The Concepts panel: what a dissection (:func:`layerscope.dissect`) named the selected
module's units. Its concepts by number of units (a click picks one), the picked concept's units
as tiles, each its map on this image (with its best dataset patch when a sweep holds the
module; a click selects the channel), and an "Ablate these units" button (the front end's) that
sets ``ablations``. The channel card and the grid's tiles show each unit's concept and IoU
(read from this panel's payload in the view-state)."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import traitlets as t

from ...dataset.format import model_fingerprint
from ...dissect import Dissection, dissect
from ...errors import LayerScopeError, NotReadyError
from ..contract import colorscale_stops
from ..schema import ConceptsPayload, array_buffer, decode_array
from ..spec import Spec, layout, payload_ref
from ..validation import InvalidTraitError
from ..viewstate import ViewState
from .base import Context, Panel

__all__ = ["ConceptsPanel", "unit_concept"]

TRAIT = "_concepts"
_TILES = 8  # units of the picked concept shown as tiles


class ConceptsPanel(Panel):
    name = "concepts"
    after = ("layer", "channel", "dataset")  # the dataset's patches go on its tiles
    inputs = ("selected_concept",)
    owns = {TRAIT: f"extra.{TRAIT}"}
    validates = ("selected_concept",)
    traits = {
        # The concept whose units the Concepts panel lists ("" for the module's first); the
        # module filter sets it when its text names a concept.
        "selected_concept": t.Unicode("").tag(sync=True),
    }
    views = ("concepts",)
    shown = views

    def __init__(self) -> None:
        self.dissection: Dissection | None = None
        self.everywhere: dict[str, list[str]] = {}

    def use(self, model: Any, dissection: Any, what: str = "dissection") -> None:
        """Show ``dissection`` (None: none); one made with other weights is refused: its labels
        would be put on units this model computes otherwise."""
        if dissection is not None and not isinstance(dissection, Dissection):
            raise LayerScopeError(
                f"{what} takes a layerscope.Dissection (from layerscope.dissect or "
                f"Dissection.load), got {type(dissection).__name__}"
            )
        made = dissection.record.get("fingerprint") if dissection is not None else None
        if made and made != model_fingerprint(model):
            raise LayerScopeError(
                f"this dissection was made with another model (weights fingerprint {made[:12]}...,"
                " not this model's): its labels would not hold for what this Explorer shows. "
                "Dissect this model (explorer.dissect(images, masks=...))"
            )
        self.dissection = dissection
        self.everywhere = {}  # concept -> the modules with units of it
        if dissection is None:
            return
        for module in dissection.modules:
            for name in dict.fromkeys(c.name for c in dissection.labels(module) if c):
                self.everywhere.setdefault(name, []).append(module)

    def run(
        self,
        ctx: Context,
        images: Any,
        masks: Any,
        modules: list[str] | None,
        options: dict[str, Any],
    ) -> Dissection:
        run = functools.partial(dissect, masks=masks)
        return ctx.over_images(run, images, modules, options, "dissection", "dissect")

    def check(self, ctx: Context, name: str, value: Any) -> str:
        d = self.dissection
        if value and d is not None and value not in d.concepts:
            raise InvalidTraitError(
                f"no concept {value!r} in the dissection; it has {', '.join(d.concepts[:12])}"
                + (", ..." if len(d.concepts) > 12 else "")
            )
        return str(value)

    def build(self, ctx: Context) -> dict[str, ConceptsPayload | None]:
        layer, held, d = ctx.view.layer, ctx.outputs.get("layer"), self.dissection
        if d is None or not layer or layer["kind"] != "maps" or held is None:
            return {TRAIT: None}
        module = layer["module"]
        if layer["call"] != 0:  # the dissection counted the module's first call
            return {TRAIT: {"module": module, "missing": f"the dissection labels {module}'s "
                            "first call: select call 0"}}  # fmt: skip
        if module not in d.modules:
            return {TRAIT: {"module": module, "missing": f"{module} was not dissected (the "
                            f"dissection has {', '.join(d.modules)})"}}  # fmt: skip
        return {TRAIT: self.payload(ctx, module, held[1][layer["call"]])}

    def payload(self, ctx: Context, module: str, out: Any) -> ConceptsPayload:
        d = self.dissection
        assert d is not None
        labels = d.labels(module)
        names = d.concepts
        index = np.array([names.index(c.name) if c else -1 for c in labels], np.int32)
        iou = np.array([c.iou if c else 0.0 for c in labels], np.float32)
        counts = np.bincount(index[index >= 0], minlength=len(names))
        order = [int(k) for k in np.argsort(-counts, kind="stable") if counts[k] > 0]
        picked = ctx.selected_concept if ctx.selected_concept in names else ""
        picked = picked or (names[order[0]] if order else "")
        payload: ConceptsPayload = {
            "module": module, "names": names, "min_iou": d.min_iou, "images": d.images,
            "label": array_buffer(index), "iou": array_buffer(iou),
            "concepts": [names[k] for k in order], "units": [int(counts[k]) for k in order],
            "picked": picked, "tiles": [], "everywhere": self.everywhere,
        }  # fmt: skip
        if picked in names:
            k = names.index(picked)
            mine = sorted(np.flatnonzero(index == k).tolist(), key=lambda c: -iou[c])
            maps = out[0, mine[:_TILES]].float().cpu().numpy() if mine else []
            patches = self.patches(ctx, module, mine[:_TILES])
            payload["tiles"] = [
                {"channel": c, "iou": float(iou[c]), "map": array_buffer(m.astype(np.float32)),
                 **({"patch": patches[c]} if c in patches else {})}
                for c, m in zip(mine[:_TILES], maps)
            ]  # fmt: skip
            payload["picked_units"] = mine
        return payload

    @staticmethod
    def patches(ctx: Context, module: str, channels: list[int]) -> dict[int, bytes]:
        """Each unit's best dataset patch (JPEG) when the Dataset panel's sweep holds it."""
        sweep, crops = ctx.outputs.get("dataset", (None, None))
        if sweep is None or module not in sweep.modules or sweep.sources is None:
            return {}
        out = {}
        for c in channels:
            top = sweep.top(module, c)
            if top:
                out[c] = crops.get(sweep, module, top[0].index, tuple(top[0].location))[0]
        return out

    def figure(self, view: ViewState, name: str) -> Spec:
        return concepts_spec(view.extra.get(TRAIT), view.options.colorscale)

    def export(self, ctx: Context, module: str, view: ViewState) -> ViewState:
        d, held = self.dissection, ctx.outputs.get("layer")
        if d is None or module not in d.modules:
            return view
        calls = ctx.session.calls(module) if held is None or held[0] != module else held[1]
        if not calls or getattr(calls[0], "dim", lambda: 0)() != 4:
            return view
        return view.with_(extra={**view.extra, TRAIT: self.payload(ctx, module, calls[0])})


def unit_concept(view: ViewState, module: str, channel: int) -> tuple[str, float] | None:
    """The unit's concept and IoU when the view-state's dissection payload names it."""
    p: Any = view.extra.get(TRAIT)
    if not p or p.get("module") != module or "label" not in p:
        return None
    index, iou = decode_array(p["label"]), decode_array(p["iou"])
    if not 0 <= channel < len(index) or index[channel] < 0:
        return None
    return p["names"][int(index[channel])], float(iou[channel])


def concepts_spec(p: ConceptsPayload | None, colorscale: str) -> Spec:
    """The module's concepts by units (bars; a click picks one) above the picked concept's
    units as tiles (its map on this image, its best dataset patch under it when there is one;
    a click selects the channel)."""
    if not p:
        raise NotReadyError(
            "no dissection: run explorer.dissect(images, masks=...) (or pass "
            "Explorer(..., dissection=...)) and select a dissected module"
        )
    if "missing" in p:
        raise NotReadyError(p["missing"])
    tiles = p.get("tiles", [])
    with_patch = any("patch" in u for u in tiles)
    cols = max(4, len(tiles))
    data: list[dict[str, Any]] = [{
        "type": "bar", "x": p["concepts"], "y": p["units"], "customdata": p["concepts"],
        "marker": {"color": ["#e45756" if c == p["picked"] else "#4c78a8"
                             for c in p["concepts"]]},
        "meta": {"role": "concepts"}, "showlegend": False,
        "hovertemplate": "%{x}: %{y} units<br>click: list them<extra></extra>",
    }]  # fmt: skip
    axes: dict[str, Any] = {"xaxis": {"domain": [0, 1], "automargin": True},
                            "yaxis": {"domain": [0.62, 1], "title": {"text": "units"}}}  # fmt: skip
    images, notes = [], []
    for i, u in enumerate(tiles):
        n = str(i + 2)
        x0, x1 = i / cols + 0.005, (i + 1) / cols - 0.005
        z = decode_array(u["map"])
        h, w = z.shape
        y_map = [0.26, 0.5] if with_patch else [0.0, 0.5]
        axes[f"xaxis{n}"] = {"domain": [x0, x1], "visible": False, "anchor": f"y{n}",
                             "constrain": "domain"}  # fmt: skip
        axes[f"yaxis{n}"] = {"domain": y_map, "autorange": "reversed", "visible": False,
                             "scaleanchor": f"x{n}", "anchor": f"x{n}",
                             "constrain": "domain"}  # fmt: skip
        data.append({"type": "heatmap", "z": z, "colorscale": colorscale_stops(colorscale),
                     "showscale": False, "xaxis": f"x{n}", "yaxis": f"y{n}",
                     "meta": {"channel": u["channel"]},
                     "hovertemplate": f"channel {u['channel']}: IoU {u['iou']:.3f} with "
                                      f"{p['picked']}<br>click: select it"
                                      "<extra></extra>"})  # fmt: skip
        notes.append({"text": f"#{u['channel']} · {u['iou']:.2f}", "xref": f"x{n} domain",
                      "yref": f"y{n} domain", "x": 0.5, "y": 1.0, "yanchor": "bottom",
                      "showarrow": False, "font": {"size": 10}})  # fmt: skip
        if "patch" in u:
            m = str(len(tiles) + i + 2)
            axes[f"xaxis{m}"] = {"domain": [x0, x1], "visible": False, "anchor": f"y{m}",
                                 "range": [0, 1], "constrain": "domain"}  # fmt: skip
            axes[f"yaxis{m}"] = {"domain": [0.0, 0.22], "visible": False, "range": [1, 0],
                                 "scaleanchor": f"x{m}", "anchor": f"x{m}",
                                 "constrain": "domain"}  # fmt: skip
            images.append({"source": payload_ref(TRAIT, "tiles", i, "patch"), "xref": f"x{m}",
                           "yref": f"y{m}", "x": 0, "y": 0, "sizex": 1, "sizey": 1,
                           "sizing": "contain", "layer": "below"})  # fmt: skip
    labelled = int((decode_array(p["label"]) >= 0).sum())
    channels = len(decode_array(p["label"]))
    units = len(p.get("picked_units", []))
    best = f", the best {len(tiles)}" if len(tiles) < units else ""
    picked = f" · {p['picked']}: {units} units{best}" if p["picked"] else ""
    title = (f"Concepts of {p['module']}: {labelled} of {channels} units labelled (IoU ≥ "
             f"{p['min_iou']:g}, {p['images']} images){picked}")  # fmt: skip
    if not tiles:
        axes["yaxis"]["domain"] = [0, 1]
    return {"data": data, "layout": layout(
        title, "concepts", height=420 if with_patch else 340, images=images, annotations=notes,
        margin={"l": 44, "r": 8, "t": 28, "b": 8}, bargap=0.2, hovermode="x",
        **axes)}  # fmt: skip
