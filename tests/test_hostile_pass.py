"""What a hostile pass over the day's changes found, each checked against a computation by hand:
a Patch written into by the model, a convolution weight used twice with other biases or strides,
a baseline read after the weights changed or kept in bfloat16, the inputs changed after
intervene(), a convolution's settings changed in place, a module swapped under the feature
visualization cache, a different seed."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import layerscope as ls
from layerscope.capture import Capturer
from layerscope.featurevis import visualize
from layerscope.receptive import receptive_fields


def test_a_patch_is_a_copy_the_model_may_write_into():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    x, y = torch.randn(1, 3, 64, 64), torch.randn(1, 3, 64, 64)
    kept = {}  # by hand: y's bn2 output, cloned before the block's in-place ops

    def keep(m, a, o):
        kept["o"] = o.clone()  # (returns None: the model's output is left alone)

    h = model.layer1[0].bn2.register_forward_hook(keep)
    with torch.no_grad():
        model(y)
    h.remove()
    outs = [ls.intervene(model, x, {"layer1.0.bn2": ls.Patch(y)}).output for _ in range(3)]
    assert all(torch.equal(o, outs[0]) for o in outs)  # `out += identity` wrote into the cache
    again = ls.capture(model, y, ["layer1.0.bn2"])["layer1.0.bn2"]
    assert torch.equal(again, kept["o"])


class _TwoBiases(nn.Module):
    """One weight applied twice to the stem's output, with other biases and strides."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.c = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 5, 3, padding=1)
        self.b2 = nn.Parameter(torch.randn(5) * 3)

    def forward(self, x):
        h = self.stem(x)
        same = (1, 1)  # the settings as the Conv2d holds them: only the bias differs
        bias = F.conv2d(h, self.c.weight, self.b2, same, same, same)
        stride = F.conv2d(h, self.c.weight, self.b2, (2, 2), same, same)  # and another stride
        return self.c(h) + 2 * bias + F.interpolate(stride, size=h.shape[-2:])


def test_exact_drops_when_one_weight_meets_the_zeroed_map_twice():
    torch.manual_seed(0)
    model, x = _TwoBiases().eval(), torch.randn(1, 3, 24, 24)
    with torch.no_grad():
        out = model(x)
    cls = int(out.argmax(1).flatten().mode().values)
    mask = out.argmax(1) == cls
    imp = ls.channel_importance(model, x, "stem", cls, exact_top=3)
    for c, drop in imp.exact.items():  # by hand: the channel zeroed, a plain forward
        h = model.stem.register_forward_hook(
            lambda m, a, o, c=c: o.index_fill(1, torch.tensor([c]), 0)
        )
        with torch.no_grad():
            edited = float((model(x)[:, cls] * mask).sum())
        h.remove()
        assert drop == pytest.approx(imp.score - edited, rel=1e-4, abs=1e-3)


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1),
                         nn.ReLU(), nn.Conv2d(16, 5, 1)).eval()  # fmt: skip


def test_the_baseline_is_of_the_inputs_and_weights_intervene_saw():
    model, x = _net(), torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        expected = model(x)
    res = ls.intervene(model, x, {"1": ls.Ablate([0])})
    x.mul_(3)  # the caller's tensor changes afterwards: the baseline is still of the old values
    assert torch.equal(res.baseline, expected)
    res = ls.intervene(model, x, {"1": ls.Ablate([0])})
    with torch.no_grad():
        model[4].weight.mul_(2)
    with pytest.raises(ls.LayerScopeError, match="weights changed since"):
        res.baseline  # noqa: B018


def test_a_baseline_kept_in_bfloat16_by_the_budget_is_computed_afresh():
    model, x = _net(), torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        Capturer(model, memory_budget=50_000).capture(x, [""], stop_early=False)
        res = ls.intervene(model, x, {"3": ls.Ablate([0])})
        assert res.baseline.dtype == torch.float32 and torch.equal(res.baseline, expected)
        with torch.no_grad():  # and the edited output is the full-precision one
            h = model[3].register_forward_hook(
                lambda m, a, o: o.index_fill(1, torch.tensor([0]), 0)
            )
            by_hand = model(x)
            h.remove()
        assert torch.equal(res.output, by_hand)


def test_receptive_fields_follow_a_setting_changed_in_place():
    model, x = torchvision.models.resnet18(weights=None).eval(), torch.randn(1, 3, 96, 96)
    before = receptive_fields(model, x)["layer4"]
    for m in model.layer4.modules():  # the usual "dilate the last stage" conversion
        if isinstance(m, nn.Conv2d):
            if m.stride == (2, 2):
                m.stride = (1, 1)
            if m.kernel_size == (3, 3):
                m.dilation, m.padding = (2, 2), (2, 2)
    after = receptive_fields(model, x)
    truth = receptive_fields(copy.deepcopy(model), x)["layer4"]  # another object: traced afresh
    assert after["layer4"] == truth != before
    after.clear()  # what a caller does with the result is not the cache's
    assert receptive_fields(model, x)["layer4"] == truth


def test_the_visualization_cache_follows_the_structure_and_the_seed():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3)).eval()
    a = visualize(model, "2", 0, steps=5, size=16, progress=False)
    b = visualize(model, "2", 0, steps=5, size=16, seed=1, progress=False)
    assert not torch.equal(a.tensor, b.tensor)
    model[1] = nn.Tanh()  # no weights changed, the function did
    c = visualize(model, "2", 0, steps=5, size=16, progress=False)
    fresh = visualize(copy.deepcopy(model), "2", 0, steps=5, size=16, progress=False)
    assert torch.equal(c.tensor, fresh.tensor) and not torch.equal(c.tensor, a.tensor)


def test_outputs_the_budget_kept_in_bfloat16_do_not_stand_in():
    torch.manual_seed(0)
    block = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1)
    )
    model = nn.Sequential(block, nn.ReLU(), nn.Conv2d(16, 5, 1)).eval()
    x = torch.randn(1, 3, 64, 64)
    h = model[1].register_forward_hook(lambda m, a, o: o.index_fill(1, torch.tensor([0]), 0))
    with torch.no_grad():
        by_hand = model(x)
    h.remove()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        cap = Capturer(model, memory_budget=150_000)
        cap.capture(x, [""], stop_early=False)
        assert cap.capture(x, ["0"]).calls("0")[0].dtype == torch.bfloat16  # the situation
        res = ls.intervene(model, x, {"1": ls.Ablate([0])})
    assert "0" not in res.reused and torch.equal(res.output, by_hand)
