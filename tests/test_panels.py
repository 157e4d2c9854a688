"""A panel is one unit: a panel defined here, outside the package, is registered, runs after the
panel whose output it reads (and again when that one runs), goes out in the same message, and
its refusals and failures are its own (shown under its name, nothing else touched); the step
order the Explorer derives from the registry respects every declared dependency, checked here
against the declarations themselves, for the registry in any order."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
import traitlets
from torch import nn

import layerscope as ls
from layerscope.errors import LayerScopeError
from layerscope.widget import panels
from layerscope.widget.panels import REGISTRY, Panel
from layerscope.widget.schema import decode_array
from layerscope.widget.steps import plan
from layerscope.widget.validation import InvalidTraitError

CLASSES = ["a", "b", "c"]


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.relu = nn.ReLU()
        self.down = nn.Conv2d(6, 4, 3, stride=2)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        return self.head(self.down(self.relu(self.conv(x))).mean((2, 3)))


IMAGE = np.random.default_rng(0).integers(0, 256, (32, 40, 3), dtype=np.uint8)


class Brightness(Panel):
    """The share of the selected channel's cells above ``brightness_threshold``."""

    name = "brightness"
    after = ("channel",)
    inputs = ("brightness_threshold",)
    owns = {"_brightness": "extra._brightness"}  # its own trait, in the view-state's extras
    validates = ("brightness_threshold",)
    traits = {
        "brightness_threshold": traitlets.Float(0.0).tag(sync=True),
        "_brightness": traitlets.Dict().tag(sync=True),
    }
    views = shown = ("brightness",)  # drawn by figure(), the export and the browser alike
    built: list[int] = []  # the channel each build saw

    def figure(self, view, name):
        b = view.extra.get("_brightness")
        if not b:
            raise ls.NotReadyError("no channel to measure")
        return {"data": [{"type": "bar", "x": ["above", "below"],
                          "y": [b["share"], 1 - b["share"]]}],
                "layout": {"title": {"text": f"channel {b['channel']}: share above"},
                           "height": 200}}  # fmt: skip

    def check(self, ctx, name, value):
        if not value >= 0:
            raise InvalidTraitError(f"brightness_threshold must be 0 or more, got {value}")
        return value

    def build(self, ctx):
        channel = ctx.view.channel
        Brightness.built.append(-1 if channel is None else channel["channel"])
        if channel is None:
            return {"_brightness": None}
        if ctx.brightness_threshold > 100:
            raise LayerScopeError("no cell is that bright")
        share = float((decode_array(channel["map"]) > ctx.brightness_threshold).mean())
        return {"_brightness": {"channel": channel["channel"], "share": share}}


def _explorer(panel_list=(*REGISTRY, Brightness), **kw):
    return ls.Explorer(Net(), IMAGE, class_names=CLASSES, hooked_modules=["relu"],
                       panels=list(panel_list), **kw)  # fmt: skip


def _share(ex, channel, threshold):
    """The truth, from the captured output (not from any payload)."""
    return float((ex.activations["relu"][0, channel].numpy() > threshold).mean())


def test_a_panel_from_outside_runs_after_what_it_reads_in_the_same_message(tmp_path):
    ex = _explorer(brightness_threshold=0.1)
    ch = ex.selected_channel
    assert ex.errors == {} and ex._brightness["channel"] == ch
    assert ex._brightness["share"] == pytest.approx(_share(ex, ch, 0.1))
    sent = []  # what goes to the browser, one entry a message (a batch's keys copied)
    ex.send_state = lambda key=None: sent.append(key if isinstance(key, str) else set(key or ()))
    other = (ch + 1) % 6
    Brightness.built.clear()
    ex.set_state({"selected_channel": other})  # a click: the channel panel, then this one
    published = [k for k in sent if k]
    # One message, with the panel's view drawn from its new payload.
    assert len(published) == 1
    assert {"_channel", "_brightness", "_view_brightness"} <= published[0]
    assert Brightness.built == [other]  # once, and it saw the new channel's payload
    assert ex._brightness == {"channel": other, "share": pytest.approx(_share(ex, other, 0.1))}
    layer, channel = ex._layer, ex._channel
    ex.aggregate = "max"  # restyles: no panel runs
    assert Brightness.built == [other]
    ex.brightness_threshold = 0.5  # its own input: it alone runs
    assert Brightness.built == [other, other]
    assert ex._layer is layer and ex._channel is channel
    assert ex._brightness["share"] == pytest.approx(_share(ex, other, 0.5))
    # Its view: figure() and the widget's trait draw the same, and the export includes it.
    fig = ex.figure("brightness")
    share = _share(ex, other, 0.5)
    assert fig.layout.title.text == f"channel {other}: share above"
    assert list(fig.data[0].y) == pytest.approx([share, 1 - share])
    sent = ex._view_brightness
    assert sent["layout"]["title"]["text"] == fig.layout.title.text
    assert sent["data"][0]["y"] == pytest.approx([share, 1 - share])
    html = ex.to_html(tmp_path / "r.html").read_text()
    assert f"channel {other}: share above" in html
    # The panel's traits are this Explorer's: the package's Explorer has none of them.
    plain = ls.Explorer(Net(), IMAGE, class_names=CLASSES, hooked_modules=["relu"])
    assert not plain.has_trait("brightness_threshold") and plain.errors == {}


