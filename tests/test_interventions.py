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


class ConvModules:
    """Counts the Conv2d modules whose own forward ran (``Conv2d._conv_forward``, wrapped from
    outside LayerScope): a module standing in with a cached output does not count, and a
    convolution whose result channel importance works out from the unedited map
    (layerscope.zeroed) does."""

    def __init__(self, model):
        self.model, self.count = model, 0

    def __enter__(self):
        original = self.original = nn.Conv2d._conv_forward

        def counted(conv, *args, **kwargs):
            self.count += 1
            return original(conv, *args, **kwargs)

        nn.Conv2d._conv_forward = counted
        return self

    def __exit__(self, *exc):
        nn.Conv2d._conv_forward = self.original


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
    # The edit acts on layer4's output, whose unedited value is cached. The auxiliary head
    # (reading layer3) ran: its output was not cached. On a new input, the baseline's forward
    # (on first access) keeps it too: then only the classifier runs. Convolutions counted:
    assert {"backbone.layer3", "backbone.layer4"} <= set(res.reused)
    assert "classifier" not in res.reused and "aux_classifier" not in res.reused
    x2 = x.flip(-1)
    ref2, _ = by_hand(model, x2, {"backbone.layer4": zero([3, 7])})
    first = ls.intervene(model, x2, {"backbone.layer4": ls.Ablate([3, 7])})
    with torch.no_grad():
        assert_same(first.baseline, model(x2))
    expected = sum(isinstance(m, nn.Conv2d) for m in model.classifier.modules())
    with Convs() as convs:
        again = ls.intervene(model, x2, {"backbone.layer4": ls.Ablate([3, 7])})
    assert convs.count == expected < sum(isinstance(m, nn.Conv2d) for m in model.modules())
    assert "aux_classifier" in again.reused
    assert_same(first.output, ref2)
    assert_same(again.output, ref2)
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


def test_the_explorer_shows_an_ablation_against_a_hand_computation(tmp_path):
    import torch.nn.functional as F
    import traitlets

    from layerscope.models import load_preset

    preset = load_preset("deeplabv3_resnet50", weights=None)
    ex = ls.Explorer(
        preset.model,
        "astronaut",
        preprocess=preset.preprocess.with_size(96),
        class_names=preset.class_names,
        hooked_modules=["backbone.layer4"],
    )
    chans = list(range(0, 2048, 3))
    ex.ablations = {"backbone.layer4": chans}
    a = ex._ablation
    assert ex.errors == {} and a["kind"] == "segmentation"
    # By hand: hooks zero the channels, the class maps are upsampled to the input and compared.
    out, _ = by_hand(ex.model, ex.inputs, {"backbone.layer4": zero(chans)})
    with torch.no_grad():
        base = ex.model(ex.inputs)["out"]
    size = tuple(ex.inputs.shape[-2:])
    up = lambda s: F.interpolate(s, size=size, mode="bilinear", align_corners=False)[0].argmax(0)  # noqa: E731
    before, after = up(base), up(out["out"])
    assert a["changed_pixels"] == int((before != after).sum()) > 0
    shares = {e["index"]: (e["before"], e["after"]) for e in a["shares"]}
    for c in range(21):
        b, f = float((before == c).float().mean()), float((after == c).float().mean())
        assert shares.get(c, (0.0, 0.0)) == pytest.approx((b, f), abs=1e-6)
    assert ex.figure("ablation").layout.images[-1].source.startswith("data:image/png")
    assert "With channels ablated" in ex.to_html(tmp_path / "r.html").read_text()
    # Refused, from Python and from the browser: unknown module, no channels, out of range.
    with pytest.raises(traitlets.TraitError, match="did you mean 'backbone.layer4'"):
        ex.ablations = {"layer4": [1]}
    with pytest.raises(traitlets.TraitError, match="no channel dimension"):
        ex.ablations = {"backbone": [1]}
    ex.set_state({"ablations": {"backbone.layer4": [5000]}})
    assert "out of range: backbone.layer4 has 2048" in ex._error and ex._ablation == a
    ex.ablations = {}
    assert ex._ablation == {} and ex.view.ablation is None


