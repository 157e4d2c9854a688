"""Every payload the kernel sends to the browser, declared once. ``js/src/schema.js`` holds the
JSDoc twin of each type (checked by ``tsc``); names travel in the payloads (``aggregate_names``,
colour scales by name from the shared contract) instead of positional conventions.

Binary arrays travel as :class:`ArrayPayload`: ``{"data": bytes, "dtype", "shape"}``, one
buffer each, never a JSON list. :func:`array_buffer` is the one place that decides which dtypes
may cross (float32, uint8, int32); anything else is an error here, not in the browser.
:func:`json_safe` is the last gate before a trait is set: no NaN or infinity reaches JSON.

A key every payload of a type has is required (a ``total`` TypedDict, or the base class of one
that is not); the others may be absent. The type checker (mypy, ``scripts/test.sh``) holds the
builders to these types, and ``tests/test_payload_contract.py`` the payloads sent."""

from __future__ import annotations

import math
from typing import Any, Literal, TypedDict, get_args

import numpy as np

from ..images import GeometryJson as GeometryPayload
from ..receptive import FieldJson as FieldPayload
from ..reduce import StatsJson as StatsPayload
from ..spatial import LayoutJson as LayoutPayload
from ..tree import ModuleNode as TreeNode
from .contract import DTYPES

__all__ = [
    "ArrayPayload",
    "ImagePayload",
    "GeometryPayload",
    "StatsPayload",
    "HistogramPayload",
    "LayoutPayload",
    "FieldPayload",
    "LayerPayload",
    "ChannelPayload",
    "SegmentationPayload",
    "LegendEntry",
    "ClassScorePayload",
    "PredictionPayload",
    "GradcamPayload",
    "StatusPayload",
    "ShareEntry",
    "TransitionEntry",
    "ScoreEntry",
    "AblationPayload",
    "ImportancePayload",
    "ExamplePayload",
    "DatasetPayload",
    "FeaturevisPayload",
    "ConceptsPayload",
    "ConceptTile",
    "UnitMarkPayload",
    "TreeNode",
    "UploadPayload",
    "array_buffer",
    "decode_array",
    "json_safe",
]

Dtype = Literal["float32", "uint8", "int32"]
_DTYPES: dict[str, Dtype] = {d: d for d in get_args(Dtype)}  # the contract's DTYPES, typed
LayerKind = Literal["maps", "vector", "values", "none", "never-called", "pending"]


class ArrayPayload(TypedDict):
    data: bytes
    dtype: Dtype
    shape: list[int]


class ImagePayload(TypedDict):
    jpeg: bytes  # the photo as shown (upright, capped), JPEG
    size: list[int]  # (H, W)


class HistogramPayload(TypedDict):
    counts: list[int]
    edges: list[float]


class _LayerAlways(TypedDict):
    module: str
    cls: str
    call: int
    calls: int
    kind: LayerKind


class LayerPayload(_LayerAlways, total=False):
    """One call of one module. Always: module, cls, call, calls, kind. ``maps`` adds the
    aggregates (float32, (len(aggregate_names), h, w)) and the top-k tiles (uint8,
    (k, th, tw), rescaled from tile_min..tile_max); ``vector`` adds the top entries."""

    structure: Any
    shape: list[int]
    histogram: HistogramPayload
    stats: StatsPayload
    rf: FieldPayload | None
    layout: LayoutPayload
    frames: int
    frame: int
    tokens: int
    grid: list[int]
    class_token: bool
    class_token_stats: StatsPayload
    # kind == "maps"
    channels: int
    map_size: list[int]
    map_pool: int
    aggregate_names: list[str]
    aggregates: ArrayPayload
    nonfinite_cells: int
    topk: list[int]
    tile_pool: int
    tiles: ArrayPayload
    tile_min: list[float]
    tile_max: list[float]
    # kind == "vector"
    length: int
    top_index: list[int]
    top_value: list[float]
    top_label: list[str] | None
    top_probability: list[float]


class ChannelPayload(TypedDict):
    module: str
    call: int
    channel: int
    map: ArrayPayload  # float32 (h, w), pooled like the aggregates; NaN where not finite
    histogram: HistogramPayload
    stats: StatsPayload


class LegendEntry(TypedDict):
    index: int
    name: str
    color: str
    fraction: float


class SegmentationPayload(TypedDict):
    mask_png: bytes  # palette PNG at the image's size
    legend: list[LegendEntry]
    classes: list[str]


# "class" is a Python keyword: these two are declared in the functional form.
ClassScorePayload = TypedDict("ClassScorePayload", {"class": int, "name": str, "map": ArrayPayload})


class _PredictionAlways(TypedDict):
    kind: Literal["vector"]
    length: int
    top_index: list[int]
    top_value: list[float]
    top_label: list[str] | None


class PredictionPayload(_PredictionAlways, total=False):
    top_probability: list[float]  # logits only (the labels match the entries)


GradcamPayload = TypedDict(
    "GradcamPayload",
    {
        "module": str,
        "class": int,
        "name": str,
        "map": ArrayPayload,
        "map_size": list[int],
        "map_pool": int,
        "histogram": HistogramPayload,
        "stats": StatsPayload,
        "score": float,
        "pixels": int,
    },
)


class ShareEntry(TypedDict):
    index: int
    name: str
    color: str
    before: float
    after: float


class TransitionEntry(TypedDict):
    before: int
    after: int
    pixels: int


