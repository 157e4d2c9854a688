"""Grad-CAM checked against autograd, every output shape, models beyond DeepLabV3."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

import layerscope as ls
from conftest import build_deeplab, hook_snapshot
from layerscope import Explorer
from layerscope.gradients import grad_cam


def _direct_cam(model, x, module, score_fn):
    """Grad-CAM by hand: retain the module output's gradient, backward, weight, sum, ReLU."""
    kept = {}

    def hook(m, a, out):
        out.retain_grad()
        kept["a"] = out

    handle = dict(model.named_modules())[module].register_forward_hook(hook)
    try:
        score_fn(model(x)).backward()
    finally:
        handle.remove()
    a, g = kept["a"][0].detach(), kept["a"].grad[0]
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
    # sees bn1's own output and the forward is unchanged.
    cam = grad_cam(model, x, "layer1.0.bn1", 3)
    assert cam.activation.min() < 0
    with pytest.raises(ls.LayerScopeError, match="out of range"):
        grad_cam(model, x, "layer4", 1000)
    with pytest.raises(ls.LayerScopeError, match="no call 5"):
        grad_cam(model, x, "layer4", 0, call=5)


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
    assert ex._gradcam["pixels"] == 64 * 128
    direct = ex.grad_cam(region=[0.0, 0.0, 256.0, 512.0])
    assert np.allclose(
        np.frombuffer(ex._gradcam["map"]["data"], np.float32), direct.cam.numpy().ravel(), atol=1e-6
    )
    ex.overlay = "aggregate"
    assert ex._gradcam == {}


def test_vision_transformer_tokens_on_their_patch_grid():
    ex = Explorer("vit_b_16", weights=None, hooked_modules=["encoder.layers.encoder_layer_11"])
    layer = ex._layer
    assert layer["kind"] == "maps" and layer["grid"] == [14, 14] and layer["class_token"]
    assert layer["channels"] == 768 and layer["map_size"] == [14, 14]
    assert "class_token_stats" in layer
    assert len(ex._prediction["top_label"]) == 5  # a classifier: the top predictions


def test_vectors_get_labelled_bars():
    ex = Explorer("resnet18", weights=None, hooked_modules=["avgpool", "fc"])
    fc = ex._layer
    assert fc["kind"] == "vector" and fc["length"] == 1000 and len(fc["top_label"]) == 16
    assert abs(sum(fc["top_probability"]) - 1) < 1  # probabilities of the top 16
    ex.selected_module = "avgpool"  # (1, 512, 1, 1): a vector, no labels
    assert ex._layer["kind"] == "vector" and ex._layer["top_label"] is None


class Video(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.conv(x).mean((2, 3, 4)))


def test_video_by_frame_and_anything_else_gets_statistics():
    torch.manual_seed(0)
    clip = torch.rand(1, 3, 5, 16, 16)
    ex = Explorer(
        Video(),
        np.zeros((16, 16, 3), np.uint8),
        preprocess=lambda im: clip,
        hooked_modules=["conv"],
    )
    assert ex._layer["frames"] == 5 and ex._layer["kind"] == "maps"
    ex.selected_frame = 3
    got = np.frombuffer(ex._channel["map"]["data"], np.float32).reshape(16, 16)
    assert np.allclose(got, ex.activations["conv"][0, ex.selected_channel, 3].numpy())
    ex.selected_frame = 9
    assert "out of range" in ex._error and ex.selected_frame == 0


@pytest.mark.parametrize("name", ["fcn_resnet50", "lraspp_mobilenet_v3_large"])
def test_other_segmentation_models(name, monkeypatch):
    monkeypatch.setenv("LAYERSCOPE_IMAGE_SIZE", "96")
    ex = Explorer(name, weights=None)
    assert ex._segmentation["legend"]
    last = [n["id"] for n in ex._tree if n["shape"] and isinstance(n["shape"], list)][-1]
    ex.hooked_modules = [last]
    assert ex._error == "" and ex._layer["kind"] in ("maps", "vector", "values")
