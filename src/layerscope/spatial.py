"""Which dimensions of a module's output are its channels and the image's rows and columns, and
the (C, H, W) maps a view draws from it.

The tracer (:mod:`layerscope.tracer`) follows the image's grid through the forward and records a
:class:`Layout` per module. Where it could not, a user can say (``layouts={"features.5":
"NHWC"}``), and otherwise the shape decides as it always did: 4-D is (N, C, H, W), 5-D is a
video (N, C, T, H, W), 3-D (N, tokens, C) with a square number of tokens (after an optional class
token) lies on a square grid."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypedDict

import torch

from .errors import ArgumentError, OutOfRangeError

if TYPE_CHECKING:
    from .reduce import StatsJson

__all__ = ["Layout", "spatial_maps", "LAYOUT_NAMES"]

LAYOUT_NAMES = ("NCHW", "NHWC", "NLC", "NCL")


Source = Literal["traced", "given", "assumed"]


class LayoutJson(TypedDict):
    """:meth:`Layout.to_json`, the widget's ``LayoutPayload``."""

    name: Literal["NCHW", "NHWC", "NLC", "NCL"]
    grid: list[int]
    skip: int
    source: Source


class MapInfo(TypedDict, total=False):
    """How :func:`spatial_maps` found the maps: the layout, or a video's frame, or the tokens
    of a token grid (keys of the widget's ``LayerPayload``)."""

    layout: LayoutJson
    frames: int
    frame: int
    tokens: int
    grid: list[int]
    class_token: bool
    class_token_stats: StatsJson


@dataclass(frozen=True)
class Layout:
    """``channels``: the dimension of channels; ``rows`` and ``cols``: the image's rows and
    columns, or ``rows`` alone for one dimension of tokens laid out row-major on ``grid`` with
    ``skip`` leading tokens off it (a class token). ``source``: ``traced`` (followed through the
    forward), ``given`` (by the user) or ``assumed`` (from the shape alone)."""

    channels: int
    rows: int
    cols: int | None
    grid: tuple[int, int]
    skip: int = 0
    source: Source = "assumed"

    @property
    def name(self) -> Literal["NCHW", "NHWC", "NLC", "NCL"]:
        if self.cols is None:
            return "NLC" if self.rows < self.channels else "NCL"
        return "NCHW" if self.channels < self.rows else "NHWC"

    def to_json(self) -> LayoutJson:
        return {"name": self.name, "grid": list(self.grid), "skip": self.skip,
                "source": self.source}  # fmt: skip

    @classmethod
    def given(cls, name: str, shape: tuple[int, ...], grid: tuple[int, int] | None = None,
              skip: int = 0) -> Layout:  # fmt: skip
        """A layout a user names for an output of ``shape``: ``NCHW``, ``NHWC``, ``NLC``
        (tokens then channels) or ``NCL``; tokens take ``grid`` (default: square)."""
        if name not in LAYOUT_NAMES:
            raise ArgumentError(f"layout must be one of {', '.join(LAYOUT_NAMES)}, got {name!r}")
        want = 4 if name in ("NCHW", "NHWC") else 3
        if len(shape) != want:
            raise ArgumentError(f"layout {name} needs a {want}-D output, this one is {list(shape)}")
        if name == "NCHW":
            return cls(1, 2, 3, (shape[2], shape[3]), 0, "given")
        if name == "NHWC":
            return cls(3, 1, 2, (shape[1], shape[2]), 0, "given")
        tokens_dim, channels_dim = (1, 2) if name == "NLC" else (2, 1)
        tokens = shape[tokens_dim] - skip
        if grid is None:
            side = math.isqrt(tokens)
            if side * side != tokens:
                raise ArgumentError(
                    f"{tokens} tokens are not a square grid: give the grid, e.g. (h, w)"
                )
            grid = (side, side)
        if grid[0] * grid[1] > tokens:
            raise ArgumentError(f"a {grid[0]}x{grid[1]} grid needs more than {tokens} tokens")
        return cls(channels_dim, tokens_dim, None, (int(grid[0]), int(grid[1])), skip, "given")


def _assumed(t: torch.Tensor) -> Layout | None:
    if t.dim() == 4:
        return Layout(1, 2, 3, (t.shape[2], t.shape[3]))
    if t.dim() == 3 and t.shape[1] > 1:  # (N, tokens, dim)
        tokens = t.shape[1]
        for extra in (1, 0):
            side = math.isqrt(tokens - extra)
            if side * side == tokens - extra and side > 1:
                return Layout(2, 1, None, (side, side), extra)
    return None


def spatial_maps(
    t: torch.Tensor, frame: int = 0, layout: Layout | None = None
) -> tuple[torch.Tensor | None, MapInfo]:
    """(C, H, W) maps of the first item of a batch, and how they were obtained; (None, {})
    for an output without a spatial grid. ``layout`` (traced or given) wins over the shape."""
    if layout is None and t.dim() == 5:  # (N, C, T, H, W)
        frames = t.shape[2]
        if not 0 <= frame < frames:
            raise OutOfRangeError(f"frame {frame} is out of range: this output has {frames} frames")
        return t[0, :, frame], {"frames": frames, "frame": frame}
    layout = layout or _assumed(t)
    if layout is None or t.dim() <= max(layout.channels, layout.rows, layout.cols or 0):
        return None, {}
    info: MapInfo = {"layout": layout.to_json()}
    one = t[0]  # the batch dimension goes: every other dimension moves down by one
    c, r = layout.channels - 1, layout.rows - 1
    if layout.cols is not None:
        return one.permute(c, r, layout.cols - 1), info
    h, w = layout.grid
    tokens = one.movedim(r, 0)  # (tokens, C)
    info.update({"tokens": tokens.shape[0], "grid": [h, w], "class_token": layout.skip > 0})
    if layout.skip:
        from .reduce import stats  # analysis to analysis: statistics of the off-grid tokens

        info["class_token_stats"] = stats(tokens[: layout.skip]).to_json()
    grid = tokens[layout.skip : layout.skip + h * w]
    return grid.transpose(0, 1).reshape(grid.shape[1], h, w), info
