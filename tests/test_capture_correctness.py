"""What hand-written hooks get wrong, checked on real torchvision models."""

from __future__ import annotations

from collections import OrderedDict, namedtuple

import pytest
import torch
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

import layerscope as ls
from conftest import assert_same, build_deeplab, hook_snapshot, reference_capture
from layerscope import CaptureError, UnknownModuleError
from layerscope.nested import Dropped


def test_output_is_cloned_before_inplace_relu(fresh_deeplab, image_batch):
    acts = ls.capture(fresh_deeplab, image_batch, ["backbone.layer1.0.bn1"])
    bn1 = acts["backbone.layer1.0.bn1"]
    # The Bottleneck's ReLU(inplace=True) runs right after bn1; a clone keeps the negatives.
    assert (bn1 < 0).any()
    assert bn1.device.type == "cpu" and not bn1.requires_grad


def test_feature_extractor_returns_the_aliased_value(fresh_deeplab, image_batch):
    # Documented in docs/capture.md: torchvision's extractor hands back bn1 after the in-place ReLU.
    # Asked for bn1 alone, the traced graph ends at bn1; asked with a later node, the in-place
    # ReLU runs on the very tensor it returns.
    fx = create_feature_extractor(fresh_deeplab, ["backbone.layer1.0.bn1", "backbone.layer1"])
    with torch.no_grad():
        aliased = fx(image_batch)["backbone.layer1.0.bn1"]
    ours = ls.capture(fresh_deeplab, image_batch, ["backbone.layer1.0.bn1"], cache=False)
    assert not (aliased < 0).any()
    assert torch.equal(ours["backbone.layer1.0.bn1"].clamp(min=0), aliased)


def test_feature_extractor_agrees_where_nothing_is_aliased(fresh_deeplab, image_batch):
    names = ["backbone.layer1", "backbone.layer2", "backbone.layer3", "backbone.layer4"]
    fx = create_feature_extractor(fresh_deeplab, names)
    with torch.no_grad():
        theirs = fx(image_batch)
    ours = ls.capture(fresh_deeplab, image_batch, names)
    for n in names:
        assert torch.equal(ours[n], theirs[n])


def test_every_call_of_a_reused_module_in_order(fresh_deeplab, image_batch):
    name = "backbone.layer1.0.relu"
    acts = ls.capture(fresh_deeplab, image_batch, [name])
    ref = reference_capture(fresh_deeplab, image_batch, [name])[name]
    calls = acts.calls(name)
    assert len(calls) == 3
    for ours, theirs in zip(calls, ref):
        assert torch.equal(ours, theirs)
    assert torch.equal(acts[name], calls[0])
    # The three calls differ: conv1's, conv2's and the residual sum's channels.
    assert calls[0].shape[1] == 64 and calls[2].shape[1] == 256


def test_dict_outputs_keep_their_structure(fresh_deeplab, image_batch):
    acts = ls.capture(fresh_deeplab, image_batch, ["backbone", ""])
    backbone = acts["backbone"]
    # IntermediateLayerGetter fills it in execution order: layer3 ("aux") before layer4 ("out").
    assert isinstance(backbone, OrderedDict) and list(backbone) == ["aux", "out"]
    whole = acts[""]
    assert list(whole) == ["out", "aux"] and whole["out"].shape[-2:] == (96, 96)
    assert acts.output is not None and torch.equal(acts.output["out"], whole["out"])


def test_never_called_container_is_reported(fresh_deeplab, image_batch):
    names = ["classifier.0.convs", "classifier.0.convs.4", "classifier.0.convs.4.3"]
    acts = ls.capture(fresh_deeplab, image_batch, names)
    assert acts.never_called == ["classifier.0.convs"]
    assert "classifier.0.convs" not in acts and len(acts) == 2
    assert acts.calls("classifier.0.convs") == []
    with pytest.raises(KeyError, match="never called"):
        acts["classifier.0.convs"]
    # ASPP's image-pooling branch: a 1x1 map inside, upsampled by its own forward.
    assert acts["classifier.0.convs.4.3"].shape[-2:] == (1, 1)
    assert acts["classifier.0.convs.4"].shape[-2:] == (12, 12)


@pytest.mark.parametrize("backbone", ["resnet50", "resnet101", "mobilenet_v3_large"])
def test_every_module_equals_the_plain_reference(backbone, image_batch):
    model = build_deeplab(backbone)
    names = [n for n, _ in model.named_modules()]
    ref = reference_capture(model, image_batch, names)
    acts = ls.capture(model, image_batch, names, memory_budget=4 * 2**30)
    assert not acts.memory.changed_anything
    for n in names:
        assert len(acts.calls(n)) == len(ref[n]), n
        for ours, theirs in zip(acts.calls(n), ref[n]):
            assert_same(ours, theirs)
    # A second capture that stops early gives the very same tensors for an early module.
    early = ls.capture(
        model,
        image_batch,
        ["backbone.layer1" if "resnet" in backbone else "backbone.4"],
        cache=False,
    )
    assert early.stopped_early
    for n in early:
        assert_same(early[n], ref[n][0])


