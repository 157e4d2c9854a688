"""A KeyboardInterrupt at any step of a capture (in the progress callback, in LayerScope's own
hooks while a copy is made) leaves the model as it was found and the store's accounting true:
interrupted at every step in turn."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import assert_same, hook_snapshot, live_tensor_bytes, reference_capture
from layerscope import Capturer
from layerscope.nested import iter_tensors
from layerscope.store import ActivationStore


class Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(inplace=True))
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.stem(x)) + 1)


NAMES = ["stem", "stem.1", "body.1", "head"]


def _check_consistent(model, cap, x, ref, baseline, snapshot, modes):
    assert hook_snapshot(model) == snapshot
    assert [m.training for m in model.modules()] == modes
    assert torch.is_grad_enabled()
    store = cap._state.store
    entries = list(store._entries.values())
    # The counter agrees with what the entries hold, and with the memory alive from outside.
    held = sum(t.numel() * t.element_size() for e in entries for c in e.calls
               for t in iter_tensors(c))  # fmt: skip
    assert store.used_bytes == held
    assert live_tensor_bytes(model, x, list(ref.values())) - baseline == store.held_bytes
    assert not any(e.complete and not e.calls and not e.evicted for e in entries if e.nbytes)


@pytest.mark.parametrize("where", ["progress", "copy"])
def test_interrupted_at_every_step(where, monkeypatch):
    torch.manual_seed(0)
    model = Small().train()  # found in train mode: it must stay so
    x = torch.randn(1, 3, 16, 16)
    cap = Capturer(model)
    cap.forget()
    snapshot, modes = hook_snapshot(model), [m.training for m in model.modules()]
    cap.capture(x.flip(-1), [""])  # learn the order, so early stop is in play too
    steps = {"progress": 0, "copy": 0, "stop_at": 0}
    original_copy = ActivationStore._copy

    def counting_copy(self, *args, **kwargs):
        steps["copy"] += 1
        if steps["copy"] == steps["stop_at"] and where == "copy":
            raise KeyboardInterrupt
        return original_copy(self, *args, **kwargs)

    def progress(done, total):
        steps["progress"] += 1
        if steps["progress"] == steps["stop_at"] and where == "progress":
            raise KeyboardInterrupt

    monkeypatch.setattr(ActivationStore, "_copy", counting_copy)
    cap.capture(x, NAMES, progress=progress, cache=False)
    total = steps[where]
    assert total >= len(NAMES)
    ref = reference_capture(model.eval(), x, NAMES)
    model.train()
    cap.clear_cache()
    baseline = live_tensor_bytes(model, x, list(ref.values()))  # the rest of the process
    for stop_at in range(1, total + 1):
        steps.update(progress=0, copy=0, stop_at=stop_at)
        interrupted = False
        try:  # not pytest.raises: its traceback would keep the forward's tensors alive
            cap.capture(x, NAMES, progress=progress)
        except KeyboardInterrupt:
            interrupted = True
        assert interrupted
        _check_consistent(model, cap, x, ref, baseline, snapshot, modes)
        # Nothing half-written is served: the next capture equals the plain reference.
        again = cap.capture(x, NAMES)
        for n in NAMES:
            assert_same(again[n], ref[n][0])
        del again
        cap.clear_cache()
    cap.forget()
