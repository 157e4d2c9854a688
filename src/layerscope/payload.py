"""Turns captured tensors into the small payloads the views draw: maps pooled to a bounded size,
binary buffers instead of JSON lists. A 2048 x 65 x 65 layer costs about 140 kB per selection."""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from . import reduce
from .nested import describe, first_tensor

__all__ = ["array_buffer", "layer_payload", "channel_payload", "segmentation_payload", "jpeg"]

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


def array_buffer(a: np.ndarray) -> dict[str, Any]:
    """``{"data": bytes, "dtype", "shape"}``: travels as one binary buffer, not a JSON list."""
    a = np.ascontiguousarray(a)
    return {"data": a.tobytes(), "dtype": str(a.dtype), "shape": list(a.shape)}


def pool_factor(h: int, w: int, side: int) -> int:
    return max(1, math.ceil(max(h, w) / side))


def _pool(maps: torch.Tensor, f: int) -> torch.Tensor:
    if f == 1:
        return maps
    return F.avg_pool2d(maps.float().unsqueeze(0), f, ceil_mode=True).squeeze(0)


def pick_tensor(output: Any) -> torch.Tensor | None:
    """The tensor a view shows for a module output: itself, or the first of a structure."""
    return first_tensor(output)


def spatial_maps(t: torch.Tensor, frame: int = 0) -> tuple[torch.Tensor | None, dict[str, Any]]:
    """(C, H, W) maps to show for a tensor, and how they were obtained: conv maps as they are,
    a video's frame, a vision transformer's tokens on their patch grid (class token apart)."""
    if t.dim() == 4:
        return t[0], {}
    if t.dim() == 5:  # (N, C, T, H, W)
        frames = t.shape[2]
        if not 0 <= frame < frames:
            raise IndexError(f"frame {frame} is out of range: this output has {frames} frames")
        return t[0, :, frame], {"frames": frames, "frame": frame}
    if t.dim() == 3 and t.shape[1] > 1:  # (N, tokens, dim)
        tokens = t.shape[1]
        for extra in (1, 0):
            side = math.isqrt(tokens - extra)
            if side * side == tokens - extra and side > 1:
                grid = t[0, extra:].transpose(0, 1).reshape(t.shape[2], side, side)
                info = {"tokens": tokens, "grid": [side, side], "class_token": bool(extra)}
                if extra:
                    info["class_token_stats"] = reduce.stats(t[0, 0]).to_json()
                return grid, info
    return None, {}


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
) -> dict[str, Any]:
    """Everything the views need for one module call except the selected channel's map.
    ``kind``: ``maps`` (anything with a spatial grid), ``vector`` (logits, pooled features:
    a bar chart), ``values`` (statistics and histogram only) or ``none``."""
    t = pick_tensor(output)
    base: dict[str, Any] = {
        "module": name,
        "cls": cls,
        "call": call,
        "calls": calls,
        "structure": describe(output),
        "kind": "none",
    }
    if t is None:
        return base
    base["shape"] = list(t.shape)
    counts, edges = reduce.histogram(t, bins)
    base["histogram"] = {"counts": counts.tolist(), "edges": edges.tolist()}
    base["stats"] = reduce.stats(t).to_json()
    if not (t.is_floating_point() or t.is_complex()):
        base["kind"] = "values"
        return base
    maps, info = spatial_maps(t, frame)
    base.update(info)
    if maps is None or maps.shape[-1] * maps.shape[-2] < 2:
        # (K,), (N, K) or (N, K, 1, 1): one value per channel or class
        flat = t.dim() == 1 or (t.dim() >= 2 and all(d == 1 for d in t.shape[2:]))
        vector = (t if t.dim() == 1 else t[0]).reshape(-1) if flat else None
        if vector is None:
            base["kind"] = "values"
            return base
        return {**base, **vector_payload(vector, topk, class_names)}
    base.update(maps_payload(maps, topk))
    return base


def vector_payload(v: torch.Tensor, topk: int, class_names: list[str] | None) -> dict[str, Any]:
    """A 1-D output (class logits, pooled features): its top entries, labelled with class names
    when they match, with softmax probabilities for logits."""
    v = v.float()
    k = min(topk, v.numel())
    top = torch.topk(v, k)
    labels = class_names if class_names and len(class_names) == v.numel() else None
    out: dict[str, Any] = {
        "kind": "vector",
        "length": v.numel(),
        "top_index": top.indices.cpu().tolist(),
        "top_value": top.values.cpu().tolist(),
        "top_label": [labels[i] for i in top.indices.cpu().tolist()] if labels else None,
    }
    if labels:
        out["top_probability"] = v.softmax(0)[top.indices].cpu().tolist()
    return out


