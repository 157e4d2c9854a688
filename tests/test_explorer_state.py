"""The Explorer's state without a browser: toggles become payloads, Python and the widget stay in
sync, images change, figures and the saved state hold what is shown. Each test builds its own
Explorer, so none depends on another's order."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from PIL import Image
from torch import nn

import layerscope as ls
from conftest import build_deeplab
from layerscope import Explorer
from layerscope.models import load_preset
from layerscope.widget.figures import view_names
from layerscope.widget.panels import REGISTRY


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


def _hand_stats(model, inputs, name):
    """Mean and max of a module's output, by a hand-written hook on a fresh forward."""
    kept = []
    hook = dict(model.named_modules())[name].register_forward_hook(
        lambda m, a, out: kept.append(out.detach().clone())
    )
    try:
        with torch.no_grad():
            model(inputs)
    finally:
        hook.remove()
    out = kept[0].double().numpy()
    return out.mean(), out.max()


def test_a_module_shown_again_shows_its_current_output():
    """Going back to a module may reuse its views only while its output is the same: after a
    write to its weights through ``.data`` and after a new image, its statistics are those of a
    hand-hooked forward, not those shown before."""
    model = build_deeplab("mobilenet_v3_large")
    a, b = "backbone.4", "backbone.8"
    ex = Explorer(model, ls.sample_image("chelsea"), preprocess=ls.Preprocess(resize=96),
                  hooked_modules=[a, b])  # fmt: skip

    def shown(name):
        ex.selected_module = b if name == a else a  # away and back
        ex.selected_module = name
        assert ex.errors == {} and ex._layer["module"] == name
        return ex._layer["stats"]["mean"], ex._layer["stats"]["max"]

    def gradcam_shown_and_fresh(name):
        shown(name)
        g = ls.grad_cam(model, ex.inputs, name, ex._gradcam["class"])
        fresh = (g.score, float(g.gradient.max()))
        return (ex._gradcam["score"], ex._gradcam["stats"]["max"]), fresh

    before = shown(a)
    assert before == pytest.approx(_hand_stats(model, ex.inputs, a), rel=1e-5)
    assert shown(a) == before  # nothing changed: the same views
    ex.overlay = "gradcam"
    cam_before, fresh = gradcam_shown_and_fresh(a)
    assert cam_before == pytest.approx(fresh, rel=1e-5)
    model.get_submodule("backbone.2.block.0.0").weight.data.mul_(
        1.7
    )  # upstream of a; no version bump
    after = shown(a)
    assert after == pytest.approx(_hand_stats(model, ex.inputs, a), rel=1e-5)
    assert after != pytest.approx(before, rel=1e-3)
    cam_after, fresh = gradcam_shown_and_fresh(a)
    assert cam_after == pytest.approx(fresh, rel=1e-5) and cam_after != pytest.approx(cam_before)
    ex.image = ls.sample_image("astronaut")  # the same as ex.set_image(...)
    assert ex.image.size == Image.open(ls.sample_image("astronaut")).size
    again = shown(a)
    assert again == pytest.approx(_hand_stats(model, ex.inputs, a), rel=1e-5)
    assert again != pytest.approx(after, rel=1e-3)


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
    views = set(view_names({p.name: p() for p in REGISTRY}))
    for view in views - {
        "vector",
        "gradcam",
        "gradient",
        "ablation",
        "importance",
        "dataset",
        "graph",
        "featurevis",
        "concepts",
    }:
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
    with pytest.raises(ls.LayerScopeError, match=r"press Visualize"):
        explorer.figure("featurevis")
    with pytest.raises(ls.LayerScopeError, match=r"explorer.dissect\(images, masks"):
        explorer.figure("concepts")
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
    ex.overlay = "gradcam"  # a custom model's scores are not guessed: the error says what to do
    assert "pass class_names=[...]" in ex.errors["gradcam"]
    with pytest.raises(TypeError, match="did you mean 'hooked_modules'"):
        Explorer(Tiny(), hooked_module=["x"])
    with pytest.raises(TypeError, match="did you mean 'colorscale'"):
        Explorer(Tiny(), colourscale="Hot")  # checked against the widget's own traits
    with pytest.raises(ls.LayerScopeError, match="deeplabv3_resnet50"):
        Explorer("deeplabv3_resnet5")


def test_a_torchvision_model_passed_as_itself_has_its_classes():
    """DeepLabV3 from torchvision's own builder (not a preset, no class_names=) gets its mask,
    legend and Grad-CAM: the legend holds the classes of the argmax of its upsampled ``out``,
    computed here by hand, named as torchvision's weights name them; a ResNet its ImageNet
    labels."""
    import torch.nn.functional as F
    import torchvision

    model = build_deeplab("mobilenet_v3_large")
    ex = Explorer(model, ls.sample_image("chelsea"), preprocess=ls.Preprocess(resize=96),
                  hooked_modules=["backbone.4"])  # fmt: skip
    names = torchvision.models.segmentation.DeepLabV3_MobileNet_V3_Large_Weights.DEFAULT.meta
    assert ex.class_names == names["categories"]
    with torch.no_grad():
        out = model(ex.inputs)["out"]
    mask = F.interpolate(out, size=ex.inputs.shape[-2:], mode="bilinear").argmax(1)
    legend = ex._segmentation["legend"]
    assert {e["index"] for e in legend} == set(mask.unique().tolist())
    assert all(e["name"] == names["categories"][e["index"]] for e in legend)
    ex.overlay = "gradcam"
    assert ex.errors == {} and ex._gradcam["class"] == legend[0]["index"]

    resnet = torchvision.models.resnet18(weights=None).eval()
    ex = Explorer(resnet, ls.sample_image("chelsea"), preprocess=ls.Preprocess(resize=96))
    with torch.no_grad():
        top = int(resnet(ex.inputs).argmax())
    labels = torchvision.models.ResNet18_Weights.DEFAULT.meta["categories"]
    assert ex._prediction["top_index"][0] == top and ex._prediction["top_label"][0] == labels[top]


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
