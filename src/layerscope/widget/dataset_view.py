"""The Dataset panel's payloads, from a :class:`~layerscope.dataset.Sweep`: the selected
channel's top images (the patch under the unit's receptive field, the score) and every channel's
statistics over the dataset; and the mark of a unit on the image when an example is opened."""

from __future__ import annotations

import io
import weakref
from collections import OrderedDict
from typing import Any

import numpy as np

from ..dataset import Sweep
from ..dataset.result import Example
from ..errors import LayerScopeError
from .schema import DatasetPayload, ExamplePayload, UnitMarkPayload, array_buffer

__all__ = ["CropCache", "dataset_payload", "example", "unit_mark", "THUMB_SIDE"]

THUMB_SIDE = 112  # pixels: the longer side of a crop in the panel


class CropCache:
    """JPEG thumbnails of crops by (module, image, unit) of one sweep: a channel shown again, or
    another channel with the same top image, reads no file. Bounded (least recently used goes);
    emptied when asked for another sweep's crops."""

    def __init__(self, size: int = 512) -> None:
        self.size = size
        self._items: OrderedDict[tuple[Any, ...], tuple[bytes, list[int]]] = OrderedDict()
        self._sweep: weakref.ref[Sweep] | None = None

    def get(
        self, sweep: Sweep, module: str, index: int, location: tuple[int, int]
    ) -> tuple[bytes, list[int]]:
        if self._sweep is None or self._sweep() is not sweep:  # not by id: ids are reused
            self._items.clear()
            self._sweep = weakref.ref(sweep)
        key = (module, index, location)
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        crop = sweep.crop(module, index, location)
        crop.thumbnail((THUMB_SIDE, THUMB_SIDE))
        buf = io.BytesIO()
        crop.save(buf, format="JPEG", quality=85)
        self._items[key] = value = (buf.getvalue(), [crop.height, crop.width])
        if len(self._items) > self.size:
            self._items.popitem(last=False)
        return value


def dataset_payload(
    sweep: Sweep | None, module: str, channel: int, crops: CropCache
) -> DatasetPayload:
    """What the panel shows for ``module``'s ``channel``; ``missing`` says why when nothing."""
    if sweep is None:
        return {"module": module, "channel": channel,
                "missing": "no dataset sweep: explorer.sweep(images) runs one for the hooked "
                           "modules, or pass Explorer(..., sweep=...)"}  # fmt: skip
    if module not in sweep.modules:
        return {"module": module, "channel": channel,
                "missing": f"the sweep has no {module} (it swept {', '.join(sweep.modules)}): "
                           "explorer.sweep(images) sweeps the hooked modules"}  # fmt: skip
    stats = sweep.stats(module)
    if not 0 <= channel < len(stats.mean):
        raise LayerScopeError(f"channel {channel} is out of range: {module} has {len(stats.mean)}")
    examples: list[ExamplePayload] = []
    for rank, ex in enumerate(sweep.top(module, channel)):
        jpeg, size = (b"", [0, 0]) if sweep.sources is None else crops.get(
            sweep, module, ex.index, ex.location)  # fmt: skip
        examples.append({"rank": rank, "source": str(ex.source), "score": ex.score,
                         "location": list(ex.location), "crop": jpeg,
                         "crop_size": size})  # fmt: skip
    return {
        "module": module,
        "channel": channel,
        "images": sweep.images,
        "k": sweep.k,
        "examples": examples,
        "mean": array_buffer(stats.mean.astype(np.float32)),
        "max": array_buffer(stats.max.astype(np.float32)),
        "fraction_zero": array_buffer(stats.fraction_zero.astype(np.float32)),
        "dead": array_buffer(sweep.dead(module).astype(np.int32)),
    }


def unit_mark(
    sweep: Sweep, module: str, channel: int, rank: int, image_size: list[int]
) -> UnitMarkPayload:
    """Where the unit of example ``rank`` lies on the image shown for it (``image_size``, the
    Explorer's (H, W)): its cell and receptive field as image-pixel boxes."""
    ex = example(sweep, module, channel, rank)
    prepared, field, cell = sweep.unit_boxes(module, ex.index, ex.location)
    if field is None or cell is None:
        raise LayerScopeError(f"{module} has no spatial map: its examples have no unit to mark")
    sy = image_size[0] / prepared.image.height
    sx = image_size[1] / prepared.image.width

    def scaled(box: tuple[float, float, float, float]) -> list[float]:
        return [box[0] * sy, box[1] * sx, box[2] * sy, box[3] * sx]

    return {"module": module, "channel": channel, "location": list(ex.location),
            "cell": scaled(cell), "field": scaled(field)}  # fmt: skip


def example(sweep: Sweep, module: str, channel: int, rank: int) -> Example:
    """Example ``rank`` (0: the best) of ``module``'s ``channel``, with a clear error."""
    top = sweep.top(module, channel)
    if not 0 <= rank < len(top):
        raise LayerScopeError(
            f"example {rank} does not exist: {module} channel {channel} has {len(top)}"
        )
    return top[rank]
