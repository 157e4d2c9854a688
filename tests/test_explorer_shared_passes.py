"""What the Explorer's views computed serves the Python API without another pass: Grad-CAM and
channel importance, each checked against the same analysis computed afresh (itself checked
against autograd and hand ablations in test_gradcam.py and test_interventions.py), with the
forwards counted from outside."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

import layerscope as ls
from conftest import ForwardCounter
from layerscope import Explorer
from layerscope.gradients import grad_cam


def test_explorer_grad_cam_reuses_the_views_pass_and_equals_grad_cam_by_hand():
    """What the overlay drew serves ``explorer.grad_cam()`` without another forward, and it is
    the same Grad-CAM as one computed afresh (checked against autograd by hand above): cam,
    activation, gradient, weights, score and pixels, for each hooked module and a new image."""
    preset = ls.load_preset("deeplabv3_mobilenet_v3_large", weights=None)
    names = ["backbone.16", "backbone.12"]
    ex = Explorer(preset.model, ls.sample_image(), preprocess=preset.preprocess.with_size(128),
                  class_names=preset.class_names, hooked_modules=names)  # fmt: skip
    for image in (None, ls.sample_image("chelsea")):
        if image is not None:
            ex.set_image(image)
        ex.overlay = "gradcam"
        forwards = ForwardCounter(dict(preset.model.named_modules())["backbone.0"])
        try:
            mine = {n: ex.grad_cam(module=n) for n in names}
        finally:
            forwards.remove()
        assert forwards.count == 0  # the overlay's forward and backward served both
        for n in names:
            fresh = grad_cam(preset.model, ex.inputs, n, mine[n].target_class)
            for field in ("cam", "activation", "gradient", "weights"):
                got, want = getattr(mine[n], field), getattr(fresh, field)
                torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6, msg=field)
            assert mine[n].score == pytest.approx(fresh.score, rel=1e-5)
            assert mine[n].pixels == fresh.pixels
        ex.overlay = "aggregate"


def test_explorer_channel_importance_is_the_views_result_computed_once():
    preset = ls.load_preset("deeplabv3_mobilenet_v3_large", weights=None)
    model = preset.model
    ex = Explorer(model, ls.sample_image(), preprocess=preset.preprocess.with_size(128),
                  class_names=preset.class_names, hooked_modules=["backbone.16"])  # fmt: skip
    ex.show_importance = True
    view = ex.view.importance
    forwards = ForwardCounter(dict(model.named_modules())["backbone.0"])
    try:
        mine = ex.channel_importance()
    finally:
        forwards.remove()
    assert forwards.count == 0  # the view's computation, shared
    fresh = ls.channel_importance(model, ex.inputs, "backbone.16", mine.target_class,
                                  exact_top=16)  # fmt: skip
    assert mine.target_class == view["target"]
    assert mine.score == pytest.approx(fresh.score, rel=1e-5)
    np.testing.assert_allclose(mine.estimate, fresh.estimate, rtol=1e-4, atol=1e-6)
    assert list(mine.order[:16]) == list(fresh.order[:16]) == view["channels"][:16]
    assert mine.exact.keys() == fresh.exact.keys()
    for c, drop in fresh.exact.items():
        assert mine.exact[c] == pytest.approx(drop, rel=1e-4, abs=1e-4)


def test_explorer_channel_importance_follows_the_class_and_the_image():
    """Another class, or a new image, is another computation, not the first one served again
    (a classifier: every class has a score)."""
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    pre = ls.Preprocess(resize=(96, 96))
    ex = Explorer(model, ls.sample_image(), preprocess=pre, hooked_modules=["layer4"])
    first = ex.channel_importance()
    for cls in (first.target_class, (first.target_class + 7) % 1000):
        mine = ex.channel_importance(target_class=cls)
        fresh = ls.channel_importance(model, ex.inputs, "layer4", cls, exact_top=16)
        assert mine.target_class == cls
        np.testing.assert_allclose(mine.estimate, fresh.estimate, rtol=1e-4, atol=1e-6)
        assert mine.exact.keys() == fresh.exact.keys()
    ex.set_image(ls.sample_image("chelsea"))
    again = ex.channel_importance(target_class=first.target_class)
    fresh = ls.channel_importance(model, ex.inputs, "layer4", first.target_class, exact_top=16)
    np.testing.assert_allclose(again.estimate, fresh.estimate, rtol=1e-4, atol=1e-6)
    assert not np.allclose(again.estimate, first.estimate)


def test_importance_after_the_grad_cam_overlay_runs_no_backward():
    """With the Grad-CAM overlay drawn, the importance view takes its gradient (same image,
    class and module) instead of a forward and backward of its own; the result equals channel
    importance computed afresh."""
    preset = ls.load_preset("deeplabv3_mobilenet_v3_large", weights=None)
    model = preset.model
    ex = Explorer(model, ls.sample_image(), preprocess=preset.preprocess.with_size(128),
                  class_names=preset.class_names, hooked_modules=["backbone.16"])  # fmt: skip
    ex.overlay = "gradcam"
    stem = [m for m in dict(model.named_modules())["backbone.0"].modules()
            if isinstance(m, torch.nn.Conv2d)][0]  # fmt: skip
    ran = []  # grad mode of each time the stem's convolution really ran (not standing in)
    original = torch.nn.Conv2d._conv_forward

    def counted(conv, *args, **kwargs):
        if conv is stem:
            ran.append(torch.is_grad_enabled())
        return original(conv, *args, **kwargs)

    torch.nn.Conv2d._conv_forward = counted
    try:
        ex.show_importance = True
        mine = ex.channel_importance()
    finally:
        torch.nn.Conv2d._conv_forward = original
    # No forward with grad (so no backward); at most one forward, until the module, for the
    # stand-ins (none since the overlay's Grad-CAM ran only what follows the module: it
    # captured them).
    assert True not in ran and len(ran) <= 1, ran
    fresh = ls.channel_importance(model, ex.inputs, "backbone.16", mine.target_class,
                                  exact_top=16)  # fmt: skip
    assert mine.score == pytest.approx(fresh.score, rel=1e-5)
    np.testing.assert_allclose(mine.estimate, fresh.estimate, rtol=1e-4, atol=1e-5)
    assert list(mine.order[:16]) == list(fresh.order[:16])
    for c, drop in fresh.exact.items():
        assert mine.exact[c] == pytest.approx(drop, rel=1e-4, abs=1e-4)


def test_a_module_hooked_under_the_grad_cam_overlay_runs_only_what_follows_it_again():
    """With the Grad-CAM overlay on, hooking a new module captures it (a forward without
    autograd until it, keeping the outputs of the modules before it) and then runs only what
    follows it with autograd, from the captured output: the convolutions before it and its own
    run once, without autograd. Counted
    from outside (the convolutions that really ran, and whether autograd was on), and the
    Grad-CAM drawn equals one computed afresh by a full forward and backward."""
    preset = ls.load_preset("deeplabv3_mobilenet_v3_large", weights=None)
    model = preset.model
    ex = Explorer(model, ls.sample_image(), preprocess=preset.preprocess.with_size(128),
                  class_names=preset.class_names, hooked_modules=["backbone.4"])  # fmt: skip
    ex.overlay = "gradcam"
    named = dict(model.named_modules())

    def first_conv(name: str) -> torch.nn.Conv2d:
        return next(m for m in named[name].modules() if isinstance(m, torch.nn.Conv2d))

    watched = {first_conv("backbone.0"): "stem", first_conv("backbone.16"): "new",
               first_conv("classifier"): "head"}  # fmt: skip
    ran: list[tuple[str, bool]] = []
    original = torch.nn.Conv2d._conv_forward

    def counted(conv, *args, **kwargs):
        if conv in watched:
            ran.append((watched[conv], torch.is_grad_enabled()))
        return original(conv, *args, **kwargs)

    torch.nn.Conv2d._conv_forward = counted
    try:
        ex.hooked_modules = ["backbone.4", "backbone.16"]
    finally:
        torch.nn.Conv2d._conv_forward = original
    assert ex.errors == {} and ex._gradcam["module"] == "backbone.16"
    assert ("stem", True) not in ran and ("new", True) not in ran, ran
    # One forward until the new module (its capture, which keeps what stands in before it).
    assert ran.count(("stem", False)) == 1 and ran.count(("new", False)) == 1, ran
    assert ran.count(("head", True)) == 1, ran
    mine = ex.grad_cam("backbone.16")
    fresh = grad_cam(model, ex.inputs, "backbone.16", mine.target_class)
    for field in ("cam", "activation", "gradient", "weights"):
        assert torch.equal(getattr(mine, field), getattr(fresh, field)), field
    assert mine.score == fresh.score and mine.pixels == fresh.pixels


class _SkipAroundIdentity(torch.nn.Module):
    """An Identity whose input is read again on a skip: its output is its input."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.ident = torch.nn.Identity()
        self.conv = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.head = torch.nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = torch.relu(self.stem(x))
        y = self.ident(x)
        return {"out": self.head(self.conv(y) + x)}


