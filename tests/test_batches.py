"""A batch of images gives one result per image, each for its own class score: Grad-CAM,
channel importance and interventions, checked image by image against autograd and hooks by hand
(each image alone, in a forward of its own)."""

from __future__ import annotations

import pytest
import torch
import torchvision

import layerscope as ls
from conftest import build_deeplab
from layerscope.gradients import BatchGradCam
from test_gradcam import activation_and_gradient
from test_interventions import ConvModules, by_hand, zero


@pytest.fixture(scope="module")
def model():
    return build_deeplab()


@pytest.fixture(scope="module")
def batch(model):
    """Two different images, and a class both predict somewhere (random weights)."""
    g = torch.Generator().manual_seed(11)
    for _ in range(20):
        xb = torch.randn(2, 3, 96, 96, generator=g)
        with torch.no_grad():
            pred = model(xb)["out"].argmax(1)
        shared = set(pred[0].unique().tolist()) & set(pred[1].unique().tolist())
        if shared:
            cls = max(shared, key=lambda c: int((pred == c).sum()))
            return xb, int(cls), pred == cls
    raise AssertionError("no class predicted in both images")


def test_grad_cam_of_a_batch_is_each_images_own(model, batch):
    xb, cls, masks = batch
    res = ls.grad_cam(model, xb, "backbone.layer4", cls)
    assert isinstance(res, BatchGradCam) and len(res) == 2 and res.cam.shape[0] == 2
    for i in range(2):
        a, g, score = activation_and_gradient(model, xb[i : i + 1], "backbone.layer4",
                               lambda o, i=i: (o["out"][0, cls] * masks[i]).sum())  # fmt: skip
        cam = torch.relu((g.mean((1, 2))[:, None, None] * a).sum(0))
        torch.testing.assert_close(res.cam[i], cam, rtol=1e-3, atol=1e-4)
        torch.testing.assert_close(res[i].gradient, g, rtol=1e-3, atol=1e-5)
        assert res.scores[i] == pytest.approx(score, rel=1e-4, abs=1e-3)
        assert res.pixels[i] == res[i].pixels == int(masks[i].sum())
    # A region per image, and a count that does not match the batch.
    regions = torch.zeros(2, 96, 96, dtype=torch.bool)
    regions[0, :40, :40], regions[1, 50:, 50:] = True, True
    boxed = ls.grad_cam(model, xb, "backbone.layer4", cls, region=regions)
    a, g, _ = activation_and_gradient(model, xb[1:], "backbone.layer4",
                       lambda o: (o["out"][0, cls] * regions[1]).sum())  # fmt: skip
    cam = torch.relu((g.mean((1, 2))[:, None, None] * a).sum(0))
    torch.testing.assert_close(boxed.cam[1], cam, rtol=1e-3, atol=1e-4)
    with pytest.raises(ls.LayerScopeError, match="3 masks for 2 images"):
        ls.grad_cam(model, xb, "backbone.layer4", cls, region=torch.ones(3, 96, 96, dtype=bool))


class _Threshold(torch.nn.Module):
    """Predicts class 1 exactly where the first channel is positive (class 0 elsewhere)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 2, 1)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.bias.zero_()
            self.conv.weight[1, 0] = 1.0

    def forward(self, x):
        return {"out": self.conv(x)}


def test_an_image_of_the_batch_without_the_class_is_named():
    xb = -torch.rand(3, 3, 8, 8)
    xb[0, 0, 2:4, 2:4] = 1.0  # image 0 predicts class 1 there; images 1 and 2 nowhere
    with pytest.raises(ls.LayerScopeError, match="class 1 in image 1 of the batch"):
        ls.grad_cam(_Threshold().eval(), xb, "conv", 1)
    xb[1:, 0, 5, 5] = 1.0  # now every image does: one pixel each for 1 and 2
    res = ls.grad_cam(_Threshold().eval(), xb, "conv", 1)
    assert res.pixels == (4, 1, 1)


def test_grad_cam_of_a_classifier_batch_uses_each_images_logit():
    torch.manual_seed(0)
    net = torchvision.models.resnet18().eval()
    xb = torch.randn(3, 3, 64, 64)
    res = ls.grad_cams(net, xb, ["layer3", "layer4"], 7)
    for i in range(3):
        for name in ("layer3", "layer4"):
            a, g, score = activation_and_gradient(net, xb[i : i + 1], name, lambda o: o[0, 7])
            cam = torch.relu((g.mean((1, 2))[:, None, None] * a).sum(0))
            torch.testing.assert_close(res[name].cam[i], cam, rtol=1e-3, atol=1e-5)
            assert res[name].scores[i] == pytest.approx(score, rel=1e-4)


def test_channel_importance_of_a_batch_is_each_images_own(model, batch):
    xb, cls, masks = batch
    heads = sum(isinstance(m, torch.nn.Conv2d) for m in model.classifier.modules())
    with ConvModules(model) as plain, torch.no_grad():
        model(xb)
    ls.channel_importance(model, xb, "backbone.layer4", cls, exact_top=0)  # the order known
    with ConvModules(model) as convs:
        results = ls.channel_importance(model, xb, "backbone.layer4", cls, exact_top=3, batch=4)
    # One forward of the batch; per image, one batch of 3 through the classifier only.
    assert convs.count == plain.count + 2 * heads
    assert len(results) == 2
    for i, imp in enumerate(results):
        a, g, score = activation_and_gradient(model, xb[i : i + 1], "backbone.layer4",
                               lambda o, i=i: (o["out"][0, cls] * masks[i]).sum())  # fmt: skip
        torch.testing.assert_close(torch.from_numpy(imp.estimate), (a * g).sum((1, 2)),
                                   rtol=1e-3, atol=1e-3)  # fmt: skip
        assert imp.score == pytest.approx(score, rel=1e-4, abs=1e-3)
        for c, drop in imp.exact.items():  # each channel zeroed in that image alone
            out, _ = by_hand(model, xb[i : i + 1], {"backbone.layer4": zero([c])})
            edited = float((out["out"][0, cls] * masks[i]).sum())
            assert drop == pytest.approx(score - edited, rel=1e-3, abs=1e-2)
    assert list(results[0].exact) != list(results[1].exact) or not torch.equal(
        torch.from_numpy(results[0].estimate), torch.from_numpy(results[1].estimate)
    )


def test_an_intervention_on_a_batch_edits_every_image(model, batch):
    xb, _, _ = batch
    res = ls.intervene(model, xb, {"backbone.layer3": ls.Ablate([2, 5])}, capture=["classifier"])
    for i in range(2):
        ref, seen = by_hand(model, xb[i : i + 1], {"backbone.layer3": zero([2, 5])},
                            capture=["classifier"])  # fmt: skip
        torch.testing.assert_close(res.output["out"][i : i + 1], ref["out"], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(res["classifier"][i : i + 1], seen["classifier"][0],
                                   rtol=1e-4, atol=1e-4)  # fmt: skip
        with torch.no_grad():
            plain = model(xb[i : i + 1])["out"]
        torch.testing.assert_close(res.baseline["out"][i : i + 1], plain, rtol=1e-4, atol=1e-4)
