"""The typed payload contract: one serializer owns the dtype rules, nothing but valid JSON
crosses, every payload the Explorer sends has the shape its schema declares, the JSDoc twin in
js/src/schema.js names the same fields, and a colour scale means the same stops everywhere."""

from __future__ import annotations

import math
import re
import typing
from pathlib import Path

import numpy as np
import pytest

import layerscope as ls
from layerscope import Explorer
from layerscope.models import load_preset
from layerscope.widget import schema
from layerscope.widget.contract import AGGREGATES, COLORSCALES, DTYPES, colorscale_stops

JS_SCHEMA = (Path(__file__).resolve().parents[1] / "js" / "src" / "schema.js").read_text()


@pytest.mark.parametrize("dtype", ["float32", "uint8", "int32"])
def test_the_serializer_passes_what_the_browser_decodes(dtype):
    a = np.arange(6, dtype=dtype).reshape(2, 3)
    p = schema.array_buffer(a)
    assert p["dtype"] == dtype and p["shape"] == [2, 3] and isinstance(p["data"], bytes)
    assert np.array_equal(schema.decode_array(p), a)


@pytest.mark.parametrize("dtype", ["float64", "float16", "int64", "bool", "int8"])
def test_the_serializer_refuses_anything_else(dtype):
    with pytest.raises(TypeError, match="decodes only float32, uint8, int32"):
        schema.array_buffer(np.zeros(3, dtype=dtype))


def test_nothing_but_finite_numbers_reach_json():
    value = {"a": [1.0, math.nan, {"b": math.inf}], "c": -math.inf, "d": np.float32(2.5),
             "e": np.float64("nan"), "buf": b"\x00\xff", "n": np.int64(3)}  # fmt: skip
    safe = schema.json_safe(value)
    assert safe == {"a": [1.0, None, {"b": None}], "c": None, "d": 2.5, "e": None,
                    "buf": b"\x00\xff", "n": 3}  # fmt: skip


def _declared(name: str) -> tuple[set[str], set[str]]:
    """(all keys, required keys) of a TypedDict in layerscope.widget.schema."""
    td = getattr(schema, name)
    return set(typing.get_type_hints(td)), set(td.__required_keys__)


def _check(payload: dict, name: str) -> None:
    keys, required = _declared(name)
    assert required <= set(payload) <= keys, (name, set(payload) ^ keys)
    for key, value in payload.items():
        if isinstance(value, dict) and {"data", "dtype", "shape"} <= set(value):
            assert value["dtype"] in DTYPES, (name, key)
            assert (
                len(value["data"]) == math.prod(value["shape"]) * np.dtype(value["dtype"]).itemsize
            )


def test_every_payload_the_explorer_sends_has_its_declared_shape():
    preset = load_preset("deeplabv3_mobilenet_v3_large", weights=None)
    ex = Explorer(preset.model, "astronaut", preprocess=preset.preprocess.with_size(96),
                  class_names=preset.class_names)  # fmt: skip
    _check(ex._image, "ImagePayload")
    _check(ex._geometry, "GeometryPayload")
    _check(ex._segmentation, "SegmentationPayload")
    _check(ex._class_score, "ClassScorePayload")
    for module in ("backbone.4", "classifier.4", "classifier.0.convs", "classifier"):
        ex.hooked_modules = [module]
        _check(ex._layer, "LayerPayload")
        if ex._layer["kind"] == "maps":
            assert ex._layer["aggregate_names"] == list(AGGREGATES)
            _check(ex._channel, "ChannelPayload")
            _check(ex._layer["stats"], "StatsPayload")
    ex.overlay = "gradcam"
    _check(ex._gradcam, "GradcamPayload")
    ex.hooked_modules = ["backbone.4"]
    ex.ablations = {"backbone.4": [0, 1, 2]}
    _check(ex._ablation, "AblationPayload")
    ex.show_importance = True
    _check(ex._importance, "ImportancePayload")
    for node in ex._tree:
        _check(node, "TreeNode")
    _check(ex._status, "StatusPayload")
    sw = ls.sweep(preset.model, [ls.sample_image(), ls.sample_image("chelsea")], ["backbone.4"],
                  k=2, preprocess=preset.preprocess.with_size(96), progress=False)  # fmt: skip
    ex.dataset_sweep = sw
    _check(ex._dataset, "DatasetPayload")
    for example in ex._dataset["examples"]:
        _check(example, "ExamplePayload")
    ex.hooked_modules = ["backbone.4", "classifier.4"]
    _check(ex._dataset, "DatasetPayload")  # a module the sweep does not have: why not
    assert "no classifier.4" in ex._dataset["missing"]
    ex.selected_module = "backbone.4"
    ex.show_example(1)
    _check(ex._unit_mark, "UnitMarkPayload")
    resnet = Explorer("resnet18", weights=None, hooked_modules=["fc"])
    _check(resnet._prediction, "PredictionPayload")
    resnet.ablations = {"fc": [resnet._prediction["top_index"][0]]}
    _check(resnet._ablation, "AblationPayload")


def _js_fields(typedef: str) -> set[str]:
    """Field names of a ``@typedef {{...}} Name`` (or ``Base & {...}``) in schema.js."""
    match = re.search(r"@typedef \{([^@]*?)\}\s+" + typedef + r"\b", JS_SCHEMA, re.S)
    assert match, f"schema.js has no typedef {typedef}"
    body = re.sub(r"\s*\*\s*", " ", match.group(1))
    fields = set(re.findall(r"[{,]\s*(\w+)\??:", body))
    for base in re.findall(r"\b([A-Z]\w+)\s*&", body):
        fields |= _js_fields(base)
    return fields


@pytest.mark.parametrize(
    "name",
    ["ImagePayload", "GeometryPayload", "StatsPayload", "HistogramPayload", "FieldPayload",
     "LayoutPayload", "ChannelPayload", "LegendEntry", "SegmentationPayload",
     "ClassScorePayload", "PredictionPayload", "GradcamPayload", "StatusPayload", "TreeNode",
     "UploadPayload", "ArrayPayload", "ShareEntry", "TransitionEntry", "ScoreEntry",
     "AblationPayload", "ImportancePayload", "ExamplePayload", "DatasetPayload",
     "UnitMarkPayload"],
)  # fmt: skip
def test_the_js_twin_declares_the_same_fields(name):
    keys, _ = _declared(name)
    assert _js_fields(name) == keys


def test_the_js_layer_union_covers_the_python_layer():
    keys, _ = _declared("LayerPayload")
    js = _js_fields("MapsLayer") | _js_fields("VectorLayer") | _js_fields("OtherLayer")
    assert js == keys


def test_a_colour_scale_is_the_same_stops_in_figures_and_in_the_browser():
    preset = load_preset("deeplabv3_mobilenet_v3_large", weights=None)
    ex = Explorer(preset.model, "astronaut", preprocess=preset.preprocess.with_size(96),
                  class_names=preset.class_names, hooked_modules=["backbone.4"])  # fmt: skip
    for name in COLORSCALES:
        ex.colorscale = name
        drawn = ex.figure("channel").data[0].colorscale
        assert [[t, c] for t, c in drawn] == [[t, c] for t, c in colorscale_stops(name)]
    with pytest.raises(ValueError, match="unknown colour scale 'Jet'"):
        colorscale_stops("Jet")
