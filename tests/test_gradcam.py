"""Grad-CAM checked against autograd by hand: at one module or at several from one backward,
through in-place ReLUs, on segmentation models and classifiers, and in the Explorer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

import layerscope as ls
from conftest import build_deeplab, hook_snapshot
from layerscope import Explorer
from layerscope.gradients import grad_cam, grad_cams


def activation_and_gradient(model, x, module, score_fn):
    """By hand: the module's output (first row) with its gradient kept (``retain_grad``), one
    backward of ``score_fn(output)``; returns the activation, its gradient and the score."""
    kept = {}

    def hook(m, a, out):
        out.retain_grad()
        kept["a"] = out

    handle = dict(model.named_modules())[module].register_forward_hook(hook)
    try:
        score = score_fn(model(x))
        score.backward()
    finally:
        handle.remove()
        model.zero_grad(set_to_none=True)
    return kept["a"][0].detach(), kept["a"].grad[0], float(score)


def _direct_cam(model, x, module, score_fn):
    """Grad-CAM by hand: retain the module output's gradient, backward, weight, sum, ReLU."""
    a, g, _ = activation_and_gradient(model, x, module, score_fn)
    return torch.relu((g.mean((1, 2))[:, None, None] * a).sum(0)), g


def test_grad_cam_matches_autograd_on_deeplab():
    model = build_deeplab()
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        pred = model(x)["out"][0].argmax(0)
    cls = int(pred.flatten().mode().values)
    mask = pred == cls
    before = hook_snapshot(model)
    ours = grad_cam(model, x, "backbone.layer4", cls)
    assert hook_snapshot(model) == before and not model.training
    assert all(p.grad is None for p in model.parameters())  # no stray parameter gradients
    model.zero_grad(set_to_none=True)
    ref, g = _direct_cam(model, x, "backbone.layer4", lambda o: (o["out"][0, cls] * mask).sum())
    torch.testing.assert_close(ours.cam, ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ours.gradient, g, rtol=1e-4, atol=1e-6)
    assert ours.pixels == int(mask.sum())
    # A region instead of the predicted pixels.
    region = torch.zeros(96, 96, dtype=torch.bool)
    region[10:40, 20:60] = True
    boxed = grad_cam(model, x, "backbone.layer4", cls, region=region)
    model.zero_grad(set_to_none=True)
    ref_box, _ = _direct_cam(
        model, x, "backbone.layer4", lambda o: (o["out"][0, cls] * region).sum()
    )
    torch.testing.assert_close(boxed.cam, ref_box, rtol=1e-4, atol=1e-5)


