"""Export to a self-contained HTML file, widget state that survives saving, images from the
widget (samples and uploads), and the comparison figures."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image

import layerscope as ls
from layerscope import Explorer
from layerscope.models import load_preset


@pytest.fixture(scope="module")
def explorer():
    preset = load_preset("deeplabv3_mobilenet_v3_large", weights=None)
    return Explorer(preset.model, "astronaut", preprocess=preset.preprocess.with_size(128),
                    class_names=preset.class_names,
                    hooked_modules=["backbone.4", "classifier.4"])  # fmt: skip


def test_to_html_is_self_contained(explorer, tmp_path):
    path = explorer.to_html(tmp_path / "report.html")
    text = path.read_text()
    assert "<h2>backbone.4</h2>" in text and "<h2>classifier.4</h2>" in text
    assert "<h2>Prediction</h2>" in text
    # plotly.js is inlined once; nothing is fetched from the network.
    assert text.count("plotly.js v") >= 1
    assert not re.search(r"<script[^>]+src=[\"']https?://", text)
    assert text.count('class="plotly-graph-div"') >= 2 * 5


def test_image_from_samples_and_uploads(explorer):
    assert explorer.image_name == "astronaut" and "chelsea" in explorer._samples
    before = explorer._channel["map"]["data"]
    explorer.image_name = "chelsea"
    assert explorer._error == ""
    assert explorer._image["size"] == [300, 451]
    assert explorer._layer["module"] == explorer.selected_module
    assert explorer._channel["map"]["data"] != before
    # An upload from the front end: a file's bytes in the _upload trait.
    buf = io.BytesIO()
    Image.fromarray(np.full((40, 80, 3), 200, np.uint8)).save(buf, format="PNG")
    explorer._upload = {"name": "grey.png", "data": memoryview(buf.getvalue())}
    assert explorer._error == "" and explorer.image_name == "grey.png"
    assert explorer._image["size"] == [40, 80]
    # resized to 128 x 256 (shorter side 128), backbone.4 at stride 8
    assert explorer.activations["backbone.4"].shape[-2:] == (16, 32)
    explorer._upload = {"name": "notes.txt", "data": memoryview(b"not an image")}
    assert "not an image" in explorer._error and explorer.image_name == "grey.png"
    explorer.image_name = "astronaut"
    # Back to an image seen before: its output comes from the cache, the fields stay known.
    assert explorer._layer["rf"] is not None


def test_saved_widget_state_holds_the_views(explorer):
    state = explorer.get_state()
    for key in ("_layer", "_channel", "_image", "_tree", "_segmentation", "hooked_modules"):
        assert state[key], key
    # Binary payloads travel as buffers in the saved state, not as JSON lists.
    assert isinstance(state["_layer"]["aggregates"]["data"], (bytes, memoryview))


def test_compare_two_images_and_two_models(explorer):
    explorer.hooked_modules = ["backbone.4"]
    cmp = explorer.compare(image="chelsea")
    assert cmp.a.shape == cmp.b.shape and cmp.module == "backbone.4"
    direct = explorer.activations["backbone.4"][0, explorer.selected_channel].numpy()
    assert np.allclose(cmp.a, direct, atol=1e-6)  # "this image" is the explorer's own
    assert np.allclose(cmp.difference, cmp.a - cmp.b)
    fig = cmp.figure()
    assert len(fig.data) == 3 and fig.data[0].zmax == fig.data[1].zmax  # a shared scale
    assert fig.data[2].zmin == -fig.data[2].zmax  # the difference is centred on zero
    other = load_preset("deeplabv3_mobilenet_v3_large", weights=None).model  # other weights
    by_model = explorer.compare(model=other, channel="aggregate")
    assert by_model.what == "mean over channels" and not np.allclose(by_model.a, by_model.b)
    same = explorer.compare(model=explorer.model)
    assert np.abs(same.difference).max() == 0
    with pytest.raises(ls.LayerScopeError, match="either image= .* or model="):
        explorer.compare()