class Shared(nn.Module):
    """A block used twice, a tuple-returning module and a dict output with non-tensor parts."""

    Pair = namedtuple("Pair", ["left", "right"])

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Linear(4, 4), nn.ReLU(inplace=True))
        self.split = Split()
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> dict:
        a = self.block(x)
        b = self.block(a)
        left, right = self.split(b)
        left += 1  # in place, after split returned
        return {
            "logits": self.head(left),
            "pair": self.Pair(left, right),
            "note": "ok",
            "meta": object(),
            "nested": [(left.sum(), {"k": right})],
        }


class Split(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x[:, :2].repeat(1, 2), x[:, 2:].repeat(1, 2)


def test_custom_model_reuse_tuples_and_non_tensor_parts():
    torch.manual_seed(0)
    model = Shared().eval()
    x = torch.randn(3, 4)
    names = [n for n, _ in model.named_modules()]
    ref = reference_capture(model, x, names[1:])
    acts = ls.capture(model, x, names)
    assert len(acts.calls("block")) == 2 and len(acts.calls("block.1")) == 2
    for n in names[1:]:
        for ours, theirs in zip(acts.calls(n), ref[n]):
            assert_same(ours, theirs)
    left, _ = acts["split"]
    assert isinstance(acts["split"], tuple)
    assert torch.equal(left, ref["split"][0][0])  # the in-place += 1 came later
    whole = acts[""]
    assert whole["note"] == "ok"
    assert whole["meta"] == Dropped("object")
    assert isinstance(whole["pair"], Shared.Pair)
    assert torch.equal(whole["nested"][0][1]["k"], acts.output["nested"][0][1]["k"])


class Exploding(nn.Module):
    def __init__(self, exc: BaseException) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.exc = exc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.bn(self.conv(x))  # the hooked modules run, then the forward fails
        raise self.exc


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_model_left_as_found_when_forward_raises(exc):
    model = Exploding(exc)
    model.train()
    model.bn.eval()  # a mixed state must come back exactly
    before_hooks = hook_snapshot(model)
    before_modes = [m.training for m in model.modules()]
    torch.set_grad_enabled(True)
    expected = CaptureError if isinstance(exc, Exception) else KeyboardInterrupt
    with pytest.raises(expected):
        ls.capture(model, torch.randn(1, 3, 8, 8), ["conv", "bn"])
    assert hook_snapshot(model) == before_hooks
    assert [m.training for m in model.modules()] == before_modes
    assert torch.is_grad_enabled()


def test_hooks_and_modes_restored_after_success(fresh_deeplab, image_batch):
    model = fresh_deeplab
    before = hook_snapshot(model)
    assert torch.is_grad_enabled()  # a capture from plain code: grad mode on, and kept on
    ls.capture(model, image_batch, ["backbone.layer1", "classifier"])
    assert torch.is_grad_enabled()
    assert hook_snapshot(model) == before and not model.training
    with torch.no_grad():  # and off when the caller had it off
        ls.capture(model, image_batch.flip(-1), ["backbone.layer1", "classifier"])
        assert not torch.is_grad_enabled()
    assert hook_snapshot(model) == before
    assert not model.training and torch.is_grad_enabled()


def test_unknown_names_suggest_close_matches(fresh_deeplab, image_batch):
    with pytest.raises(UnknownModuleError) as info:
        ls.capture(fresh_deeplab, image_batch, ["layer4"])
    assert info.value.suggestions[0] == "backbone.layer4"
    assert "did you mean 'backbone.layer4'" in str(info.value)
    with pytest.raises(UnknownModuleError, match="backbone.layer1"):
        ls.capture(fresh_deeplab, image_batch, ["backbone.layr1"])


def test_bad_inputs_give_clear_errors_and_leave_the_model(fresh_deeplab, image_batch):
    model = fresh_deeplab
    before = hook_snapshot(model)
    with pytest.raises(ValueError, match="no modules to capture"):
        ls.capture(model, image_batch, [])
    with pytest.raises(CaptureError, match=r"unsqueeze\(0\)"):
        ls.capture(model, image_batch[0], ["backbone.layer1"])
    with pytest.raises(CaptureError, match="uint8"):
        ls.capture(model, (image_batch * 50).to(torch.uint8), ["backbone.layer1"])
    with pytest.raises(CaptureError, match="float64"):
        ls.capture(model, image_batch.double(), ["backbone.layer1"])
    with pytest.raises(TypeError, match="no tensor"):
        ls.capture(model, "image.png", ["backbone.layer1"])
    assert hook_snapshot(model) == before and not model.training
