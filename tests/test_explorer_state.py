"""The Explorer's state without a browser: toggles become payloads, Python and the widget stay in
sync, images change, figures and the saved state hold what is shown. Each test builds its own
Explorer, so none depends on another's order."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from torch import nn

import layerscope as ls
from conftest import build_deeplab
from layerscope import Explorer
from layerscope.models import load_preset
from layerscope.widget.figures import VIEWS


def _payload_bytes(obj) -> int:
    """Bytes a trait value costs on the wire: binary buffers plus its JSON part."""
    import json

    buffers = 0

    def strip(v):
        nonlocal buffers
        if isinstance(v, (bytes, memoryview)):
            buffers += len(v)
            return None
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items()}
        if isinstance(v, list):
            return [strip(x) for x in v]
        return v

    text = json.dumps(strip(obj))  # first: strip() counts the buffers
    return buffers + len(text)


@pytest.fixture(scope="module")
def preset():
    return load_preset("deeplabv3_resnet50", weights=None)


@pytest.fixture
def explorer(preset):
    return Explorer(
        preset.model, ls.sample_image(), preprocess=preset.preprocess.with_size(128),
        class_names=preset.class_names,
    )  # fmt: skip


def test_default_state(explorer):
    assert explorer._tree[0]["cls"] == "DeepLabV3"
    nodes = {n["id"]: n for n in explorer._tree}
    assert nodes["backbone.layer4"]["shape"] == [1, 2048, 16, 16]  # known after the first run
    assert nodes["classifier.0.convs"]["calls"] == 0
    assert explorer._image["size"] == [512, 512] and explorer._image["jpeg"][:2] == b"\xff\xd8"
    seg = explorer._segmentation
    assert seg["mask_png"][:4] == b"\x89PNG" and seg["legend"] and len(seg["classes"]) == 21
    assert explorer._class_score["map"]["dtype"] == "float32"


def test_hook_toggle_produces_views(explorer):
    explorer.hooked_modules = ["backbone.layer4"]
    assert explorer.selected_module == "backbone.layer4"
    layer, channel = explorer._layer, explorer._channel
    assert layer["kind"] == "maps" and layer["channels"] == 2048 and layer["map_size"] == [16, 16]
    assert explorer.selected_channel == layer["topk"][0]  # the most active channel
    assert channel["channel"] == explorer.selected_channel
    acts = explorer.activations
    t = acts["backbone.layer4"][0]
    assert np.allclose(np.frombuffer(channel["map"]["data"], np.float32).reshape(16, 16),
                       t[explorer.selected_channel].numpy())  # fmt: skip
    mean = np.frombuffer(layer["aggregates"]["data"], np.float32).reshape(3, 16, 16)[0]
    assert np.allclose(mean, t.mean(0).numpy(), atol=1e-5)
    assert layer["stats"]["count"] == t.numel()
    assert layer["rf"] == {"size": [427, 427], "stride": [8, 8], "padding": [213, 213]}
    tree = {n["id"]: n for n in explorer._tree}
    assert tree["backbone.layer1"]["rf"]["size"] == [35, 35]
    assert sum(layer["histogram"]["counts"]) == t.numel()
    assert explorer._error == ""


def test_python_and_widget_stay_in_sync(explorer):
    explorer.hook("backbone.layer1")
    assert explorer.hooked_modules[-1] == "backbone.layer1"
    assert explorer.selected_module == "backbone.layer1"
    explorer.selected_module = "backbone.layer4"
    assert explorer._layer["module"] == "backbone.layer4"
    explorer.selected_channel = 7
    assert explorer._channel["channel"] == 7
    explorer.unhook("backbone.layer4")
    assert explorer.selected_module == "backbone.layer1"
    assert set(explorer.activations) == {"backbone.layer1"}


def test_reused_module_shows_each_call(explorer):
    explorer.hooked_modules = ["backbone.layer1.0.relu"]
    assert explorer._layer["calls"] == 3 and explorer._layer["channels"] == 64
    explorer.selected_call = 2
    assert explorer._layer["call"] == 2 and explorer._layer["channels"] == 256
    third = explorer.activations.calls("backbone.layer1.0.relu")[2][0]
    got = np.frombuffer(explorer._channel["map"]["data"], np.float32).reshape(third.shape[-2:])
    assert np.allclose(got, third[explorer.selected_channel].numpy())
    explorer.selected_module = "backbone.layer1"  # another module: back to its first call
    assert explorer.selected_call == 0 and explorer._layer["call"] == 0


def test_payload_stays_small_for_a_2048_channel_layer(preset):
    ex = Explorer(preset.model, ls.sample_image(), preprocess=preset.preprocess.with_size(520))
    ex.hooked_modules = ["backbone.layer4"]
    assert ex._layer["map_size"] == [65, 65] and ex._layer["channels"] == 2048
    sent = _payload_bytes(ex._layer) + _payload_bytes(ex._channel)
    assert 50_000 < sent < 300_000, sent  # three 65 x 65 float32 maps at least; far from 35 MB
    ex.selected_channel = 3  # a channel change sends only the channel
    assert _payload_bytes(ex._channel) < 25_000


def test_figures_export_what_is_shown(explorer):
    explorer.hooked_modules = ["backbone.layer2"]
    for view in set(VIEWS) - {"vector", "gradcam", "ablation", "importance", "dataset"}:
        fig = explorer.figure(view)
        assert isinstance(fig, go.Figure) and fig.data or fig.layout.images, view
    z = np.asarray(explorer.figure("channel").data[0].z)
    assert np.allclose(z, explorer.activations["backbone.layer2"][0, explorer.selected_channel])
    with pytest.raises(ls.LayerScopeError, match="unknown view"):
        explorer.figure("3d")
    with pytest.raises(ls.LayerScopeError, match="not a vector"):
        explorer.figure("vector")
    with pytest.raises(ls.LayerScopeError, match="no Grad-CAM"):
        explorer.figure("gradcam")
    with pytest.raises(ls.LayerScopeError, match="set explorer.ablations"):
        explorer.figure("ablation")
    with pytest.raises(ls.LayerScopeError, match="set explorer.show_importance"):
        explorer.figure("importance")
    with pytest.raises(ls.LayerScopeError, match=r"run explorer.sweep\(images\)"):
        explorer.figure("dataset")
    explorer.overlay = "gradcam"
    assert explorer.figure("gradcam").data[0].z is not None
    explorer.overlay = "aggregate"


def test_custom_model_and_constructor_errors():
    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU())
            self.head = nn.Linear(8, 4)

        def forward(self, x):
            f = self.features(x)
            return self.head(f.mean((2, 3)))

    torch.manual_seed(0)
    ex = Explorer(Tiny(), np.zeros((40, 60, 3), np.uint8), hooked_modules=["features.0", "head"])
    assert ex._segmentation == {}
    assert ex.selected_module == "head" and ex._layer["kind"] == "vector"
    assert ex._layer["top_label"] is None and ex.figure("vector").data[0].orientation == "h"
    ex.selected_module = "features.0"
    assert ex._layer["map_size"] == [19, 29]
    with pytest.raises(TypeError, match="did you mean 'hooked_modules'"):
        Explorer(Tiny(), hooked_module=["x"])
    with pytest.raises(TypeError, match="did you mean 'colorscale'"):
        Explorer(Tiny(), colourscale="Hot")  # checked against the widget's own traits
    with pytest.raises(ls.LayerScopeError, match="deeplabv3_resnet50"):
        Explorer("deeplabv3_resnet5")


def test_explorer_leaves_the_model_as_found():
    from conftest import hook_snapshot

    model = build_deeplab("mobilenet_v3_large")
    model.train()
    before = hook_snapshot(model)
    ex = Explorer(model, ls.sample_image(), preprocess=ls.Preprocess(resize=96))
    ex.hooked_modules = ["backbone.4", "classifier"]
    assert model.training and hook_snapshot(model) == before


def test_images_from_samples_and_uploads(explorer):
    explorer.hooked_modules = ["backbone.layer2"]
    assert explorer.image_name == "" and "chelsea" in explorer._samples  # a path was given
    before = explorer._channel["map"]["data"]
    explorer.image_name = "chelsea"
    assert explorer._error == ""
    assert explorer._image["size"] == [300, 451]
    assert explorer._layer["module"] == explorer.selected_module == "backbone.layer2"
    assert explorer._channel["map"]["data"] != before
    # An upload from the front end: a file's bytes in the _upload trait.
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((40, 80, 3), 200, np.uint8)).save(buf, format="PNG")
    explorer.set_state({"_upload": {"name": "grey.png", "data": memoryview(buf.getvalue())}})
    assert explorer._error == "" and explorer.image_name == "grey.png"
    assert explorer._image["size"] == [40, 80]
    # resized to 128 x 256 (shorter side 128), backbone.layer2 at stride 8
    assert explorer.activations["backbone.layer2"].shape[-2:] == (16, 32)
    explorer.set_state({"_upload": {"name": "notes.txt", "data": memoryview(b"not an image")}})
    assert "not an image" in explorer._error and explorer.image_name == "grey.png"
    assert explorer._image["size"] == [40, 80] and explorer._layer["module"] == "backbone.layer2"
    explorer.image_name = "astronaut"
    # Back to an image seen before: its output comes from the cache, the fields stay known.
    assert explorer._layer["rf"] is not None and explorer._error == ""


def test_saved_widget_state_holds_the_views(explorer):
    explorer.hooked_modules = ["backbone.layer2"]
    state = explorer.get_state()
    for key in ("_layer", "_channel", "_image", "_tree", "_segmentation", "hooked_modules"):
        assert state[key], key
    # Binary payloads travel as buffers in the saved state, not as JSON lists.
    assert isinstance(state["_layer"]["aggregates"]["data"], (bytes, memoryview))