def test_the_explorer_ranks_channels_and_ablates_a_classifier_logit():
    torch.manual_seed(0)
    net = torchvision.models.resnet18().eval()
    ex = ls.Explorer(
        net,
        "astronaut",
        preprocess=ls.Preprocess(resize=(64, 64)),
        class_names=[f"c{i}" for i in range(1000)],
        hooked_modules=["layer4"],
    )
    top = ex._prediction["top_index"][0]
    ex.ablations = {"fc": [top]}
    scores = {e["index"]: e for e in ex._ablation["scores"]}
    assert scores[top]["after"] == 0.0 and scores[top]["before"] != 0.0  # the logit set to zero
    ex.show_importance = True
    imp = ex._importance
    direct = ls.channel_importance(net, ex.inputs, "layer4", top, exact_top=16)
    assert imp["module"] == "layer4" and imp["channels"][:8] == [int(c) for c in direct.order[:8]]
    assert imp["exact"][0] == pytest.approx(direct.exact[imp["channels"][0]], rel=1e-5)
    assert ex.figure("importance").data[0].x[0] == f"#{imp['channels'][0]}"


def test_a_module_reading_an_edited_output_runs_instead_of_standing_in(model, x):
    res = ls.intervene(model, x, {"backbone.layer3": ls.Ablate([0, 1, 2])})
    ref, _ = by_hand(model, x, {"backbone.layer3": zero([0, 1, 2])})
    assert_same(res.output, ref)
    assert not torch.equal(res.output["aux"], res.baseline["aux"])  # the head saw the edit
    assert "aux_classifier" not in res.reused and "backbone.layer4" not in res.reused
    assert "backbone.layer3" in res.reused  # its own cached output, edited


def _plain_convs(model, x):
    with Convs() as convs, torch.no_grad():
        model(x)
    return convs.count


def test_an_edit_on_a_new_input_runs_each_convolution_once(model, x):
    # The order of this input shape is known (learned once); then a new image costs one pass:
    # the forward until the edited module, the edited rest. The baseline waits to be asked for.
    ls.intervene(model, x, {"backbone.layer3": ls.Ablate([1])})
    per_forward = _plain_convs(model, x)  # by the same counter, from outside
    for seed in (5, 6):
        new = torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(seed))
        with Convs() as convs:
            res = ls.intervene(model, new, {"backbone.layer3": ls.Ablate([1, 4])})
        assert convs.count == per_forward
        ref, _ = by_hand(model, new, {"backbone.layer3": zero([1, 4])})
        assert_same(res.output, ref)
        with Convs() as convs:  # on first access: one plain forward, then kept
            with torch.no_grad():
                assert_same(res.baseline, model(new))
            assert_same(res.baseline, res.baseline_captures.output)
        assert convs.count == 2 * per_forward  # the baseline's and the check's own forward


def test_channel_importance_on_a_new_input_is_one_forward_and_the_suffix(model, x):
    heads = sum(isinstance(m, nn.Conv2d) for m in model.classifier.modules())
    with ConvModules(model) as plain, torch.no_grad():
        model(x)
    per_forward = plain.count
    new = torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        logits = model(new)["out"][0]
    cls = int(logits.argmax(0).flatten().mode().values)
    mask = logits.argmax(0) == cls
    ls.channel_importance(model, x, "backbone.layer4", cls, exact_top=0)  # the order known
    with Convs() as computed, ConvModules(model) as convs:
        imp = ls.channel_importance(model, new, "backbone.layer4", cls, exact_top=6, batch=4)
    # One forward (its backward runs no conv2d call), then two batches through the classifier
    # only: the stem, layer1-4 and the auxiliary head stand in from that same forward.
    assert convs.count == per_forward + 2 * heads
    # Of those, the four ASPP convolutions reading the zeroed copies of layer4's output are
    # worked out from the unedited map (layerscope.zeroed): no conv2d of the batch reaches here.
    assert computed.count == per_forward + 2 * (heads - 4)
    score = float((logits[cls] * mask).sum())
    for c, drop in imp.exact.items():  # and the drops are those of single ablations by hand
        out, _ = by_hand(model, new, {"backbone.layer4": zero([c])})
        assert drop == pytest.approx(score - float((out["out"][0, cls] * mask).sum()),
                                     rel=1e-4, abs=1e-2)  # fmt: skip
