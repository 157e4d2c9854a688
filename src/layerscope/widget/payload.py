"""Turns captured tensors into the payloads of :mod:`layerscope.widget.schema`: maps pooled to a
bounded size, binary buffers instead of JSON lists. A 2048 x 65 x 65 layer costs about 90 kB per
selection."""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
import torch
from PIL import Image

from .. import reduce
from ..errors import OutOfRangeError
from ..nested import describe, first_tensor
from ..receptive import ReceptiveField
from ..spatial import Layout, spatial_maps
from .contract import AGGREGATES
from .schema import (
    ChannelPayload,
    ClassScorePayload,
    GradcamPayload,
    ImagePayload,
    LayerPayload,
    LegendEntry,
    PredictionPayload,
    SegmentationPayload,
    array_buffer,
)

__all__ = [
    "MAP_SIDE",
    "TILE_SIDE",
    "image_payload",
    "layer_payload",
    "channel_payload",
    "vector_payload",
    "segmentation_payload",
    "class_score_payload",
    "gradcam_payload",
]

MAP_SIDE = 128  # aggregate and channel maps are pooled to at most this many cells a side
TILE_SIDE = 64  # top-k grid tiles, at most this many cells a side
PALETTE = np.array(
    [
        [0, 0, 0],
        [230, 25, 75],
        [60, 180, 75],
        [255, 225, 25],
        [0, 130, 200],
        [245, 130, 48],
        [145, 30, 180],
        [70, 240, 240],
        [240, 50, 230],
        [210, 245, 60],
        [250, 190, 212],
        [0, 128, 128],
        [220, 190, 255],
        [170, 110, 40],
        [255, 250, 200],
        [128, 0, 0],
        [170, 255, 195],
        [128, 128, 0],
        [255, 215, 180],
        [0, 0, 128],
        [128, 128, 128],
    ],
    dtype=np.uint8,
)


def image_payload(image: Image.Image, quality: int = 88) -> ImagePayload:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    return {"jpeg": buf.getvalue(), "size": [image.height, image.width]}


def layer_payload(
    name: str,
    cls: str,
    output: Any,
    *,
    call: int,
    calls: int,
    topk: int,
    bins: int,
    frame: int = 0,
    class_names: list[str] | None = None,
    layout: Layout | None = None,
    rf: ReceptiveField | None = None,
) -> LayerPayload:
    """Everything the views need for one module call except the selected channel's map.
    ``kind``: ``maps`` (anything with a spatial grid), ``vector`` (logits, pooled features:
    a bar chart), ``values`` (statistics and histogram only) or ``none``."""
    base: LayerPayload = {
        "module": name,
        "cls": cls,
        "call": call,
        "calls": calls,
        "structure": describe(output),
        "kind": "none",
    }
    if calls == 0:
        base["kind"] = "never-called"
        return base
    t = first_tensor(output)
    if t is None:
        return base
    base["shape"] = list(t.shape)
    counts, edges = reduce.histogram(t, bins)
    base["histogram"] = {"counts": counts.tolist(), "edges": edges.tolist()}
    base["stats"] = reduce.stats(t).to_json()
    base["rf"] = rf.to_json() if rf is not None else None
    if not (t.is_floating_point() or t.is_complex()):
        base["kind"] = "values"
        return base
    maps, info = spatial_maps(t, frame, layout)
    base = {**base, **info}
    if maps is None or maps.shape[-1] * maps.shape[-2] < 2:
        # (K,), (N, K) or (N, K, 1, 1): one value per channel or class
        flat = t.dim() == 1 or (t.dim() >= 2 and all(d == 1 for d in t.shape[2:]))
        vector = (t if t.dim() == 1 else t[0]).reshape(-1) if flat else None
        if vector is None:
            base["kind"] = "values"
            return base
        return {**base, **vector_payload(vector, topk, class_names)}
    _add_maps(base, maps, topk)
    return base


def vector_payload(v: torch.Tensor, topk: int, class_names: list[str] | None) -> PredictionPayload:
    """A 1-D output (class logits, pooled features): its top entries, labelled with class names
    when they match, with softmax probabilities for logits. Non-finite entries rank last."""
    v = v.float()
    ranked = torch.where(torch.isfinite(v), v, torch.full_like(v, -math.inf))
    k = min(topk, v.numel())
    top = torch.topk(ranked, k).indices
    labels = class_names if class_names and len(class_names) == v.numel() else None
    index = top.cpu().tolist()
    out: PredictionPayload = {
        "kind": "vector",
        "length": v.numel(),
        "top_index": index,
        "top_value": v[top].cpu().tolist(),
        "top_label": [labels[i] for i in index] if labels else None,
    }
    if labels:
        out["top_probability"] = ranked.softmax(0)[top].cpu().tolist()
    return out