def test_grad_cam_through_inplace_relu_and_on_a_classifier():
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    x = torch.randn(1, 3, 64, 64)
    ours = grad_cam(model, x, "layer4", 3)
    model.zero_grad(set_to_none=True)
    ref, _ = _direct_cam(model, x, "layer4", lambda o: o[0, 3])
    torch.testing.assert_close(ours.cam, ref, rtol=1e-4, atol=1e-6)
    # bn1 is followed by ReLU(inplace=True): the hook hands a copy downstream, so autograd
    # sees bn1's own output and the forward is unchanged. The reference is the same network
    # with every ReLU out of place, where the plain hook is right.
    cam = grad_cam(model, x, "layer1.0.bn1", 3)
    plain = torchvision.models.resnet18().eval()
    plain.load_state_dict(model.state_dict())
    for m in plain.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
    ref_bn1, ref_g = _direct_cam(plain, x, "layer1.0.bn1", lambda o: o[0, 3])
    torch.testing.assert_close(cam.cam, ref_bn1, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(cam.gradient, ref_g, rtol=1e-4, atol=1e-7)
    assert cam.activation.min() < 0
    with pytest.raises(ls.LayerScopeError, match="out of range"):
        grad_cam(model, x, "layer4", 1000)
    with pytest.raises(ls.LayerScopeError, match="no call 5"):
        grad_cam(model, x, "layer4", 0, call=5)


def test_one_backward_serves_every_module():
    model = build_deeplab()
    x = torch.randn(1, 3, 96, 96)
    names = ["backbone.layer2", "backbone.layer4", "classifier.0", "backbone.layer1.0.relu"]
    together = grad_cams(model, x, names, 0, region=torch.ones(96, 96, dtype=torch.bool))
    assert set(together) == set(names)
    for name in names:
        alone = grad_cam(model, x, name, 0, region=torch.ones(96, 96, dtype=torch.bool))
        torch.testing.assert_close(together[name].cam, alone.cam, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(together[name].gradient, alone.gradient, rtol=1e-3, atol=1e-5)


def test_explorer_gradcam_overlay_and_region():
    preset = ls.load_preset("deeplabv3_mobilenet_v3_large", weights=None)
    ex = Explorer(
        preset.model,
        ls.sample_image(),
        preprocess=preset.preprocess.with_size(128),
        class_names=preset.class_names,
        hooked_modules=["backbone.16"],
    )
    ex.overlay = "gradcam"
    gc = ex._gradcam
    assert ex._error == "" and gc["module"] == "backbone.16" and gc["pixels"] > 0
    assert gc["map"]["shape"] == gc["map_size"] and sum(gc["histogram"]["counts"]) > 0
    ex.gradcam_region = [0.0, 0.0, 256.0, 512.0]  # the top half of the 512 px image
    assert ex._gradcam["pixels"] == 64 * 128  # the top half of the 128 x 128 class map
    direct = ex.grad_cam(region=[0.0, 0.0, 256.0, 512.0])
    assert np.allclose(
        np.frombuffer(ex._gradcam["map"]["data"], np.float32), direct.cam.numpy().ravel(), atol=1e-6
    )
    ex.overlay = "aggregate"
    assert ex._gradcam == {}


class _TokensToMap(torch.nn.Module):
    """Integer inputs: an embedding laid out as a 4x4 map, then convolutions."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(10, 6)
        self.conv = torch.nn.Conv2d(6, 6, 3, padding=1)
        self.head = torch.nn.Conv2d(6, 3, 1)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids).reshape(ids.shape[0], 4, 4, 6).permute(0, 3, 1, 2)
        return self.head(torch.relu(self.conv(x))).mean(dim=(2, 3))


@pytest.mark.parametrize("frozen", ["all", "backbone only"])
def test_grad_cam_and_importance_of_a_frozen_model_equal_the_unfrozen_ones(frozen):
    """Weights with requires_grad=False (inference, or a frozen backbone while fine-tuning the
    head) used to make the backward raise; the result now equals the same model's with every
    weight trainable, and the flags are left as they were."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    x = torch.rand(1, 3, 64, 64)
    ref = grad_cams(model, x, ["layer2", "layer4"], 5)
    ref_imp = ls.channel_importance(model, x, "layer3", 5, exact_top=2)
    params = model.parameters() if frozen == "all" else [
        p for n, p in model.named_parameters() if not n.startswith("fc")]  # fmt: skip
    for p in params:
        p.requires_grad_(False)
    flags = [p.requires_grad for p in model.parameters()]
    mine = grad_cams(model, x, ["layer2", "layer4"], 5)
    imp = ls.channel_importance(model, x, "layer3", 5, exact_top=2)
    for name in ("layer2", "layer4"):
        for field in ("cam", "gradient", "weights"):
            assert torch.equal(getattr(mine[name], field), getattr(ref[name], field)), field
    np.testing.assert_array_equal(imp.estimate, ref_imp.estimate)
    assert imp.exact == ref_imp.exact
    assert [p.requires_grad for p in model.parameters()] == flags


def test_grad_cam_after_a_frozen_embedding_of_integer_inputs():
    """Integer inputs cannot require grad: with the embedding and the convolution frozen, the
    convolution's output gets a leaf of its own; the result equals the trainable model's."""
    torch.manual_seed(0)
    model = _TokensToMap().eval()
    ids = torch.randint(0, 10, (1, 16))
    ref = grad_cam(model, ids, "conv", 1)
    model.embed.weight.requires_grad_(False)
    model.conv.requires_grad_(False)
    mine = grad_cam(model, ids, "conv", 1)
    for field in ("cam", "gradient"):
        assert torch.equal(getattr(mine, field), getattr(ref, field)), field
    assert not model.conv.weight.requires_grad and model.head.weight.requires_grad


class _SkipAroundIdentity(nn.Module):
    """An Identity whose input is read again on a skip: its output is its input."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.ident = nn.Identity()
        self.conv = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        y = self.ident(x)
        return self.head(self.conv(y) + x).mean(dim=(2, 3))


def test_frozen_weights_keep_every_route_of_the_gradient():
    """The gradient at a module's output also flows through other names for the same tensor
    (an Identity's input, read again on a skip): with every weight frozen it still does, as
    in the trainable model (Grad-CAM and channel importance)."""
    torch.manual_seed(0)
    model = _SkipAroundIdentity().eval()
    x = torch.rand(1, 3, 12, 12)
    ref = grad_cam(model, x, "ident", 2)
    ref_imp = ls.channel_importance(model, x, "ident", 2, exact_top=0)
    model.requires_grad_(False)
    mine = grad_cam(model, x, "ident", 2)
    imp = ls.channel_importance(model, x, "ident", 2, exact_top=0)
    assert torch.equal(mine.gradient, ref.gradient) and torch.equal(mine.cam, ref.cam)
    np.testing.assert_array_equal(imp.estimate, ref_imp.estimate)