def test_its_refusals_and_failures_are_its_own(monkeypatch):
    ex = _explorer()
    before = {k: getattr(ex, k) for k in ("_layer", "_channel", "_prediction", "_brightness")}
    with pytest.raises(traitlets.TraitError, match="0 or more"):
        ex.brightness_threshold = -1.0
    sent = []
    ex.send_state = lambda key=None: sent.append(key)
    ex.set_state({"brightness_threshold": -1.0})  # from the browser: refused, shown, put back
    assert ex.errors == {"brightness": "brightness_threshold must be 0 or more, got -1.0"}
    assert "0 or more" in ex._error and "brightness_threshold" in sent
    assert ex.brightness_threshold == 0.0
    assert all(getattr(ex, k) is v for k, v in before.items())  # nothing else touched
    ex.set_state({"_error": ""})
    ex.brightness_threshold = 1000.0  # accepted, but its build fails: its error, its view
    assert ex.errors == {"brightness": "LayerScopeError: no cell is that bright"}
    assert ex._brightness == {} and "no cell is that bright" in ex.last_traceback
    assert all(getattr(ex, k) is before[k] for k in ("_layer", "_channel", "_prediction"))
    ex.selected_channel = 3  # what it reads runs again: so does it, and its error stays
    assert ex._channel["channel"] == 3 and "brightness" in ex.errors and ex._brightness == {}
    ex.brightness_threshold = 0.2  # the same panel succeeds: its error goes
    assert ex.errors == {} and ex._brightness["share"] == pytest.approx(_share(ex, 3, 0.2))
    # A failure of a panel it depends on empties it too: no stale view.
    import layerscope.widget.viewstate as viewstate

    def broken(*args, **kwargs):
        raise RuntimeError("this view failed")

    monkeypatch.setattr(viewstate, "layer_payload", broken)
    ex.hook("conv")
    assert "this view failed" in ex.errors["layer"] and ex._brightness == {}


def test_register_adds_a_panel_to_every_explorer(monkeypatch):
    monkeypatch.setattr(panels, "REGISTRY", list(REGISTRY))
    assert panels.register(Brightness) is Brightness
    ex = ls.Explorer(Net(), IMAGE, class_names=CLASSES, hooked_modules=["relu"])
    assert ex.errors == {} and ex._brightness["channel"] == ex.selected_channel
    with pytest.raises(LayerScopeError, match="registered already"):
        panels.register(Brightness)


def _needed_by(declared: dict[str, tuple[str, ...]]) -> dict[str, set[str]]:
    """Every panel that depends on each one, directly or not: a search from the declarations."""
    out = {}
    for root in declared:
        seen, todo = set(), [root]
        while todo:
            node = todo.pop()
            for other, needs in declared.items():
                if node in needs and other not in seen:
                    seen.add(other)
                    todo.append(other)
        out[root] = seen
    return out


def _orders():
    listed = [*REGISTRY, Brightness]
    yield listed
    yield listed[::-1]
    rng = random.Random(0)
    for _ in range(5):
        shuffled = list(listed)
        rng.shuffle(shuffled)
        yield shuffled


@pytest.mark.parametrize("listed", list(_orders()), ids=lambda p: "-".join(c.name for c in p))
def test_the_step_order_respects_every_declared_dependency(listed):
    declared = {p.name: p.after for p in listed}
    order, after = plan(declared)
    assert sorted(order) == sorted(declared)
    for name, needs in declared.items():
        for dep in needs:
            assert order.index(dep) < order.index(name), (dep, name, order)
    needed_by = _needed_by(declared)
    for name in declared:  # what a change of it runs again
        assert set(after[name]) == needed_by[name], name


def test_the_explorer_runs_its_panels_in_that_order_whatever_the_registry_order(monkeypatch):
    ran = []
    for cls in [*REGISTRY, Brightness]:
        original = cls.build

        def logged(self, ctx, _original=original):
            ran.append(self.name)
            return _original(self, ctx)

        monkeypatch.setattr(cls, "build", logged)
    listed = [*REGISTRY, Brightness]
    covered = {c: p.name for p in listed for c in p.covers}  # the layer brings its channel
    forward, backward = _explorer(listed), _explorer(listed[::-1])
    for ex in (forward, backward):
        ran.clear()
        ex.image_name = "chelsea"  # a new image: every panel runs, once
        assert sorted(ran) == sorted(c.name for c in listed if c.name not in covered), ran

        def done(name):
            return ran.index(name if name in ran else covered[name])

        for cls in (c for c in listed if c.name in ran):
            for dep in cls.after:
                assert done(dep) < done(cls.name), (dep, cls.name, ran)
    for trait in ("_layer", "_channel", "_brightness", "_prediction"):
        assert forward.get_state(trait) == backward.get_state(trait), trait


def test_a_cycle_or_an_unknown_dependency_is_refused():
    with pytest.raises(LayerScopeError, match="depend on each other"):
        plan({"a": ("b",), "b": ("a",), "c": ()})
    with pytest.raises(LayerScopeError, match="nothing, which is no panel"):
        plan({"a": ("nothing",)})

    class Orphan(Panel):
        name = "orphan"
        after = ("nowhere",)

    with pytest.raises(LayerScopeError, match="nowhere"):
        _explorer([*REGISTRY, Orphan])
