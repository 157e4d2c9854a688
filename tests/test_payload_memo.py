"""The payload memo reuses a payload only for the very tensors it was computed from, unchanged,
and keeps none of them alive (the memory budget bounds what LayerScope holds)."""

from __future__ import annotations

import gc
import weakref

import torch

from layerscope.widget.memo import PayloadMemo


def test_a_payload_is_reused_only_for_the_same_unchanged_tensors():
    memo = PayloadMemo(size=2)
    out = {"out": torch.ones(2, 3), "aux": torch.zeros(2)}
    memo.put("m", out, "payload")
    assert memo.get("m", out) == "payload"
    assert memo.get("other key", out) is None
    assert memo.get("m", {"out": out["out"].clone(), "aux": out["aux"]}) is None  # equal values
    assert memo.get("m", {"out": out["out"]}) is None  # fewer tensors
    out["aux"].add_(1)  # written in place
    assert memo.get("m", out) is None
    with torch.inference_mode():
        frozen = torch.ones(2)
    memo.put("f", frozen, "p")  # no version counter: never reused
    assert memo.get("f", frozen) is None


def test_the_memo_keeps_no_tensor_alive_and_forgets_the_oldest():
    memo = PayloadMemo(size=2)
    t = torch.ones(1000)
    alive = weakref.ref(t)
    memo.put("a", t, 1)
    del t
    gc.collect()
    assert alive() is None  # only the memo referred to it, weakly
    x, y, z = torch.ones(1), torch.ones(1), torch.ones(1)
    memo.put("x", x, 1)
    memo.put("y", y, 2)
    assert memo.get("x", x) == 1  # x used last: y is now the oldest
    memo.put("z", z, 3)
    assert memo.get("y", y) is None and memo.get("x", x) == 1 and memo.get("z", z) == 3
