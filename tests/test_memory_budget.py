"""The memory budget bounds what LayerScope holds, measured from outside: the storages of all
live tensors, minus the model's and the inputs'."""

from __future__ import annotations

import warnings

import pytest
import torch
import torchvision

import layerscope as ls
from conftest import ForwardCounter, live_tensor_bytes
from layerscope import Capturer
from layerscope.nested import iter_tensors
from layerscope.store import ActivationStore


def _resnet18() -> torch.nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18().eval()


def _bytes(calls) -> int:
    return sum(t.numel() * t.element_size() for c in calls for t in iter_tensors(c))


@pytest.mark.parametrize("sizes_known", [True, False], ids=["planned", "first-run"])
def test_budget_holds_at_every_copy(sizes_known, monkeypatch):
    model = _resnet18()
    x = torch.randn(1, 3, 64, 64)
    names = [n for n, _ in model.named_modules() if n]
    full = ls.capture(model, x, names, cache=False, memory_budget=2**31, stop_early=False)
    needed = sum(_bytes(full.calls(n)) for n in full)
    budget = needed // 3
    cap = Capturer(model)
    cap.forget()
    if sizes_known:
        cap.capture(x.flip(-1), [""], cache=False)  # a first forward shows the sizes
    # The forward's own intermediates are alive too: sample a plain forward at the same points
    # (after each module call) and count only what the capture adds on top of it.
    plain: list[int] = []
    handles = [
        m.register_forward_hook(lambda *_: plain.append(live_tensor_bytes(model, x, collect=False)))
        for n, m in model.named_modules()
        if n
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # the budget changes on purpose
        cap.memory_budget = budget
    rest = live_tensor_bytes(model, x, [full.calls(n) for n in full], full.output)
    held = []
    original = ActivationStore.add_call

    def watched(self, *args, **kwargs):  # samples right after each copy is made
        original(self, *args, **kwargs)
        held.append(live_tensor_bytes(model, x, collect=False) - plain[len(held)])

    monkeypatch.setattr(ActivationStore, "add_call", watched)
    with pytest.warns(ResourceWarning, match="memory budget"):
        acts = cap.capture(x, names)
    assert len(held) >= len(names) and max(held) <= budget, (max(held), budget)
    report = acts.memory
    assert report.reduced and report.evicted  # a third of the bytes: both steps were needed
    kept = [n for n in names if n in acts]
    assert kept and len(kept) + len(report.evicted) + len(acts.never_called) == len(names)
    # Every module kept in bfloat16 is close to its float32 value (not only some of them).
    reduced = [n for n in report.reduced if n in acts]
    assert reduced
    for n in reduced:
        assert acts[n].dtype == torch.bfloat16
        torch.testing.assert_close(acts[n].float(), full[n], rtol=1e-2, atol=1e-2)
    with pytest.raises(KeyError, match="memory budget"):
        acts[report.evicted[0]]
    del acts
    assert live_tensor_bytes(model, x, [full.calls(n) for n in full], full.output) - rest <= budget
    cap.forget()


def test_budget_evicts_the_least_recently_used_first():
    model = _resnet18()
    xs = [torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    one = _bytes(ls.capture(model, xs[0], ["layer1"], cache=False).calls("layer1"))
    cap = Capturer(model)
    cap.forget()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        cap.memory_budget = int(3.5 * one)  # room for three captures of layer1
    for x in xs[:3]:
        cap.capture(x, ["layer1"])
    cap.capture(xs[0], ["layer1"])  # touch the oldest: now xs[1] is the least recently used
    cap.capture(xs[3], ["layer1"])  # needs room for one
    forwards = ForwardCounter(model.conv1)
    try:
        served = []
        for i in (0, 2, 3, 1):  # xs[1] last: asking for it again evicts another one
            before = forwards.count
            cap.capture(xs[i], ["layer1"])
            served.append(forwards.count == before)
    finally:
        forwards.remove()
    assert served == [True, True, True, False]
    cap.forget()


def test_a_capture_the_caller_holds_survives_later_captures():
    model = _resnet18()
    cap = Capturer(model)
    cap.forget()
    x = torch.randn(1, 3, 64, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        one = _bytes(ls.capture(model, x, ["layer1"], cache=False).calls("layer1"))
        cap.memory_budget = 3 * one
        held = cap.capture(x, ["layer1"])
        view = held["layer1"][0, 3]  # a view and a numpy array of the same memory
        array = held["layer1"].numpy()
        expected = held["layer1"].clone()
        for _ in range(6):  # evicts the held capture; reuses idle buffers of the same size
            cap.capture(torch.randn(1, 3, 64, 64), ["layer1"])
    assert torch.equal(held["layer1"], expected)
    assert torch.equal(view, expected[0, 3]) and (array == expected.numpy()).all()
    cap.forget()


def test_a_budget_belongs_to_the_model():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2))
    a = Capturer(model, memory_budget=10_000)
    with pytest.warns(ResourceWarning, match="shared by every Capturer"):
        b = Capturer(model, memory_budget=20_000)
    assert a.memory_budget == b.memory_budget == 20_000
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Capturer(model, memory_budget=20_000)  # the same value: nothing to say
        Capturer(model)  # none given: the model's budget stays


def test_invalid_budget():
    with pytest.raises(ValueError, match="positive"):
        Capturer(torch.nn.Linear(2, 2), memory_budget=0)
