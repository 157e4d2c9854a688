"""Comparisons: one module's maps for two images (same model), or for one image through two
models (pretrained against random weights, two checkpoints), side by side on a shared colour
scale, with their difference."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from . import reduce
from .capture import capture
from .errors import LayerScopeError
from .nested import first_tensor
from .preprocess import Preprocess, prepare_image
from .reduce import Aggregate
from .spatial import spatial_maps

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = ["Comparison", "compare_images", "compare_models"]


@dataclass(frozen=True)
class Comparison:
    """Two (H, W) maps of the same module and channel (or aggregate), and ``a - b``."""

    module: str
    what: str
    labels: tuple[str, str]
    a: np.ndarray
    b: np.ndarray

    @property
    def difference(self) -> np.ndarray:
        return self.a - self.b

    def figure(self, colorscale: str = "Viridis") -> go.Figure:
        """A, B on one colour scale, and A - B on a diverging scale centred on zero."""
        from plotly.subplots import make_subplots  # only when drawn: a capture loads no plotly

        lo = float(min(self.a.min(), self.b.min()))
        hi = float(max(self.a.max(), self.b.max()))
        span = float(np.abs(self.difference).max()) or 1.0
        fig = make_subplots(
            rows=1,
            cols=3,
            horizontal_spacing=0.06,
            subplot_titles=(*self.labels, f"{self.labels[0]} − {self.labels[1]}"),
        )
        fig.add_heatmap(
            z=self.a,
            zmin=lo,
            zmax=hi,
            colorscale=colorscale,
            row=1,
            col=1,
            colorbar=dict(x=0.62, len=0.8, thickness=10),
        )
        fig.add_heatmap(
            z=self.b, zmin=lo, zmax=hi, colorscale=colorscale, row=1, col=2, showscale=False
        )
        fig.add_heatmap(
            z=self.difference,
            zmin=-span,
            zmax=span,
            colorscale="RdBu_r",
            row=1,
            col=3,
            colorbar=dict(x=1.0, len=0.8, thickness=10),
        )
        fig.update_yaxes(autorange="reversed")
        fig.update_layout(
            title=f"{self.module} · {self.what}", height=360, margin=dict(l=30, r=30, t=70, b=30)
        )
        return fig


def _map(
    model: nn.Module, x: torch.Tensor, module: str, channel: int | None, how: Aggregate
) -> np.ndarray:
    out = first_tensor(capture(model, x, [module])[module])
    maps = spatial_maps(out)[0] if out is not None else None
    if maps is None:
        raise LayerScopeError(f"{module} has no spatial map to compare (output {type(out)})")
    if channel is not None:
        return reduce.channel_map(maps, channel)
    return reduce.aggregate(maps, how)


def _what(channel: int | None, how: str) -> str:
    return f"channel {channel}" if channel is not None else f"{how} over channels"


def compare_images(
    model: nn.Module,
    image_a: Any,
    image_b: Any,
    module: str,
    *,
    preprocess: Preprocess | Callable[[Any], Any] | None = None,
    channel: int | None = None,
    aggregate: Aggregate = "mean",
    labels: tuple[str, str] = ("image A", "image B"),
) -> Comparison:
    """``module``'s map for two images through the same model and preprocessing."""
    pre = preprocess or Preprocess(resize=224, crop=(224, 224))
    xa, xb = prepare_image(image_a, pre).tensor, prepare_image(image_b, pre).tensor
    if xa.shape != xb.shape:
        raise LayerScopeError(
            f"the images give inputs of different sizes {tuple(xa.shape)} and {tuple(xb.shape)}: "
            "use a preprocess with a fixed output size, e.g. Preprocess(resize=(224, 224))"
        )
    a = _map(model, xa, module, channel, aggregate)
    b = _map(model, xb, module, channel, aggregate)
    return Comparison(module, _what(channel, aggregate), labels, a, b)


def compare_models(
    model_a: nn.Module,
    model_b: nn.Module,
    image: Any,
    module: str,
    *,
    preprocess: Preprocess | Callable[[Any], Any] | None = None,
    channel: int | None = None,
    aggregate: Aggregate = "mean",
    labels: tuple[str, str] = ("model A", "model B"),
) -> Comparison:
    """``module``'s map for one image through two models of the same architecture."""
    x = prepare_image(image, preprocess or Preprocess(resize=224)).tensor
    a = _map(model_a, x, module, channel, aggregate)
    b = _map(model_b, x, module, channel, aggregate)
    if a.shape != b.shape:
        raise LayerScopeError(f"{module} gives maps of shapes {a.shape} and {b.shape}")
    return Comparison(module, _what(channel, aggregate), labels, a, b)
