"""Early stop and the cache: fast paths that must give the same answers as a plain forward,
and a cache that is never stale. "No forward ran" is counted with a pre-hook of the test's own
on the first module, which fires in every forward, early-stopped or not."""

from __future__ import annotations

import numpy as np
import torch

import layerscope as ls
from conftest import ForwardCounter, assert_same, reference_capture
from layerscope import Capturer


def test_early_stop_after_the_order_is_known(fresh_deeplab, image_batch):
    model = fresh_deeplab
    head = ForwardCounter(model.classifier)
    try:
        first = ls.capture(model, image_batch, ["backbone.layer1"])
        assert not first.stopped_early and first.output is not None  # learning the order
        assert head.count == 1
        other = image_batch.flip(-1)
        early = ls.capture(model, other, ["backbone.layer1", "backbone.layer1.0.relu"])
        assert early.stopped_early and early.output is None
        assert head.count == 1  # the classifier never ran
        ref = reference_capture(model, other, ["backbone.layer1", "backbone.layer1.0.relu"])
        assert_same(early["backbone.layer1"], ref["backbone.layer1"][0])
        assert len(early.calls("backbone.layer1.0.relu")) == 3
    finally:
        head.remove()
    counts = Capturer(model).known_call_counts(image_batch)
    assert counts["backbone.layer1.0.relu"] == 3
    assert "classifier.0.convs" not in counts  # never called


def test_cache_hit_runs_no_forward(fresh_deeplab, image_batch):
    model = fresh_deeplab
    first = ls.capture(model, image_batch, ["backbone.layer2", "classifier"])
    forwards = ForwardCounter(model.backbone.conv1)
    try:
        again = ls.capture(model, image_batch.clone(), ["classifier", "backbone.layer2"])
        assert forwards.count == 0
        assert again.from_cache == {"classifier", "backbone.layer2"}
        assert list(again) == ["classifier", "backbone.layer2"]
        assert torch.equal(again["classifier"], first["classifier"])
        # Part cached, part new: one early-stopped forward for the new one.
        mixed = ls.capture(model, image_batch, ["backbone.layer2", "backbone.layer1"])
        assert forwards.count == 1 and mixed.stopped_early
        assert mixed.from_cache == {"backbone.layer2"}
        # A different input misses.
        ls.capture(model, image_batch + 1, ["backbone.layer2"])
        assert forwards.count == 2
    finally:
        forwards.remove()


def test_stop_early_false_always_gives_the_output(fresh_deeplab, image_batch):
    model = fresh_deeplab
    with torch.no_grad():
        expected = model(image_batch)
    first = ls.capture(model, image_batch, ["backbone.layer1"], stop_early=False)
    forwards = ForwardCounter(model.backbone.conv1)
    try:
        second = ls.capture(model, image_batch, ["backbone.layer1"], stop_early=False)
    finally:
        forwards.remove()
    assert forwards.count == 0 and second.from_cache == {"backbone.layer1"}
    for acts in (first, second):
        assert acts.output is not None and not acts.stopped_early
        assert_same(acts.output, expected)
    assert "" not in second  # kept with the captures, not added to what was asked for


def test_input_changed_through_numpy_is_seen(fresh_deeplab):
    array = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
    x = torch.from_numpy(array)  # shares memory: writes to the array do not move x._version
    first = ls.capture(fresh_deeplab, x, ["backbone.layer1"])["backbone.layer1"].clone()
    array *= -1.0
    again = ls.capture(fresh_deeplab, x, ["backbone.layer1"])
    assert not again.from_cache
    ref = reference_capture(fresh_deeplab, x, ["backbone.layer1"])["backbone.layer1"][0]
    assert torch.equal(again["backbone.layer1"], ref) and not torch.equal(first, ref)
    # One element near the end (past any prefix a digest might stop at) is a new input too.
    array[0, 2, -1, -3] += 5.0
    last = ls.capture(fresh_deeplab, x, ["backbone.layer1"])
    assert not last.from_cache
    ref = reference_capture(fresh_deeplab, x, ["backbone.layer1"])["backbone.layer1"][0]
    assert torch.equal(last["backbone.layer1"], ref)
    assert not torch.equal(again["backbone.layer1"], ref)  # the change reaches the output


def test_weights_changed_through_data_are_seen(fresh_deeplab, image_batch):
    model = fresh_deeplab
    conv = model.backbone.conv1.weight
    saved = conv.detach().clone()
    ls.capture(model, image_batch, ["backbone.layer1"])
    try:
        conv.data[3].zero_()  # .data: the parameter's version counter does not move
        again = ls.capture(model, image_batch, ["backbone.layer1"])
        assert not again.from_cache
        ref = reference_capture(model, image_batch, ["backbone.layer1"])["backbone.layer1"][0]
        assert torch.equal(again["backbone.layer1"], ref)
        with torch.no_grad():
            conv.mul_(2.0)  # what an optimizer step does: in place, version counted
        assert not ls.capture(model, image_batch, ["backbone.layer1"]).from_cache
    finally:
        with torch.no_grad():
            conv.copy_(saved)


def test_train_mode_capture_puts_batchnorm_statistics_back(image_batch):
    from conftest import build_deeplab

    model = build_deeplab("mobilenet_v3_large")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 3, 64, 64)
    acts = ls.capture(model, x, ["backbone.4"], train=True)
    assert acts["backbone.4"].shape[0] == 2 and not model.training
    after = model.state_dict()
    for k, v in before.items():
        assert torch.equal(v, after[k]), k  # running_mean, running_var, num_batches_tracked


def test_the_weights_check_covers_what_an_output_can_depend_on(fresh_deeplab, image_batch):
    model = fresh_deeplab
    name = "backbone.layer1.0.relu"  # runs three times: after bn1, after bn2, after the sum
    ls.capture(model, image_batch, [name, ""], stop_early=False)
    conv2 = model.backbone.layer1[0].conv2.weight  # finishes after relu's first call
    head = model.classifier[4].weight  # runs long after layer1
    saved = conv2.detach().clone(), head.detach().clone()
    try:
        head.data.mul_(3.0)  # cannot change layer1: no recapture needed
        assert ls.capture(model, image_batch, [name]).from_cache == {name}
        conv2.data.mul_(-1.0)  # changes relu's second and third calls
        again = ls.capture(model, image_batch, [name])
        assert not again.from_cache
        ref = reference_capture(model, image_batch, [name])[name]
        for ours, theirs in zip(again.calls(name), ref):
            assert torch.equal(ours, theirs)
    finally:
        with torch.no_grad():
            conv2.copy_(saved[0])
            head.copy_(saved[1])


class TiedHead(torch.nn.Module):
    """Reads an embedding's weight directly; the embedding itself never runs as a module."""

    def __init__(self, embed: torch.nn.Embedding) -> None:
        super().__init__()
        self.tied = [embed]  # not a submodule: only its weight is read

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h @ self.tied[0].weight.T


class Tied(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(4, 8)
        self.body = torch.nn.Linear(8, 8)
        self.head = TiedHead(self.embed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def test_a_weight_read_directly_is_checked_too():
    torch.manual_seed(0)
    model = Tied().eval()
    x = torch.randn(2, 8)
    ls.capture(model, x, ["head"], stop_early=False)
    assert ls.capture(model, x, ["head"]).from_cache == {"head"}
    model.embed.weight.data[1] = 5.0
    fresh = ls.capture(model, x, ["head"])
    assert not fresh.from_cache
    assert torch.equal(fresh["head"], model.body(x).detach() @ model.embed.weight.detach().T)
