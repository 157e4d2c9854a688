"""The Dataset panel as one plotly figure (``explorer.figure("dataset")`` and the HTML export):
the channel's top image patches in a grid, with their scores, above every channel's dataset mean
as bars (the selected channel marked, dead channels grey). The same payload the widget draws."""

from __future__ import annotations

import base64

import numpy as np
import plotly.graph_objects as go

from ..errors import LayerScopeError
from .schema import DatasetPayload, decode_array

__all__ = ["dataset_figure", "bar_colours", "SELECTED", "DEAD", "ALIVE"]

SELECTED, DEAD, ALIVE = "#e45756", "#b0b0b0", "#4c78a8"
_COLS = 8


def bar_colours(channels: int, selected: int, dead: np.ndarray) -> list[str]:
    colours = [ALIVE] * channels
    for c in dead.tolist():
        colours[int(c)] = DEAD
    if 0 <= selected < channels:
        colours[selected] = SELECTED
    return colours


def dataset_figure(payload: DatasetPayload | None) -> go.Figure:
    if not payload:
        raise LayerScopeError(
            "no dataset panel: run explorer.sweep(images) (or pass Explorer(..., sweep=...)) "
            "and select a swept module"
        )
    if "examples" not in payload:
        raise LayerScopeError(payload.get("missing", "no dataset examples"))
    module, channel = payload["module"], payload["channel"]
    examples = payload["examples"]
    rows = max(1, -(-len(examples) // _COLS))
    top = 0.42  # the bars below, the patches above
    fig = go.Figure()
    for i, ex in enumerate(examples):
        r, c = divmod(i, _COLS)
        ax = "" if i == 0 else str(i + 1)
        x0, x1 = c / _COLS + 0.005, (c + 1) / _COLS - 0.005
        y1 = 1 - r * (1 - top) / rows - 0.05
        y0 = y1 - (1 - top) / rows + 0.06
        h, w = ex["crop_size"] if ex["crop"] else (1, 1)
        fig.update_layout(
            {
                f"xaxis{ax}": dict(domain=[x0, x1], range=[0, w], visible=False),
                f"yaxis{ax}": dict(
                    domain=[y0, y1], range=[h, 0], visible=False, scaleanchor=f"x{ax}"
                ),
            }  # fmt: skip
        )
        if ex["crop"]:
            source = "data:image/jpeg;base64," + base64.b64encode(ex["crop"]).decode()
            fig.add_layout_image(source=source, xref=f"x{ax}", yref=f"y{ax}", x=0, y=0,
                                 sizex=w, sizey=h, sizing="stretch", layer="below")  # fmt: skip
        # An invisible point per patch carries the hover (source, score, unit).
        fig.add_scatter(x=[w / 2], y=[h / 2], xaxis=f"x{ax}", yaxis=f"y{ax}", mode="markers",
                        marker=dict(opacity=0), showlegend=False,
                        hovertext=f"{ex['source']}<br>score {ex['score']:.4g}<br>unit "
                                  f"{tuple(ex['location'])}", hoverinfo="text")  # fmt: skip
        fig.add_annotation(text=f"{ex['score']:.3g}", xref=f"x{ax} domain", yref=f"y{ax} domain",
                           x=0.5, y=1.0, yanchor="bottom", showarrow=False,
                           font=dict(size=10))  # fmt: skip
    mean, peak = decode_array(payload["mean"]), decode_array(payload["max"])
    zero, dead = decode_array(payload["fraction_zero"]), decode_array(payload["dead"])
    hover = [f"channel {c}: mean {m:.3g}, max {p:.3g}, {z:.0%} zero"
             for c, (m, p, z) in enumerate(zip(mean, peak, zero))]  # fmt: skip
    bar_axis = str(len(examples) + 1)
    fig.add_bar(x=np.arange(len(mean)), y=mean, marker_color=bar_colours(len(mean), channel, dead),
                hovertext=hover, hoverinfo="text", xaxis=f"x{bar_axis}", yaxis=f"y{bar_axis}",
                showlegend=False)  # fmt: skip
    fig.update_layout(
        {
            f"xaxis{bar_axis}": dict(domain=[0, 1], anchor=f"y{bar_axis}", title="channel"),
            f"yaxis{bar_axis}": dict(
                domain=[0, top - 0.1], anchor=f"x{bar_axis}", title="dataset mean"
            ),
        }  # fmt: skip
    )
    title = (f"{module} · channel {channel}: top {len(examples)} of {payload['images']} images"
             f" · {len(dead)} dead channel(s) in grey")  # fmt: skip
    fig.update_layout(title=title, margin=dict(l=50, r=10, t=50, b=40), height=520,
                      bargap=0)  # fmt: skip
    return fig
