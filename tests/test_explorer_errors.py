"""The Explorer's promises under faults: errors stay visible until the same action succeeds, no
view shows stale data under a new selection, bad values are refused (raised in Python, shown
and put back from the browser), the memory budget bounds what the Explorer holds, non-finite
values never reach JSON, half-precision models work, and an interrupt leaves it usable."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
import torchvision
import traitlets
from torch import nn

import layerscope as ls
from conftest import ForwardCounter, hook_snapshot, live_tensor_bytes
from layerscope import Explorer
from layerscope.models import load_preset


@pytest.fixture(scope="module")
def preset():
    return load_preset("deeplabv3_resnet50", weights=None)


@pytest.fixture
def explorer(preset):
    return Explorer(preset.model, "astronaut", preprocess=preset.preprocess.with_size(96),
                    class_names=preset.class_names, hooked_modules=["backbone.layer4"])  # fmt: skip


def _wire(state: dict) -> str:
    """The widget state as the kernel sends it: binary buffers apart, the rest strict JSON."""

    def strip(v):
        if isinstance(v, (bytes, memoryview)):
            return None
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [strip(x) for x in v]
        return v

    return json.dumps(strip(state), allow_nan=False)


def test_a_bad_class_is_refused_and_the_error_stays(explorer):
    before = dict(explorer._class_score)
    assert explorer.last_traceback == "" and explorer.errors == {}
    with pytest.raises(traitlets.TraitError, match="class 99 is out of range: this model has 21"):
        explorer.selected_class = 99
    # From the browser: refused, shown, and the browser gets the kept value back.
    explorer.set_state({"selected_class": 99})
    assert "class 99 is out of range" in explorer._error
    assert explorer.selected_class == -1 and explorer._class_score["class"] == before["class"]
    # Other actions that succeed do not wipe it: another observer, another step.
    explorer.aggregate = "max"
    explorer.selected_channel = 3
    assert "class 99" in explorer._error
    explorer.set_state({"selected_class": 0})  # the same action, now valid: the error goes
    assert explorer._error == "" and explorer._class_score["class"] == 0


def test_a_failing_view_never_leaves_the_previous_module_on_screen(explorer, monkeypatch):
    import layerscope.widget.viewstate as viewstate

    original = viewstate.layer_payload

    def broken(name, *args, **kwargs):
        if name == "backbone.layer2":
            raise RuntimeError("this view failed")
        return original(name, *args, **kwargs)

    monkeypatch.setattr(viewstate, "layer_payload", broken)
    assert explorer._layer["module"] == "backbone.layer4"
    explorer.set_state({"hooked_modules": ["backbone.layer4", "backbone.layer2"]})
    assert explorer.selected_module == "backbone.layer2"
    assert "this view failed" in explorer._error and "RuntimeError" in explorer.last_traceback
    assert explorer._layer == {} and explorer._channel == {}  # not layer4's views
    with pytest.raises(ls.LayerScopeError):
        explorer.figure("channel")  # nothing stale to export either
    explorer.set_state({"selected_channel": 1})  # another thing: the error stays
    assert "this view failed" in explorer._error
    explorer.set_state({"selected_module": "backbone.layer4"})  # the same step succeeds
    assert explorer._error == "" and explorer._layer["module"] == "backbone.layer4"


@pytest.mark.parametrize(
    "trait, value, message",
    [
        ("selected_channel", 5000, "channel 5000 is out of range: backbone.layer4 has 2048"),
        ("selected_call", 2, "runs 1 time"),
        ("overlay_opacity", 1.5, "between 0 and 1"),
        ("colorscale", "Jet", "Jet"),
        ("aggregate", "median", "median"),
        ("gradcam_region", [10.0, 10.0, 5.0, 20.0], "y0 < y1"),
        ("hooked_modules", ["backbone.layer4", "layer3"], "did you mean 'backbone.layer3'"),
        ("selected_module", "layer2", "did you mean 'backbone.layer2'"),
    ],
)
def test_bad_values_are_refused_from_python_and_from_the_browser(explorer, trait, value, message):
    kept = getattr(explorer, trait)
    layer = explorer._layer
    with pytest.raises(traitlets.TraitError, match=message):
        setattr(explorer, trait, value)
    assert getattr(explorer, trait) == kept
    sent = []
    explorer.send_state = lambda key=None: sent.append(key)  # what goes back to the browser
    explorer.set_state({trait: value})
    assert message.split(":")[0] in explorer._error and getattr(explorer, trait) == kept
    assert trait in sent  # the browser is put back in sync
    assert explorer._layer is layer  # nothing else changed
    explorer.set_state({"_error": ""})  # the browser's dismiss button
    assert explorer.errors == {}


def test_the_budget_bounds_what_the_explorer_holds(preset):
    from conftest import build_deeplab

    model = build_deeplab()  # a model of its own: no other Explorer shares its store
    baseline = live_tensor_bytes(model)  # whatever else is alive (other tests' widgets)
    names = ["backbone.layer1", "backbone.layer1.0", "backbone.layer1.1", "backbone.layer1.2",
             "backbone.layer1.0.bn3", "backbone.layer1.1.bn3", "backbone.layer1.2.bn3",
             "backbone.layer1.0.downsample"]  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ex = Explorer(model, "astronaut", preprocess=preset.preprocess.with_size(96),
                      class_names=preset.class_names, memory_budget=400_000)  # fmt: skip
        ex.hooked_modules = names
    assert ex._error == "" and ex._layer["module"] == names[-1]
    sizes = {n: ls.capture(model, ex.inputs, [n], cache=False)[n].numel() * 4 for n in names}
    assert all(s > 500_000 for s in sizes.values())  # eight outputs of 590 kB each
    held = live_tensor_bytes(model, ex.inputs, ex.prepared.tensor) - baseline
    # Everything LayerScope holds: the store within the budget, the one exception (the selected
    # module's output, kept in bfloat16 here: 295 kB), and small pooled class scores.
    probs = ex._session.probs.numel() * 4
    assert held <= 400_000 + sizes[names[-1]] // 2 + probs, held
    assert any("memory budget" in str(w.message) for w in caught)


def test_nothing_but_valid_json_reaches_the_browser():
    class Poison(nn.Module):
        def forward(self, y):
            y = y.clone()
            y[0, 0, 0, :3] = torch.tensor([float("nan"), float("inf"), -float("inf")])
            y[0, 1] = float("nan")  # a whole channel
            return y

    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), Poison())
            self.head = nn.Linear(4, 3)

        def forward(self, x):
            return self.head(self.conv(x).mean((2, 3)))

    torch.manual_seed(0)
    ex = Explorer(Odd(), np.zeros((16, 16, 3), np.uint8), hooked_modules=["conv", "head"],
                  class_names=["a", "b", "c"])  # fmt: skip
    ex.selected_module = "conv"
    stats = ex._layer["stats"]
    assert (stats["nan"], stats["posinf"], stats["neginf"]) == (16 * 16 + 1, 1, 1)
    t = ex.activations["conv"][0]
    finite = t[torch.isfinite(t)]
    assert stats["count"] == finite.numel() and stats["max"] == pytest.approx(float(finite.max()))
    assert sum(ex._layer["histogram"]["counts"]) == finite.numel()
    ex.selected_channel = 1  # the all-NaN channel
    assert ex._channel["stats"]["count"] == 0 and ex._channel["stats"]["nan"] == 16 * 16
    assert ex._layer["nonfinite_cells"] > 0
    _wire(ex.get_state())  # strict JSON: raises on NaN or infinity
    ex.selected_module = "head"  # logits are all NaN: the classes still rank, JSON still holds
    _wire(ex.get_state())


def test_a_bfloat16_model_is_explored_in_float32():
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    reference = Explorer(model, "astronaut", preprocess=ls.Preprocess(resize=64),
                         hooked_modules=["layer2"])  # fmt: skip
    half = torchvision.models.resnet18().eval()
    half.load_state_dict(model.state_dict())
    half = half.to(torch.bfloat16)
    ex = Explorer(half, "astronaut", preprocess=ls.Preprocess(resize=64), hooked_modules=["layer2"])
    assert ex._error == "" and ex.inputs.dtype == torch.bfloat16
    assert ex._layer["kind"] == "maps"
    a = np.frombuffer(ex._layer["aggregates"]["data"], np.float32)
    b = np.frombuffer(reference._layer["aggregates"]["data"], np.float32)
    assert np.allclose(a, b, rtol=0.1, atol=0.1)  # bfloat16 arithmetic, float32 payloads


def test_an_interrupt_in_a_step_leaves_the_explorer_usable(explorer, monkeypatch):
    from layerscope.widget.session import Session

    model = explorer.model
    snapshot = hook_snapshot(model)
    original = Session.calls_of

    def interrupted(self, names, strict=True):
        raise KeyboardInterrupt

    monkeypatch.setattr(Session, "calls_of", interrupted)
    with pytest.raises(KeyboardInterrupt):
        explorer.hooked_modules = ["backbone.layer4", "backbone.layer3"]
    assert explorer._status["state"] == "idle" and "interrupted" in explorer._error
    assert explorer._layer == {} and hook_snapshot(model) == snapshot
    monkeypatch.setattr(Session, "calls_of", original)
    explorer.selected_module = "backbone.layer3"
    assert explorer._layer["module"] == "backbone.layer3"
    # Interrupted inside Grad-CAM's backward.
    import layerscope.widget.gradcam_pass as gradcam_pass

    def interrupted_cams(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(gradcam_pass, "full_pass", interrupted_cams)
    with pytest.raises(KeyboardInterrupt):
        explorer.overlay = "gradcam"
    assert explorer._gradcam == {} and explorer._status["state"] == "idle"
    assert hook_snapshot(model) == snapshot and not model.training


def test_grad_cam_switches_between_hooked_modules_without_running_again(preset):
    model = preset.model
    hooked = ["backbone.layer2", "backbone.layer3", "backbone.layer4"]
    ex = Explorer(model, "astronaut", preprocess=preset.preprocess.with_size(96),
                  class_names=preset.class_names, hooked_modules=hooked)  # fmt: skip
    forwards = ForwardCounter(model.backbone.conv1)
    try:
        ex.overlay = "gradcam"
        assert forwards.count == 1 and ex._gradcam["module"] == "backbone.layer4"
        first = ex._gradcam
        for name in ("backbone.layer2", "backbone.layer3", "backbone.layer4"):
            ex.selected_module = name
            assert ex._gradcam["module"] == name and ex._error == ""
        assert forwards.count == 1  # one forward and one backward served all three
        assert ex._gradcam["map"]["data"] == first["map"]["data"]
        direct = ex.grad_cam("backbone.layer3")  # computed alone, the same CAM
        ex.selected_module = "backbone.layer3"
        got = np.frombuffer(ex._gradcam["map"]["data"], np.float32)
        assert np.allclose(got, direct.cam.numpy().ravel(), atol=1e-5)
    finally:
        forwards.remove()


def test_ablated_channels_must_be_integers_and_a_refusal_keeps_the_previous_value(explorer):
    from layerscope.widget.validation import check_ablations

    explorer.ablations = {"backbone.layer4": [3, 7]}
    kept, shown = dict(explorer.ablations), explorer._ablation
    assert shown and explorer._error == ""
    # True is an int to traitlets: only the shared rule stops it being read as channel 1; "12"
    # and 1.7 get the same message (the trait takes any list and leaves the check to the rule).
    for bad in ([True], [3, False], ["12"], [1.7]):
        message = "channels must be integers"
        with pytest.raises(traitlets.TraitError, match=message):
            explorer.ablations = {"backbone.layer4": bad}
        assert explorer.ablations == kept and explorer._ablation is shown
        explorer.set_state({"ablations": {"backbone.layer4": bad}})  # from the browser
        assert message in explorer._error
        assert explorer.ablations == kept and explorer._ablation is shown
        explorer.set_state({"_error": ""})
    # The check itself follows Ablate([...])'s rule (edits.check_channels), word for word.
    shapes = {"backbone.layer4": [1, 2048, 12, 12]}
    for bad in ([True], [3, False], ["12"], [1.7], "12"):
        with pytest.raises(ls.LayerScopeError, match="channels must be integers"):
            ls.Ablate(bad)
        with pytest.raises(traitlets.TraitError, match="channels must be integers"):
            check_ablations({"backbone.layer4": bad}, shapes)
    assert check_ablations({"backbone.layer4": [7, np.int64(3), 7]}, shapes) == {
        "backbone.layer4": [3, 7]
    }