def maps_payload(maps: torch.Tensor, topk: int) -> dict[str, Any]:
    """Aggregates (mean, max, L2 over channels), the top-k channels as 8-bit tiles."""
    c, h, w = maps.shape
    f = pool_factor(h, w, MAP_SIDE)
    pooled = _pool(maps, f)
    aggregates = np.stack(
        [
            reduce.aggregate(pooled if how != "max" else _pool_max(maps, f), how)
            for how in ("mean", "max", "l2")
        ]
    )
    top = reduce.topk_channels(maps, topk)
    tf = pool_factor(h, w, TILE_SIDE)
    tiles = _pool(maps[torch.as_tensor(top, device=maps.device)], tf)
    lo = tiles.flatten(1).amin(1)
    hi = tiles.flatten(1).amax(1)
    scaled = ((tiles - lo[:, None, None]) / (hi - lo).clamp_min(1e-12)[:, None, None] * 255).round()
    return {
        "kind": "maps",
        "channels": c,
        "map_size": [h, w],
        "map_pool": f,
        "aggregates": array_buffer(aggregates.astype(np.float32)),
        "topk": top.tolist(),
        "tile_pool": tf,
        "tiles": array_buffer(scaled.to(torch.uint8).cpu().numpy()),
        "tile_min": lo.cpu().tolist(),
        "tile_max": hi.cpu().tolist(),
    }


def _pool_max(maps: torch.Tensor, f: int) -> torch.Tensor:
    if f == 1:
        return maps
    return F.max_pool2d(maps.float().unsqueeze(0), f, ceil_mode=True).squeeze(0)


def channel_payload(
    output: Any, channel: int, *, bins: int, value_range: list[float], frame: int = 0
) -> dict[str, Any]:
    """One channel's map (pooled like the aggregates), histogram and statistics."""
    t = pick_tensor(output)
    maps = spatial_maps(t, frame)[0] if t is not None else None
    if maps is None:
        return {}
    h, w = maps.shape[-2:]
    f = pool_factor(h, w, MAP_SIDE)
    one = _pool(maps[channel : channel + 1], f)[0]
    counts, edges = reduce.histogram(maps[channel], bins, (value_range[0], value_range[-1]))
    return {
        "channel": channel,
        "map": array_buffer(reduce.channel_map(one.unsqueeze(0), 0)),
        "histogram": {"counts": counts.tolist(), "edges": edges.tolist()},
        "stats": reduce.stats(maps[channel]).to_json(),
    }


def segmentation_payload(
    logits: torch.Tensor, image_size: tuple[int, int], class_names: list[str]
) -> tuple[dict[str, Any], torch.Tensor]:
    """The predicted mask as a palette PNG at the image's size, a legend of the classes present,
    and the per-class probabilities pooled for the score map (kept in the kernel)."""
    probs = logits[0].float().softmax(0)
    mask = probs.argmax(0).to(torch.uint8).cpu().numpy()
    h, w = image_size
    png = Image.fromarray(mask, mode="P")
    png.putpalette(_palette(len(class_names)).flatten().tolist())
    png = png.resize((w, h), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    png.save(buf, format="PNG", optimize=True)
    counts = np.bincount(mask.ravel(), minlength=len(class_names))
    legend = [
        {
            "index": int(i),
            "name": class_names[i],
            "color": _hex(_palette(len(class_names))[i]),
            "fraction": float(counts[i] / mask.size),
        }
        for i in np.argsort(-counts)
        if counts[i] > 0
    ]
    f = pool_factor(*probs.shape[-2:], MAP_SIDE)
    return {"mask_png": buf.getvalue(), "legend": legend, "classes": class_names}, _pool(probs, f)


def _palette(n: int) -> np.ndarray:
    reps = -(-n // len(PALETTE))
    return np.tile(PALETTE, (reps, 1))[:n]


def _hex(rgb: np.ndarray) -> str:
    return "#" + "".join(f"{int(v):02x}" for v in rgb)


def jpeg(image: Image.Image, quality: int = 88) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
