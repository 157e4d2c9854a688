"""Early stop, the cache and the memory budget: fast paths that must give the same answers."""

from __future__ import annotations

import warnings

import pytest
import torch

import layerscope as ls
from conftest import assert_same, reference_capture
from layerscope import Capturer


class CallCounter:
    """Counts forwards of one module with a hook of the test's own."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.count = 0
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, *_):
        self.count += 1

    def remove(self):
        self.handle.remove()


def test_early_stop_after_the_order_is_known(fresh_deeplab, image_batch):
    model = fresh_deeplab
    head = CallCounter(model.classifier)
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


def test_stop_early_false_runs_to_the_end(fresh_deeplab, image_batch):
    ls.capture(fresh_deeplab, image_batch, ["backbone.layer1"])
    acts = ls.capture(fresh_deeplab, image_batch.flip(-2), ["backbone.layer1"], stop_early=False)
    assert not acts.stopped_early and acts.output is not None


def test_cache_hit_runs_no_forward(fresh_deeplab, image_batch):
    model = fresh_deeplab
    first = ls.capture(model, image_batch, ["backbone.layer2", "classifier"])
    counter = CallCounter(model)
    try:
        again = ls.capture(model, image_batch.clone(), ["classifier", "backbone.layer2"])
        assert counter.count == 0
        assert again.from_cache == {"classifier", "backbone.layer2"}
        assert list(again) == ["classifier", "backbone.layer2"]
        assert torch.equal(again["classifier"], first["classifier"])
        # Part cached, part new: only the new one is computed, and it stops early.
        mixed = ls.capture(model, image_batch, ["backbone.layer2", "backbone.layer1"])
        assert counter.count == 0 and mixed.stopped_early
        assert mixed.from_cache == {"backbone.layer2"}
    finally:
        counter.remove()


def test_cache_misses_when_input_or_weights_change(fresh_deeplab, image_batch):
    model = fresh_deeplab
    ls.capture(model, image_batch, ["backbone.layer1"])
    assert not ls.capture(model, image_batch + 1, ["backbone.layer1"]).from_cache
    conv = model.backbone.conv1.weight
    saved = conv.detach().clone()
    try:
        with torch.no_grad():
            conv.mul_(2.0)  # what an optimizer step does: an in-place change
        fresh = ls.capture(model, image_batch, ["backbone.layer1"])
        assert not fresh.from_cache
    finally:
        with torch.no_grad():
            conv.copy_(saved)


@pytest.mark.parametrize("sizes_known", [True, False], ids=["planned", "first-run"])
def test_memory_budget_is_never_exceeded(fresh_deeplab, image_batch, sizes_known):
    model = fresh_deeplab
    names = [n for n, _ in model.named_modules() if n]
    full = ls.capture(model, image_batch, names, cache=False, memory_budget=2**31)
    needed = sum(sum(t.numel() * t.element_size() for t in _tensors(full.calls(n))) for n in full)
    assert needed > 8 * 2**20
    assert Capturer(model).cached_bytes == 0  # cache=False keeps nothing afterwards

    budget = needed // 3
    cap = Capturer(model, memory_budget=budget)
    if not sizes_known:
        cap.forget()  # no earlier forward: decisions are taken call by call
    peaks = []
    # A hook of the test's own, after LayerScope's, watches the store while the forward runs.
    handles = [
        m.register_forward_hook(lambda *_: peaks.append(cap.cached_bytes)) for m in model.modules()
    ]
    try:
        with pytest.warns(ResourceWarning, match="memory budget"):
            acts = cap.capture(image_batch, names)
    finally:
        for h in handles:
            h.remove()
        cap.memory_budget = 2**30
    assert max(peaks) <= budget and acts.memory.peak_bytes <= budget
    report = acts.memory
    assert report.reduced and report.evicted  # a third of the bytes: both steps were needed
    kept = [n for n in names if n in acts]
    assert kept and len(kept) + len(report.evicted) + len(acts.never_called) == len(names)
    reduced = report.reduced[-1]
    if reduced in acts:
        assert acts[reduced].dtype == torch.bfloat16
        torch.testing.assert_close(acts[reduced].float(), full[reduced], rtol=1e-2, atol=1e-2)
    with pytest.raises(KeyError, match="memory budget"):
        acts[report.evicted[0]]


def test_budget_evicts_older_captures_first(fresh_deeplab, image_batch):
    model = fresh_deeplab
    budget = 1_000_000  # layer1 is 590 kB at 96 px, layer2 295 kB: two captures do not fit
    cap = Capturer(model, memory_budget=budget)
    try:
        cap.capture(image_batch, ["backbone.layer1"])
        old = cap.cached_bytes
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # evicting the cache alone is no loss to report
            acts = cap.capture(image_batch.flip(-1), ["backbone.layer1", "backbone.layer2"])
        assert acts.memory.evicted_cached >= 1 and not acts.memory.changed_anything
        assert cap.cached_bytes <= budget and old > 0
    finally:
        cap.memory_budget = 2**30


def test_invalid_budget():
    with pytest.raises(ValueError, match="positive"):
        Capturer(torch.nn.Linear(2, 2), memory_budget=0)


def _tensors(calls):
    from layerscope.nested import iter_tensors

    for c in calls:
        yield from iter_tensors(c)