def _case(kind: str) -> tuple[torch.nn.Module, Explorer, str]:
    torch.manual_seed(0)
    if kind == "skip around an Identity":
        model = _SkipAroundIdentity().eval()
        ex = Explorer(model, torch.rand(1, 3, 40, 40), hooked_modules=["stem"],
                      class_names=list("abcd"))  # fmt: skip
        return model, ex, "ident"
    if kind == "channels-last classifier":
        model = torchvision.models.resnet18().eval().to(memory_format=torch.channels_last)
        return model, Explorer(model, torch.rand(1, 3, 96, 96), hooked_modules=["layer1"]), "layer4"
    preset = ls.load_preset("deeplabv3_mobilenet_v3_large", weights=None)
    ex = Explorer(preset.model, ls.sample_image(), preprocess=preset.preprocess.with_size(96),
                  class_names=preset.class_names, hooked_modules=["backbone.4"])  # fmt: skip
    return preset.model, ex, {"auxiliary head": "aux_classifier.0", "dict output": "backbone"}[kind]


@pytest.mark.parametrize(
    "kind", ["auxiliary head", "dict output", "skip around an Identity", "channels-last classifier"]
)
def test_a_module_hooked_under_the_overlay_whose_output_a_copy_cannot_stand_for(kind):
    """Where running only what follows a module from a copy of its output would be wrong (found
    by a hostile pass): a module off the class score's path (its CAM is zero, not an error), an
    output of several tensors (the dict a backbone returns: layer3's output also feeds layer4),
    an output that is the module's input (read again on a skip), a channels-last model (a
    contiguous copy rounds differently). Each equals a full forward and backward, bit for bit."""
    model, ex, name = _case(kind)
    ex.overlay = "gradcam"
    ex.hooked_modules = [*ex.hooked_modules, name]
    assert ex.errors == {}
    mine = ex.grad_cam(name)
    fresh = grad_cam(model, ex.inputs, name, mine.target_class)
    for field in ("cam", "gradient"):
        assert torch.equal(getattr(mine, field), getattr(fresh, field)), field
    assert mine.score == fresh.score


