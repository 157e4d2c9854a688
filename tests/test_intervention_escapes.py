"""Edits that must be refused or seen: channels and calls checked when an edit is made, an edit
that never applied, and an edit whose effect reaches a later module by a way the taint gate
cannot follow through storages (``.item()``, ``.tolist()``, numpy, ``bool()``, a tensor kept on a
module, a buffer written in place, ``__setitem__``, a second argument). Each edited forward with
reuse is compared exactly with the same edit on a full forward (``reuse=False``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import layerscope as ls
from conftest import hook_snapshot


class Offset(nn.Module):
    """A 1x1 convolution plus a buffer another module may write into."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 1)
        self.register_buffer("offset", torch.zeros(()))
        self.peer: list[nn.Module] = []  # a module whose kept tensor this one reads

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        out = self.conv(h) + self.offset
        return out + self.peer[0].seen.mean() if self.peer else out


class Keep(nn.Module):
    """Keeps what it saw on itself, for a later module to read."""

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        self.seen = y * 1.0
        return y.relu()


class Fuse(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 1)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.conv(a) * b.mean()


class Escape(nn.Module):
    """``pre`` -> ``a`` (edited) -> a route by which the edit reaches ``b``, whose own
    argument carries no mark of the edit."""

    def __init__(self, route: str) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.route = route
        self.pre, self.a, self.b = nn.Conv2d(2, 4, 1), nn.Conv2d(4, 4, 1), Offset()
        self.keep, self.fuse, self.spare = Keep(), Fuse(), nn.Conv2d(4, 4, 1)
        if route == "attribute":
            self.b.peer.append(self.keep)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pre(x)
        y = self.a(h)
        route = self.route
        if route == "item":
            z = self.b(h * y.mean().item())
        elif route == "tolist":
            z = self.b(h * sum(y.flatten().tolist()))
        elif route == "numpy":
            s = y.detach().numpy().mean(axis=(2, 3), keepdims=True)
            z = self.b(h * torch.from_numpy(np.ascontiguousarray(s)))
        elif route == "bool":
            z = self.b(h * (2.0 if y.mean() > 0 else -3.0))
        elif route == "attribute":
            y = self.keep(y)
            z = self.b(h)
        elif route == "buffer":
            self.b.offset.copy_(y.mean())
            z = self.b(h)
        elif route == "setitem":
            h2 = h.clone()
            h2[:, :2] = y[:, :2]
            z = self.b(h2)
        else:  # "second": the edit reaches fuse through its second argument only
            z = self.fuse(h, y)
        if route == "buffer":
            self.b.offset.zero_()  # left as found for the next forward
        return z + y


X = torch.randn(1, 2, 6, 6, generator=torch.Generator().manual_seed(1))
ROUTES = ["item", "tolist", "numpy", "bool", "attribute", "buffer", "setitem", "second"]


@pytest.mark.parametrize("route", ROUTES)
def test_an_edit_that_leaves_torchs_ops_is_never_stood_in_for(route):
    model = Escape(route).eval()
    with torch.no_grad():
        base = model(X)
        mean = float(model.a(model.pre(X)).mean())
    edit = {"a": ls.Ablate(range(4), value=-7.0 if mean > 0 else 7.0)}  # flips the sign
    ls.intervene(model, X, edit)  # the first call learns the order
    res = ls.intervene(model, X, edit)
    full = ls.intervene(model, X, edit, reuse=False)
    assert not torch.equal(full.output, base)
    assert "pre" in res.reused  # reuse was at work
    assert torch.equal(res.output, full.output), (res.output - full.output).abs().max()
    assert "b" not in res.reused and "fuse" not in res.reused


