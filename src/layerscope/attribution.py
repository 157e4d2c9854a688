"""Grad-CAM for the Explorer: which class, which region, and the payload the views draw."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from . import payload, reduce
from .errors import LayerScopeError
from .gradients import GradCam, grad_cam

if TYPE_CHECKING:
    from .explorer import Explorer

__all__ = ["explorer_grad_cam", "gradcam_payload", "default_class"]


def default_class(ex: Explorer) -> int:
    """The class a view starts with: the one picked in the legend, else the largest predicted
    non-background class (segmentation) or the top prediction (classification)."""
    if ex.selected_class >= 0:
        return ex.selected_class
    legend = ex._segmentation.get("legend", [])
    if legend:
        present = [e["index"] for e in legend if e["index"] != 0] or [0]
        return present[0]
    if ex._prediction:
        return ex._prediction["top_index"][0]
    raise LayerScopeError("no class to explain: this model's output has no class scores")


def region_mask(ex: Explorer, region: list[float], output_size: tuple[int, int]) -> torch.Tensor:
    """An image-pixel box (y0, x0, y1, x1) as a mask over the model's output pixels."""
    g = ex.prepared.geometry
    (ih, iw), (oh, ow) = g.input_size, output_size
    y0, x0, y1, x1 = region
    # image -> input pixels (undo resize and crop), then -> output pixels
    ty0, ty1 = ((y0 - g.offset[0]) / g.scale[0], (y1 - g.offset[0]) / g.scale[0])
    tx0, tx1 = ((x0 - g.offset[1]) / g.scale[1], (x1 - g.offset[1]) / g.scale[1])
    r0, r1 = int(max(0, np.floor(ty0 * oh / ih))), int(min(oh, np.ceil(ty1 * oh / ih)))
    c0, c1 = int(max(0, np.floor(tx0 * ow / iw))), int(min(ow, np.ceil(tx1 * ow / iw)))
    mask = torch.zeros(output_size, dtype=torch.bool)
    mask[r0:r1, c0:c1] = True
    return mask


def explorer_grad_cam(
    ex: Explorer,
    module: str | None = None,
    target_class: int | None = None,
    region: list[float] | None = None,
) -> GradCam:
    """Grad-CAM at ``module`` (default: the selected one) for ``target_class`` (default: see
    :func:`default_class`), over ``region`` (an image-pixel box) or the class's pixels."""
    name = module or ex.selected_module
    if not name:
        raise LayerScopeError("no module selected: hook one first")
    cls = default_class(ex) if target_class is None else target_class
    mask = None
    if region:
        out_size = ex._output_size
        if out_size is None:
            raise LayerScopeError("a region needs a segmentation output")
        mask = region_mask(ex, region, out_size)
    return grad_cam(ex.model, ex.inputs, name, cls, region=mask, call=0)


def gradcam_payload(ex: Explorer, result: GradCam, bins: int) -> dict[str, Any]:
    """The CAM pooled like the layer's maps, and the gradient's histogram and statistics."""
    h, w = result.cam.shape
    f = payload.pool_factor(h, w, payload.MAP_SIDE)
    cam = payload._pool(result.cam[None], f)[0]
    counts, edges = reduce.histogram(result.gradient, bins)
    names = ex.class_names
    return {
        "module": result.module,
        "class": result.target_class,
        "name": names[result.target_class] if result.target_class < len(names) else "",
        "map": payload.array_buffer(cam.cpu().numpy().astype(np.float32)),
        "map_size": [h, w],
        "map_pool": f,
        "histogram": {"counts": counts.tolist(), "edges": edges.tolist()},
        "stats": reduce.stats(result.gradient).to_json(),
        "score": result.score,
        "pixels": result.pixels,
    }