class ScoreEntry(TypedDict):
    index: int
    label: str
    before: float
    after: float


class _AblationAlways(TypedDict):
    ablations: dict[str, list[int]]
    kind: Literal["segmentation", "classification"]


class AblationPayload(_AblationAlways, total=False):
    """The prediction with channels ablated (``ablations``: module -> channels). Segmentation:
    the edited mask, the changed pixels (coloured by their new class, transparent elsewhere),
    class shares before and after, the most common changes. Classification: top scores."""

    mask_png: bytes
    changed_png: bytes
    changed_pixels: int
    changed_fraction: float
    shares: list[ShareEntry]
    transitions: list[TransitionEntry]
    scores: list[ScoreEntry]


class ImportancePayload(TypedDict):
    """Channels of ``module`` by their estimated effect on the class score (largest first), the
    exact effect where measured (None elsewhere)."""

    module: str
    call: int
    target: int
    name: str
    score: float
    channels: list[int]
    estimate: list[float]
    exact: list[float | None]
    rank_correlation: float | None


class ExamplePayload(TypedDict):
    """One of a channel's top images in a dataset sweep: ``rank`` (0 is the best), where it came
    from, its score and the unit (row, col) in the module's map; ``crop``: the image patch under
    the unit's receptive field, JPEG (empty when the sweep has no images attached)."""

    rank: int
    source: str
    score: float
    location: list[int]
    crop: bytes
    crop_size: list[int]


class _DatasetAlways(TypedDict):
    module: str
    channel: int


class DatasetPayload(_DatasetAlways, total=False):
    """The selected channel seen over a dataset: its top images and every channel's statistics
    (float32 (C,) arrays; ``dead``: int32 indices of the channels never above zero).
    ``missing`` says why there is nothing to show (no sweep, or one without this module)."""

    images: int
    k: int
    examples: list[ExamplePayload]
    mean: ArrayPayload
    max: ArrayPayload
    fraction_zero: ArrayPayload
    dead: ArrayPayload
    missing: str


class UnitMarkPayload(TypedDict):
    """A unit marked on the image (a dataset example opened): its stride footprint ``cell`` and
    its receptive ``field``, image-pixel boxes (y0, x0, y1, x1) of the shown image."""

    module: str
    channel: int
    location: list[int]
    cell: list[float]
    field: list[float]


class _StatusAlways(TypedDict):
    state: Literal["idle", "running"]


class StatusPayload(_StatusAlways, total=False):
    done: int
    total: int | None
    unit: str
    label: str
    seconds: float


class _FeaturevisAlways(TypedDict):
    module: str
    channel: int
    call: int
    state: Literal["idle", "running", "done"]


class FeaturevisPayload(_FeaturevisAlways, total=False):
    """The selected channel's feature visualization (of the module's ``call``): ``idle`` (none
    yet: the Visualize button), ``running`` (the image so far, ``step`` of ``steps``) or
    ``done``. ``png``: the image;
    ``trace``: float32 (step,) the objective at each step; ``settings``: what it was run with
    (size, steps, param, seed)."""

    step: int
    steps: int
    png: bytes
    trace: ArrayPayload
    settings: dict[str, Any]


class ConceptTile(TypedDict, total=False):
    """One unit of the picked concept: its channel, IoU, map on this image (float32 (h, w))
    and its best dataset patch (JPEG) when a sweep holds the module."""

    channel: int
    iou: float
    map: ArrayPayload
    patch: bytes


class ConceptsPayload(TypedDict, total=False):
    """What a dissection named the module's units. ``label``: int32 (C,) each channel's concept
    as an index into ``names`` (-1: unlabelled), ``iou``: float32 (C,) its IoU; ``concepts`` /
    ``units``: the module's concepts by number of units; ``picked``: the concept listed, its
    channels ``picked_units`` (best first) and the best as ``tiles``; ``everywhere``: each
    concept's modules with units of it (the module filter finds them). ``missing``: why there
    is nothing (the module was not dissected)."""

    module: str
    missing: str
    names: list[str]
    min_iou: float
    images: int
    label: ArrayPayload
    iou: ArrayPayload
    concepts: list[str]
    units: list[int]
    picked: str
    picked_units: list[int]
    tiles: list[ConceptTile]
    everywhere: dict[str, list[str]]


class UploadPayload(TypedDict, total=False):
    name: str
    data: bytes


def array_buffer(a: np.ndarray) -> ArrayPayload:
    """An array as one binary buffer. Only the dtypes the front end decodes may cross."""
    a = np.ascontiguousarray(a)
    dtype = str(a.dtype)
    if dtype not in DTYPES:
        raise TypeError(
            f"a payload array of dtype {dtype}: the front end decodes only {', '.join(DTYPES)}; "
            "convert it first (maps: float32, tiles: uint8)"
        )
    return {"data": a.tobytes(), "dtype": _DTYPES[dtype], "shape": [int(s) for s in a.shape]}


def decode_array(p: ArrayPayload) -> np.ndarray:
    """The inverse of :func:`array_buffer` (what figures and the export read)."""
    return np.frombuffer(p["data"], dtype=p["dtype"]).reshape(p["shape"])


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None, so it is valid JSON; binary
    buffers are left alone. Payload builders report non-finite values in their statistics;
    this is the gate that guarantees nothing else slips through."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.floating):
        return json_safe(float(value))
    if isinstance(value, np.integer):
        return int(value)
    return value