def test_a_module_without_a_map_hooked_under_the_overlay_leaves_the_others_grad_cam_alone():
    """A classifier's ``fc`` (N, 1000) hooked beside ``layer3`` under the overlay: selecting
    ``layer3`` shows its Grad-CAM with no error (``fc`` has no map, so it has none), and no
    forward with autograd runs again for ``fc`` on later clicks (counted from outside)."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    ex = Explorer(model, torch.rand(1, 3, 64, 64), hooked_modules=["layer3"])
    ex.overlay = "gradcam"
    ex.hooked_modules = ["layer3", "fc"]
    assert "fc has none" in ex.errors.get("gradcam", "")  # fc selected: it has no map
    ran: list[bool] = []
    original = torch.nn.Conv2d._conv_forward

    def counted(conv, *args, **kwargs):
        if conv is model.conv1:
            ran.append(torch.is_grad_enabled())
        return original(conv, *args, **kwargs)

    torch.nn.Conv2d._conv_forward = counted
    try:
        for pick in ("layer3", "fc", "layer3"):
            ex.selected_module = pick
    finally:
        torch.nn.Conv2d._conv_forward = original
    assert ex.errors == {} and ex._gradcam["module"] == "layer3"
    assert True not in ran, ran
    fresh = grad_cam(model, ex.inputs, "layer3", ex.grad_cam("layer3").target_class)
    assert torch.equal(ex.grad_cam("layer3").cam, fresh.cam)


def test_the_views_grad_cam_keeps_a_float64_models_score():
    """A float64 model's class score, as the overlay's pass keeps it, is the score a fresh
    Grad-CAM gives (it was kept in float32)."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval().double()
    ex = Explorer(model, torch.rand(1, 3, 64, 64, dtype=torch.float64), hooked_modules=["layer3"])
    ex.overlay = "gradcam"
    mine = ex.grad_cam("layer3")
    fresh = grad_cam(model, ex.inputs, "layer3", mine.target_class)
    assert mine.score == fresh.score and torch.equal(mine.cam, fresh.cam)


def test_explorer_grad_cam_under_a_tight_budget_is_the_modules_own_output():
    """Under a budget too small for every hooked output, ``explorer.grad_cam()`` used to return
    the activation the store kept in bfloat16, or raise for one it dropped; it now computes
    afresh whatever the store cannot give as the module gave it."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    names = ["layer1", "layer2", "layer3"]
    with pytest.warns(ResourceWarning):
        ex = Explorer(model, torch.rand(1, 3, 96, 96), hooked_modules=names,
                      memory_budget=60_000)  # fmt: skip
        ex.overlay = "gradcam"
    for name in names:
        mine = ex.grad_cam(name)
        fresh = grad_cam(model, ex.inputs, name, mine.target_class)
        assert mine.activation.dtype == torch.float32, name
        assert torch.equal(mine.activation, fresh.activation), name
        assert torch.equal(mine.cam, fresh.cam), name
