"""The Explorer's feature visualization panel against independent truths: what it shows is
``layerscope.visualize``'s image and trace (itself checked against grating detectors in
test_featurevis.py), a run split into slices equals one run, the button's run answers the
kernel between slices and stops when another channel is selected (leaving the model as found
and nothing cached), the channel's top dataset patches sit beside it, and changed weights are
not shown an old visualization."""

from __future__ import annotations

import asyncio
import copy
import functools
import io
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

import layerscope as ls
from conftest import hook_snapshot
from layerscope.errors import LayerScopeError
from layerscope.featurevis import start
from layerscope.widget.panels import featurevis as panel_module
from layerscope.widget.panels.featurevis import FeaturevisPanel
from layerscope.widget.schema import decode_array
from test_sweep import PRE, Tiny, make_images

SETTINGS = {"steps": 6, "size": 32}


def _explorer(model, **kw):
    kw.setdefault("hooked_modules", ["relu"])
    return ls.Explorer(model, ls.sample_image("chelsea"), preprocess=PRE, **kw)


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def _as_png_pixels(tensor: torch.Tensor) -> np.ndarray:
    return (tensor.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


def _by_itself(model, channel, **settings):
    """``layerscope.visualize`` on a copy of the model (no cache shared with the Explorer's)."""
    return ls.visualize(copy.deepcopy(model), "relu", [channel], preprocess=PRE, progress=False,
                        **settings)  # fmt: skip


def test_the_panel_shows_what_layerscope_visualize_finds():
    model = Tiny().eval()
    ex = _explorer(model, selected_channel=2)
    assert ex._featurevis["state"] == "idle"  # nothing runs before it is asked
    fv = ex.visualize(**SETTINGS)
    truth = _by_itself(model, 2, **SETTINGS)
    assert torch.equal(fv.tensor, truth.tensor) and torch.equal(fv.trace, truth.trace)
    shown = ex._featurevis
    assert (shown["module"], shown["channel"], shown["state"]) == ("relu", 2, "done")
    assert np.array_equal(_pixels(shown["png"]), _as_png_pixels(truth.tensor[0]))
    assert np.array_equal(decode_array(shown["trace"]), truth.trace[:, 0].numpy())
    fig = ex.figure("featurevis")
    (line,) = [t for t in fig.data if t.type == "scatter"]
    assert np.array_equal(np.asarray(line.y), truth.trace[:, 0].numpy())
    assert fig.layout.images[-1].source.startswith("data:image/png;base64,")
    assert "relu channel 2" in fig.layout.title.text
    assert ex._view_featurevis  # the widget is sent the same view


def test_a_run_in_slices_equals_one_run():
    model = Tiny().eval()
    job = start(copy.deepcopy(model), "relu", [1, 3], preprocess=PRE, steps=9, size=32)
    for n in (1, 3, 2, 5):  # uneven slices, the last one past the end
        job.advance(n)
    fv = job.result()
    whole = ls.visualize(copy.deepcopy(model), "relu", [1, 3], preprocess=PRE, steps=9, size=32,
                         progress=False)  # fmt: skip
    assert torch.equal(fv.tensor, whole.tensor) and torch.equal(fv.trace, whole.trace)


def own_thread(test):
    """Run the test on a thread of its own, with no event loop running there: the browser
    tests' Playwright keeps one running on the main thread (asyncio.run would refuse), and the
    Explorer schedules its slices on the loop of the thread it was made on."""

    @functools.wraps(test)
    def run(*args, **kwargs):
        failed: list[BaseException] = []

        def body() -> None:
            try:
                test(*args, **kwargs)
            except BaseException as exc:  # re-raised on pytest's thread
                failed.append(exc)

        worker = threading.Thread(target=body)
        worker.start()
        worker.join()
        if failed:
            raise failed[0]

    return run


def _wait(until, turns: int = 400):
    async def spin() -> None:
        for _ in range(turns):
            if until():
                return
            await asyncio.sleep(0)
        raise AssertionError("the kernel's loop never got there")

    return spin()


@own_thread
def test_the_button_runs_in_slices_and_another_channel_stops_it(monkeypatch):
    monkeypatch.setattr(panel_module, "SLICE", 0.0)  # one step a slice
    model = Tiny().eval()
    before = (hook_snapshot(model), copy.deepcopy(model.state_dict()))
    ex = _explorer(model, selected_channel=1)
    panel = ex._panel(FeaturevisPanel)
    ex.featurevis_settings = {"steps": 40, "size": 32}
    seen: list[dict] = []
    ex.observe(lambda ch: seen.append(dict(ch["new"])), "_featurevis")

    async def stopped() -> None:
        ex._handle_custom_msg({"kind": "visualize"}, [])  # the button, from the browser
        await _wait(lambda: any(p.get("step", 0) >= 3 for p in seen))
        ex.selected_channel = 4  # a click on another channel, between two slices
        n = len(seen)
        for _ in range(20):
            await asyncio.sleep(0)
        assert all(p.get("state") != "running" for p in seen[n:])

    asyncio.run(stopped())
    running = [p["step"] for p in seen if p.get("state") == "running"]
    assert 3 <= max(running) < 40 and running == sorted(running)
    assert (ex._featurevis["channel"], ex._featurevis["state"]) == (4, "idle")
    assert ex._status["state"] == "idle" and not panel.done
    assert hook_snapshot(model) == before[0]
    assert all(p.requires_grad for p in model.parameters())
    assert all(torch.equal(v, before[1][k]) for k, v in model.state_dict().items())

    async def finished() -> None:
        ex._handle_custom_msg({"kind": "visualize"}, [])
        await _wait(lambda: ex._featurevis.get("state") == "done", turns=2000)

    asyncio.run(finished())
    truth = _by_itself(model, 4, steps=40, size=32)
    assert np.array_equal(_pixels(ex._featurevis["png"]), _as_png_pixels(truth.tensor[0]))


@own_thread
def test_the_stop_button_stops_it(monkeypatch):
    monkeypatch.setattr(panel_module, "SLICE", 0.0)
    ex = _explorer(Tiny().eval(), selected_channel=0)
    ex.featurevis_settings = {"steps": 40, "size": 32}

    async def go() -> None:
        ex._handle_custom_msg({"kind": "visualize"}, [])
        await _wait(lambda: ex._featurevis.get("step", 0) >= 2)
        ex._handle_custom_msg({"kind": "visualize", "stop": True}, [])
        for _ in range(10):
            await asyncio.sleep(0)

    asyncio.run(go())
    assert ex._featurevis["state"] == "idle" and ex._status["state"] == "idle"


def test_top_patches_beside_it_and_in_the_export(tmp_path):
    folder = tmp_path / "photos"
    make_images(folder, 8)
    model = Tiny().eval()
    sw = ls.sweep(model, folder, ["relu"], k=4, preprocess=PRE, progress=False)
    ex = _explorer(model, sweep=sw, selected_channel=1)
    ex.visualize(**SETTINGS)
    fig = ex.figure("featurevis")
    patches = [im.source for im in ex.figure("dataset").layout.images]
    assert [im.source for im in fig.layout.images[:-1]] == patches[:8] and len(patches) == 4
    ranks = [t.meta["rank"] for t in fig.data if t.meta and "rank" in t.meta]
    assert ranks == [e["rank"] for e in ex._dataset["examples"]]  # a click opens the image
    html = ex.to_html(tmp_path / "out.html").read_text()
    assert "relu channel 1: what excites it most" in html


def test_changed_weights_are_not_shown_an_old_visualization():
    model = Tiny().eval()
    ex = _explorer(model, selected_channel=2)
    ex.visualize(**SETTINGS)
    with torch.no_grad():
        model.conv.weight[2] *= -1
    ex.selected_channel = 3
    ex.selected_channel = 2
    assert ex._featurevis["state"] == "idle"


def test_bad_module_names_suggest_close_ones():
    ex = _explorer(Tiny().eval())
    with pytest.raises(LayerScopeError, match="relu"):
        ex.visualize(module="rleu", **SETTINGS)


def test_the_buttons_settings_are_checked():
    ex = _explorer(Tiny().eval())
    with pytest.raises(Exception, match="unknown stpes"):
        ex.featurevis_settings = {"stpes": 3}
    with pytest.raises(Exception, match="steps must be"):
        ex.featurevis_settings = {"steps": True}
    ex.featurevis_settings = {"steps": 3}
    assert ex.featurevis_settings == {**panel_module.DEFAULTS, "steps": 3}


@own_thread
def test_a_click_on_another_thread_waits_for_the_slice_then_stops_it(monkeypatch):
    """JupyterLab 4.4+ handles a widget's trait changes on a kernel subshell (a thread of its
    own) while the slices run on the main thread: the click waits for the slice under way, its
    capture never runs through the model at the same time, and the run stops."""
    monkeypatch.setattr(panel_module, "SLICE", 0.2)
    model = Tiny().eval()
    ex = _explorer(model, selected_channel=1)
    ex.featurevis_settings = {"steps": 2000, "size": 32}
    calls: list[tuple[int, float]] = []  # (thread, when) of every call of the first conv
    model.conv.register_forward_pre_hook(
        lambda m, a: calls.append((threading.get_ident(), time.perf_counter()))
    )
    seen: list[dict] = []
    ex.observe(lambda ch: seen.append(dict(ch["new"])), "_featurevis")
    click = threading.Thread(target=lambda: ex.hook("conv"))  # a new module: a capture

    async def go() -> None:
        ex._handle_custom_msg({"kind": "visualize"}, [])
        await _wait(lambda: any(p.get("step", 0) >= 2 for p in seen), turns=10_000)
        click.start()
        while click.is_alive():
            await asyncio.sleep(0.01)
        for _ in range(20):
            await asyncio.sleep(0.01)

    asyncio.run(go())
    clicker = [t for t, _ in calls if t != threading.get_ident()]
    assert clicker, "the click's capture did not run through the model"
    theirs = [w for t, w in calls if t == clicker[0]]
    ours = [w for t, w in calls if t != clicker[0]]
    assert not [w for w in ours if theirs[0] <= w <= theirs[-1]]  # never at the same time
    assert ex.selected_module == "conv" and ex._featurevis["state"] == "idle"
    assert ex._status["state"] == "idle"
    last = max(i for i, p in enumerate(seen) if p.get("module") == "conv")
    assert all(p.get("state") != "running" for p in seen[last:])


@own_thread
def test_the_button_runs_on_the_explorers_threads_loop_whatever_thread_sends_it(monkeypatch):
    """A message handled on a subshell's thread schedules the slices on the main thread's loop,
    where cells run: a slice never runs beside a cell that may use the model."""
    monkeypatch.setattr(panel_module, "SLICE", 0.0)
    ex = _explorer(Tiny().eval(), selected_channel=1)
    ex.featurevis_settings = {"steps": 6, "size": 32}
    threads: list[int] = []
    advance = panel_module.Job.advance
    monkeypatch.setattr(
        panel_module.Job,
        "advance",
        lambda self, n=1: (threads.append(threading.get_ident()), advance(self, n))[1],
    )

    async def go() -> None:
        ex.selected_channel = 2  # a step on the main thread, its loop running
        sender = threading.Thread(target=ex._handle_custom_msg, args=({"kind": "visualize"}, []))
        sender.start()
        sender.join()
        await _wait(lambda: ex._featurevis.get("state") == "done", turns=2000)

    asyncio.run(go())
    assert threads and set(threads) == {threading.get_ident()}


def test_weights_changed_during_a_run_are_refused_not_cached():
    model = Tiny().eval()
    job = start(model, "relu", [1], preprocess=PRE, steps=6, size=32)
    job.advance(3)
    with torch.no_grad():
        model.conv.weight.mul_(2)
    job.advance(3)
    with pytest.raises(LayerScopeError, match="weights changed"):
        job.result()
    with torch.no_grad():
        model.conv.weight.div_(2)
    again = start(model, "relu", [1], preprocess=PRE, steps=6, size=32)
    assert not again.done  # nothing was cached under the first weights


@own_thread
def test_a_stopped_or_failed_run_leaves_no_partial_image(monkeypatch):
    monkeypatch.setattr(panel_module, "SLICE", 0.0)
    ex = _explorer(Tiny().eval(), selected_channel=1)
    ex.featurevis_settings = {"steps": 40, "size": 32}

    async def then(action) -> None:
        ex._handle_custom_msg({"kind": "visualize"}, [])
        await _wait(lambda: ex._featurevis.get("step", 0) >= 2)
        action()
        for _ in range(10):
            await asyncio.sleep(0)

    asyncio.run(then(lambda: ex.visualize(3, steps=2, size=32)))  # a cell between two slices
    assert ex._featurevis["state"] == "idle" and "png" not in ex._featurevis
    advance, calls = panel_module.Job.advance, [0]

    def failing(self, n=1):
        calls[0] += 1
        if calls[0] > 3:
            raise RuntimeError("out of memory (planted)")
        advance(self, n)

    monkeypatch.setattr(panel_module.Job, "advance", failing)
    ex.featurevis_settings = {"steps": 40, "size": 32}
    asyncio.run(then(lambda: None))
    assert ex._featurevis["state"] == "idle" and "png" not in ex._featurevis
    assert "out of memory" in ex.errors["featurevis"] and ex._status["state"] == "idle"


def test_kept_for_the_same_weights_only_in_the_view_and_the_export(monkeypatch, tmp_path):
    monkeypatch.setattr("layerscope.featurevis.job._CACHE_SIZE", 1)  # the engine forgets
    model = Tiny().eval()
    ex = _explorer(model, hooked_modules=["relu", "conv"])
    ex.selected_module = "conv"  # relu's section of the export comes from the panel
    c = ex._ctx.exported("relu").channel["channel"]  # the channel it shows there
    ex.visualize(c, "relu", **SETTINGS)
    ex.visualize(c + 1, "relu", **SETTINGS)  # pushes c out of the engine's cache
    assert f"relu channel {c}: what excites" in ex.to_html(tmp_path / "a.html").read_text()
    ex.selected_module = "relu"
    ex.selected_channel = c
    assert ex._featurevis["state"] == "done"  # the panel keeps it: same weights
    ex.selected_module = "conv"
    with torch.no_grad():  # new weights, the same outputs: dead channel 5 stays dead
        model.conv.bias[5] = -2.0
    assert ex._ctx.exported("relu").channel["channel"] == c
    assert "what excites" not in ex.to_html(tmp_path / "b.html").read_text()
    ex.selected_module = "relu"
    assert ex._featurevis["state"] == "idle"


class Twice(torch.nn.Module):
    """One ReLU called twice: its calls see different maps."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 6, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(6, 6, 3, padding=1)
        self.relu = torch.nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv2(self.relu(self.conv(x))))


def test_the_selected_call_is_the_one_visualized():
    model = Twice().eval()
    ex = _explorer(model, selected_channel=0, selected_call=1)
    fv = ex.visualize(**SETTINGS)
    second = ls.visualize(copy.deepcopy(model), "relu", [0], preprocess=PRE, progress=False,
                          call=1, **SETTINGS)  # fmt: skip
    first = ls.visualize(copy.deepcopy(model), "relu", [0], preprocess=PRE, progress=False,
                         **SETTINGS)  # fmt: skip
    assert torch.equal(fv.tensor, second.tensor) and not torch.equal(fv.tensor, first.tensor)
    assert ex._featurevis["call"] == 1 and "relu (call 1) channel 0" in (
        ex.figure("featurevis").layout.title.text
    )


def test_bad_settings_and_channels_are_refused_before_anything_changes():
    ex = _explorer(Tiny().eval())
    before = dict(ex.featurevis_settings)
    for bad in ({"lr": -0.05}, {"lr": float("nan")}, {"lr": True}, {"size": 20000},
                {"seed": 2**70}, {"steps": 1.5}):  # fmt: skip
        with pytest.raises(Exception, match="featurevis_settings"):
            ex.visualize(**bad)
        assert ex.featurevis_settings == before
    with pytest.raises(ls.LayerScopeError, match="integer"):
        ex.visualize(2.7)
    with pytest.raises(ls.LayerScopeError, match="out of range: relu has 6 channels"):
        ex.visualize(99, **SETTINGS)


def test_a_job_keeps_what_the_cache_held_when_it_started(monkeypatch):
    monkeypatch.setattr("layerscope.featurevis.job._CACHE_SIZE", 1)
    model = Tiny().eval()
    ls.visualize(model, "relu", [1], preprocess=PRE, progress=False, **SETTINGS)
    job = start(model, "relu", [1, 2], preprocess=PRE, **SETTINGS)  # 1 cached, 2 to run
    ls.visualize(model, "relu", [3], preprocess=PRE, progress=False, **SETTINGS)  # evicts 1
    while not job.done:
        job.advance(2)
    assert job.result().tensor.shape[0] == 2