def _add_maps(base: LayerPayload, maps: torch.Tensor, topk: int) -> None:
    """Aggregates over channels, in the contract's order and named, and the top-k channels as
    8-bit tiles (each rescaled over its finite values; a non-finite cell becomes 0)."""
    c, h, w = maps.shape
    f = reduce.pool_factor(h, w, MAP_SIDE)
    pooled = reduce.pool_mean(maps, f)
    aggregates = np.stack(
        [
            reduce.aggregate(pooled if how != "max" else reduce.pool_max(maps, f), how)
            for how in AGGREGATES
        ]
    ).astype(np.float32)
    top = reduce.topk_channels(maps, topk)
    tf = reduce.pool_factor(h, w, TILE_SIDE)
    tiles = reduce.pool_mean(maps[torch.as_tensor(top, device=maps.device)], tf)
    finite = torch.isfinite(tiles)
    big = torch.full((), math.inf, device=tiles.device)
    lo = torch.where(finite, tiles, big).flatten(1).amin(1)
    hi = torch.where(finite, tiles, -big).flatten(1).amax(1)
    lo, hi = torch.where(torch.isfinite(lo), lo, 0.0), torch.where(torch.isfinite(hi), hi, 0.0)
    span = (hi - lo).clamp_min(1e-12)[:, None, None]
    scaled = ((tiles - lo[:, None, None]) / span * 255).nan_to_num(0.0, 0.0, 0.0).round()
    base.update(
        {
            "kind": "maps",
            "channels": c,
            "map_size": [h, w],
            "map_pool": f,
            "aggregate_names": list(AGGREGATES),
            "aggregates": array_buffer(aggregates),
            "nonfinite_cells": int((~np.isfinite(aggregates[0])).sum()),
            "topk": top.tolist(),
            "tile_pool": tf,
            "tiles": array_buffer(scaled.clamp(0, 255).to(torch.uint8).cpu().numpy()),
            "tile_min": lo.cpu().tolist(),
            "tile_max": hi.cpu().tolist(),
        }
    )


def channel_payload(
    module: str,
    call: int,
    output: Any,
    channel: int,
    *,
    bins: int,
    value_range: list[float],
    frame: int = 0,
    layout: Layout | None = None,
) -> ChannelPayload | None:
    """One channel's map (pooled like the aggregates), histogram and statistics."""
    t = first_tensor(output)
    maps = spatial_maps(t, frame, layout)[0] if t is not None else None
    if maps is None:
        return None
    if not 0 <= channel < maps.shape[0]:
        raise OutOfRangeError(f"channel {channel} is out of range: {module} has {maps.shape[0]}")
    h, w = maps.shape[-2:]
    one = reduce.pool_mean(maps[channel : channel + 1], reduce.pool_factor(h, w, MAP_SIDE))[0]
    counts, edges = reduce.histogram(maps[channel], bins, (value_range[0], value_range[-1]))
    return {
        "module": module,
        "call": call,
        "channel": channel,
        "map": array_buffer(one.cpu().numpy().astype(np.float32)),
        "histogram": {"counts": counts.tolist(), "edges": edges.tolist()},
        "stats": reduce.stats(maps[channel]).to_json(),
    }


def segmentation_payload(
    probs: torch.Tensor, image_size: tuple[int, int], class_names: list[str]
) -> SegmentationPayload:
    """The predicted mask of (K, H, W) class probabilities as a palette PNG at the image's
    size, and a legend of the classes present, largest first."""
    mask = probs.argmax(0).to(torch.uint8).cpu().numpy()
    h, w = image_size
    png = Image.fromarray(mask, mode="P")
    png.putpalette(palette(len(class_names)).flatten().tolist())
    png = png.resize((w, h), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    png.save(buf, format="PNG", optimize=True)
    counts = np.bincount(mask.ravel(), minlength=len(class_names))
    colors = palette(len(class_names))
    legend: list[LegendEntry] = [
        {
            "index": int(i),
            "name": class_names[i],
            "color": hex_color(colors[i]),
            "fraction": float(counts[i] / mask.size),
        }
        for i in np.argsort(-counts, kind="stable")
        if counts[i] > 0
    ]
    return {"mask_png": buf.getvalue(), "legend": legend, "classes": class_names}


def class_label(class_names: list[str], index: int) -> str:
    """A class's name, or its index when the model has more classes than names."""
    return class_names[index] if index < len(class_names) else str(index)


def class_score_payload(probs: torch.Tensor, cls: int, class_names: list[str]) -> ClassScorePayload:
    """One class's probability per pixel, pooled to at most MAP_SIDE a side."""
    h, w = probs.shape[-2:]
    f = reduce.pool_factor(h, w, MAP_SIDE)
    score = reduce.pool_mean(probs[cls : cls + 1], f)[0]
    return {
        "class": cls,
        "name": class_label(class_names, cls),
        "map": array_buffer(score.cpu().numpy().astype(np.float32)),
    }


def gradcam_payload(
    module: str,
    cls: int,
    name: str,
    cam: torch.Tensor,
    gradient: torch.Tensor,
    *,
    score: float,
    pixels: int,
    bins: int,
) -> GradcamPayload:
    """The CAM pooled like the layer's maps, and the gradient's histogram and statistics."""
    h, w = cam.shape
    f = reduce.pool_factor(h, w, MAP_SIDE)
    pooled = reduce.pool_mean(cam[None], f)[0]
    counts, edges = reduce.histogram(gradient, bins)
    return {
        "module": module,
        "class": cls,
        "name": name,
        "map": array_buffer(pooled.cpu().numpy().astype(np.float32)),
        "map_size": [h, w],
        "map_pool": f,
        "histogram": {"counts": counts.tolist(), "edges": edges.tolist()},
        "stats": reduce.stats(gradient).to_json(),
        "score": score,
        "pixels": pixels,
    }


def palette(n: int) -> np.ndarray:
    reps = -(-n // len(PALETTE))
    return np.tile(PALETTE, (reps, 1))[:n]


def hex_color(rgb: np.ndarray) -> str:
    return "#" + "".join(f"{int(v):02x}" for v in rgb)
