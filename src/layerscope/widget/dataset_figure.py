"""The Dataset panel's view as one figure spec: the selected channel's top image patches in a
grid, each with its score (a click opens its image), above every channel's dataset mean as bars
(the selected channel marked, dead channels grey; a click selects the bar's channel)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import NotReadyError
from .schema import DatasetPayload, decode_array
from .spec import Spec, crop_ref, layout

__all__ = ["dataset_spec", "patch_cells", "bar_colours", "SELECTED", "DEAD", "ALIVE"]

SELECTED, DEAD, ALIVE = "#e45756", "#b0b0b0", "#4c78a8"
_COLS = 8


def bar_colours(channels: int, selected: int, dead: np.ndarray) -> list[str]:
    colours = [ALIVE] * channels
    for c in dead.tolist():
        colours[int(c)] = DEAD
    if 0 <= selected < channels:
        colours[selected] = SELECTED
    return colours


def patch_cells(
    examples: list[Any], cols: int, x: tuple[float, float], y: tuple[float, float]
) -> tuple[list[dict[str, Any]], dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """Dataset patches in a grid of ``cols`` columns filling the paper box ``x`` by ``y``,
    on axes 1..len(examples): their traces (a transparent cell each, carrying the patch's hover
    and its click), axes, pictures and score notes. Shared by the Dataset and feature
    visualization views."""
    rows = max(1, -(-len(examples) // cols))
    cw, rh = (x[1] - x[0]) / cols, (y[1] - y[0]) / rows
    data: list[dict[str, Any]] = []
    axes: dict[str, Any] = {}
    images, notes = [], []
    for i, ex in enumerate(examples):
        r, c = divmod(i, cols)
        n = "" if i == 0 else str(i + 1)
        y1 = y[1] - r * rh - 0.05
        h, w = ex["crop_size"] if ex["crop_size"][0] > 0 else (1, 1)
        # constrain="domain": the axes shrink to the patch, so its score sits on top of it.
        axes[f"xaxis{n}"] = {"domain": [x[0] + c * cw + 0.005, x[0] + (c + 1) * cw - 0.005],
                             "range": [0, w], "visible": False, "anchor": f"y{n}",
                             "constrain": "domain"}  # fmt: skip
        axes[f"yaxis{n}"] = {"domain": [y1 - rh + 0.06, y1], "range": [h, 0],
                             "visible": False, "scaleanchor": f"x{n}",
                             "anchor": f"x{n}", "constrain": "domain"}  # fmt: skip
        if ex["crop_size"][0] > 0:
            images.append({"source": crop_ref(ex["rank"]), "xref": f"x{n}", "yref": f"y{n}",
                           "x": 0, "y": 0, "sizex": w, "sizey": h, "sizing": "stretch",
                           "layer": "below"})  # fmt: skip
        data.append({"type": "heatmap", "z": [[ex["score"]]], "x0": w / 2, "dx": w,
                     "y0": h / 2, "dy": h, "opacity": 0, "showscale": False,
                     "xaxis": f"x{n}", "yaxis": f"y{n}", "meta": {"rank": ex["rank"]},
                     "hovertemplate": f"{ex['source']}<br>score %{{z:.4g}} at unit "
                                      f"{tuple(ex['location'])}<br>click: open this image"
                                      "<extra></extra>"})  # fmt: skip
        notes.append({"text": f"{ex['score']:.3g}", "xref": f"x{n} domain",
                      "yref": f"y{n} domain", "x": 0.5, "y": 1.0, "yanchor": "bottom",
                      "showarrow": False, "font": {"size": 10}})  # fmt: skip
    return data, axes, images, notes


def dataset_spec(payload: DatasetPayload | None) -> Spec:
    if not payload:
        raise NotReadyError(
            "no dataset panel: run explorer.sweep(images) (or pass Explorer(..., sweep=...)) "
            "and select a swept module"
        )
    if "examples" not in payload:
        raise NotReadyError(payload.get("missing", "no dataset examples"))
    module, channel, examples = payload["module"], payload["channel"], payload["examples"]
    cols = max(4, min(_COLS, len(examples)))  # a few examples: bigger patches
    rows = max(1, -(-len(examples) // cols))
    top = 0.42  # the bars below, the patches above
    data, axes, images, notes = patch_cells(examples, cols, (0.0, 1.0), (top, 1.0))
    mean, peak = decode_array(payload["mean"]), decode_array(payload["max"])
    zero, dead = decode_array(payload["fraction_zero"]), decode_array(payload["dead"])
    hover = [f"channel {c}: mean {m:.3g}, max {p:.3g}, {z:.0%} zero"
             for c, (m, p, z) in enumerate(zip(mean, peak, zero))]  # fmt: skip
    b = str(len(examples) + 1)
    channels = np.arange(len(mean), dtype=np.int32)
    data.append({"type": "bar", "x": channels, "y": mean.astype(np.float32),
                 "customdata": channels, "text": hover, "textposition": "none",
                 "hovertemplate": "%{text}<extra></extra>", "showlegend": False,
                 "marker": {"color": bar_colours(len(mean), channel, dead)},
                 "xaxis": f"x{b}", "yaxis": f"y{b}"})  # fmt: skip
    axes[f"xaxis{b}"] = {"domain": [0, 1], "anchor": f"y{b}", "title": {"text": "channel"}}
    axes[f"yaxis{b}"] = {"domain": [0, top - 0.1], "anchor": f"x{b}",
                         "title": {"text": "dataset mean"}, "zeroline": True}  # fmt: skip
    title = (f"Dataset: {module} channel {channel}, its top {len(examples)} of "
             f"{payload['images']} images (click: open) · {len(dead)} dead in grey")  # fmt: skip
    return {"data": data, "layout": layout(
        title, "channels", height=260 + 110 * rows, images=images, annotations=notes,
        bargap=0, margin={"l": 44, "r": 8, "t": 28, "b": 32}, **axes)}  # fmt: skip