def test_channels_and_calls_are_checked_when_the_edit_is_made():
    for bad in ["12", [1.7], [True], 3.0, [[1]], None, {1: 2}]:
        with pytest.raises(ls.LayerScopeError, match="channels must be integers"):
            ls.Ablate(bad)
        with pytest.raises(ls.LayerScopeError, match="channels must be integers"):
            ls.Scale(bad, 2.0)
    for call in [-1, 1.0, True, "0"]:
        for make in (lambda c: ls.Ablate([1], call=c), lambda c: ls.Scale([1], 2.0, call=c),
                     lambda c: ls.Patch(X, call=c)):  # fmt: skip
            with pytest.raises(ls.LayerScopeError, match="call="):
                make(call)
    with pytest.raises(ls.LayerScopeError, match="must be a number"):
        ls.Ablate([1], value="0")
    with pytest.raises(ls.LayerScopeError, match="call="):
        ls.channel_importance(Escape("second").eval(), X, "a", 0, call=-1)
    # One int is one channel; integer numpy and torch scalars are channels.
    assert ls.Ablate(3).channels == ls.Ablate([np.int64(3)]).channels == (3,)
    assert ls.Scale(torch.tensor([1, 2]), 2.0).channels == (1, 2)


def test_one_int_ablates_that_channel_against_a_hand_hook():
    model = Escape("second").eval()
    res = ls.intervene(model, X, {"a": ls.Ablate(3)}, reuse=False)

    def hook(m, a, out):
        out = out.clone()
        out[:, 3] = 0
        return out

    handle = model.a.register_forward_hook(hook)
    try:
        with torch.no_grad():
            ref = model(X)
    finally:
        handle.remove()
    assert torch.equal(res.output, ref)


def test_an_edit_that_never_applied_is_an_error_and_the_model_is_left_as_found():
    model = Escape("second").eval()
    model.fuse.train()  # a mixed mode, to be kept
    before = hook_snapshot(model)
    for reuse in (True, False):
        with pytest.raises(ls.LayerScopeError, match="spare never ran .*0 calls"):
            ls.intervene(model, X, {"spare": ls.Ablate([0])}, reuse=reuse)
        with pytest.raises(ls.LayerScopeError, match="a ran 1 time\\(s\\): no call 2"):
            ls.intervene(model, X, {"a": ls.Ablate([0], call=2)}, reuse=reuse)
    assert hook_snapshot(model) == before
    assert all("forward" not in m.__dict__ for m in model.modules())
    assert model.fuse.training and not model.a.training and torch.is_grad_enabled()


def test_an_edit_inside_an_edited_module_is_applied_with_reuse():
    model = Escape("second").eval()
    model.b = nn.Sequential(nn.Conv2d(4, 4, 1), nn.ReLU(), nn.Conv2d(4, 4, 1))
    model.route = "item"
    edits = {"b": ls.Scale([1], 2.0), "b.0": ls.Ablate([0, 2])}
    ls.intervene(model, X, edits)
    res = ls.intervene(model, X, edits)
    assert torch.equal(res.output, ls.intervene(model, X, edits, reuse=False).output)


def _spearman_by_hand(x: list[float], y: list[float]) -> float:
    """Ranks by counting (ties take the mean of the places they share), then Pearson."""

    def ranks(v: list[float]) -> np.ndarray:
        return np.array([sum(w < u for w in v) + (sum(w == u for w in v) - 1) / 2 for u in v])

    a, b = ranks(x), ranks(y)
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def test_rank_correlation_is_spearmans_by_hand():
    def imp(estimate: list[float], exact: list[float]) -> ls.ChannelImportance:
        est = np.array(estimate)
        return ls.ChannelImportance("m", 0, 1.0, est, np.argsort(-est),
                                    dict(enumerate(exact)))  # fmt: skip

    # 1 - 6 * sum(d^2) / (n (n^2 - 1)) with d = (1, 1, 1, 1, 0): 1 - 24 / 120
    assert imp([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]).rank_correlation == pytest.approx(0.8)
    assert imp([1, 2, 3], [9, 5, 1]).rank_correlation == pytest.approx(-1.0)
    estimate, exact = [0.5, 0.1, 0.1, 0.9, -0.2, 0.3], [1.0, 2.0, 0.5, 3.0, 0.5, 0.5]
    assert imp(estimate, exact).rank_correlation == pytest.approx(
        _spearman_by_hand(estimate, exact)
    )
