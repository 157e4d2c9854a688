"""Interventions against hand-written hooks doing the same edit on a plain forward, the reuse of
what an edit cannot change counted from outside (the convolutions that ran), and channel
importance against single-channel ablations and an autograd computation by hand."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn
from torch.overrides import TorchFunctionMode

import layerscope as ls
from conftest import assert_same, build_deeplab, hook_snapshot


@pytest.fixture(scope="module")
def model():
    return build_deeplab()


@pytest.fixture(scope="module")
def x():
    return torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(3))


def by_hand(model, x, edits: dict, capture=()):
    """The plain way: forward hooks that return the edited output, on a full forward."""
    named = dict(model.named_modules())
    seen = {n: [] for n in capture}
    counts: dict[str, int] = {}

    def editor(name, fn):
        def hook(m, a, out):
            i = counts.get(name, 0)
            counts[name] = i + 1
            return fn(i, out)

        return hook

    handles = [named[n].register_forward_hook(editor(n, f)) for n, f in edits.items()]
    handles += [named[n].register_forward_hook(lambda m, a, o, n=n: seen[n].append(o.clone()))
                for n in capture]  # fmt: skip
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        for h in handles:
            h.remove()
    return out, seen


def zero(channels, call=None):
    def fn(i, out):
        if call is not None and i != call:
            return out
        out = out.clone()
        out[:, channels] = 0
        return out

    return fn


class Convs(TorchFunctionMode):
    """Counts the convolutions that run, from outside LayerScope."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") == "conv2d":
            self.count += 1
        return func(*args, **(kwargs or {}))


def test_ablation_equals_hand_written_hooks_and_reuses_the_prefix(model, x):
    res = ls.intervene(model, x, {"backbone.layer4": ls.Ablate([3, 7])}, capture=["classifier"])
    ref, seen = by_hand(model, x, {"backbone.layer4": zero([3, 7])}, capture=["classifier"])
    assert_same(res.output, ref)
    assert torch.equal(res["classifier"], seen["classifier"][0])
    with torch.no_grad():
        assert_same(res.baseline, model(x))
    assert not torch.equal(res.output["out"], res.baseline["out"])
    assert "backbone.layer3" in res.reused and "backbone.layer4" not in res.reused
    # Only layer4 and the heads run: their convolutions, counted in the module tree by hand.
    heads = [model.backbone.layer4, model.classifier, model.aux_classifier]
    expected = sum(isinstance(m, nn.Conv2d) for h in heads for m in h.modules())
    with Convs() as convs:
        again = ls.intervene(model, x, {"backbone.layer4": ls.Ablate([3, 7])})
    assert convs.count == expected < sum(isinstance(m, nn.Conv2d) for m in model.modules())
    assert_same(again.output, ref)
    plain = ls.intervene(model, x, {"backbone.layer4": ls.Ablate([3, 7])}, reuse=False)
    assert_same(plain.output, ref) and plain.reused == []


def test_scale_functions_several_modules_and_one_call_of_a_reused_module(model, x):
    def double(i, out):
        return out * 2

    edits = {
        "backbone.layer2": ls.Scale([0, 5], 3.0),
        "backbone.layer1.0.relu": ls.Ablate([1], value=-1.0, call=1),  # the second call only
        "classifier.4": lambda out: out * 2,
    }

    def scale(i, out):
        out = out.clone()
        out[:, [0, 5]] *= 3.0
        return out

    def minus_one(i, out):
        if i != 1:
            return out
        out = out.clone()
        out[:, [1]] = -1.0
        return out

    res = ls.intervene(model, x, edits)
    ref, _ = by_hand(model, x, {"backbone.layer2": scale, "backbone.layer1.0.relu": minus_one,
                                "classifier.4": double})  # fmt: skip
    assert_same(res.output, ref)


def test_patch_puts_another_inputs_output_in(model, x):
    other = torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        kept = {}
        h = model.backbone.layer3.register_forward_hook(lambda m, a, o: kept.setdefault("o", o))
        model(other)
        h.remove()
    res = ls.intervene(model, x, {"backbone.layer3": ls.Patch(other)})
    ref, _ = by_hand(model, x, {"backbone.layer3": lambda i, out: kept["o"]})
    assert_same(res.output, ref)
    with pytest.raises(ls.LayerScopeError, match="same shape"):
        ls.intervene(model, x, {"backbone.layer3": ls.Patch(torch.randn(1, 3, 64, 64))})


def test_bad_edits_say_what_to_do_and_leave_the_model(model, x):
    before = hook_snapshot(model)
    model.classifier.train()  # found in a mixed mode: it must stay so
    try:
        with pytest.raises(ls.LayerScopeError, match="channel\\(s\\) \\[4096\\] out of range"):
            ls.intervene(model, x, {"backbone.layer4": ls.Ablate([4096])})
        with pytest.raises(ls.LayerScopeError, match="returns a OrderedDict, not a tensor"):
            ls.intervene(model, x, {"backbone": ls.Ablate([0])})
        with pytest.raises(ls.UnknownModuleError, match="did you mean 'backbone.layer4'"):
            ls.intervene(model, x, {"layer4": ls.Ablate([0])})

        def broken(out):
            raise RuntimeError("edit failed")

        with pytest.raises(ls.CaptureError, match="edit failed"):
            ls.intervene(model, x, {"backbone.layer4": broken})
        assert hook_snapshot(model) == before
        assert all("forward" not in m.__dict__ for m in model.modules())  # stand-ins removed
        assert model.classifier.training and not model.backbone.training
    finally:
        model.classifier.eval()


def test_channel_importance_against_ablations_and_autograd_by_hand(model, x):
    with torch.no_grad():
        pred = model(x)["out"][0].argmax(0)
    cls = int(pred.flatten().mode().values)
    mask = pred == cls
    imp = ls.channel_importance(model, x, "backbone.layer4", cls, exact_top=6, batch=4)
    # The estimate: A * dS/dA summed over positions, with autograd by hand.
    kept = {}

    def keep(m, a, out):
        out.retain_grad()
        kept["a"] = out

    h = model.backbone.layer4.register_forward_hook(keep)
    try:
        score = (model(x)["out"][0, cls] * mask).sum()
        score.backward()
    finally:
        h.remove()
        model.zero_grad(set_to_none=True)
    a, g = kept["a"][0].detach(), kept["a"].grad[0]
    torch.testing.assert_close(torch.from_numpy(imp.estimate), (a * g).sum((1, 2)), rtol=1e-4,
                               atol=1e-3)  # fmt: skip
    assert list(imp.order[:6]) == list(imp.exact) and imp.score == pytest.approx(float(score))
    # Exact: each channel zeroed alone in a plain forward.
    for c, drop in imp.exact.items():
        out, _ = by_hand(model, x, {"backbone.layer4": zero([c])})
        assert drop == pytest.approx(float(score) - float((out["out"][0, cls] * mask).sum()),
                                     rel=1e-4, abs=1e-2)  # fmt: skip
    assert -1 <= imp.rank_correlation <= 1


def test_channel_importance_of_a_classifier_logit():
    torch.manual_seed(0)
    net = torchvision.models.resnet18().eval()
    x = torch.randn(1, 3, 64, 64)
    imp = ls.channel_importance(net, x, "layer4", 7, exact_top=3)
    with torch.no_grad():
        logit = net(x)[0, 7]
    for c, drop in imp.exact.items():
        out, _ = by_hand(net, x, {"layer4": zero([c])})
        assert drop == pytest.approx(float(logit - out[0, 7]), rel=1e-4, abs=1e-4)
