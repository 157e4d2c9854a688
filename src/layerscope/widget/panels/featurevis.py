"""The selected channel's feature visualization (:func:`layerscope.visualize`) beside its top
dataset patches, as OpenAI Microscope lays them out, and the objective's trace.

Nothing runs until asked (the Visualize button, or ``explorer.visualize()``): the optimization
takes tens of seconds on a CPU. From the button it runs in slices of about half a second, each
scheduled on the kernel's event loop, so clicks are answered in between (on the main thread, or
on a subshell's thread in JupyterLab 4.4 and later: the slices hold the core's lock), the image
so far is shown after each slice, and selecting another channel (or module) stops it. From
Python it runs to the end in the call."""

from __future__ import annotations

import asyncio
import contextlib
import io
import threading
import time
from collections.abc import Hashable
from typing import Any

import numpy as np
import traitlets as t
from PIL import Image

from ...errors import ArgumentError, LayerScopeError, NotReadyError
from ...featurevis import FeatureVis, Job, start
from ...featurevis.job import weights_key
from ...featurevis.optimize import check_settings
from ...preprocess import Preprocess
from ..dataset_figure import patch_cells
from ..schema import FeaturevisPayload, array_buffer, decode_array
from ..spec import Spec, layout, payload_ref
from ..validation import InvalidTraitError
from ..viewstate import ViewState
from .base import Context, Panel

__all__ = ["FeaturevisPanel", "DEFAULTS"]

TRAIT = "_featurevis"
Target = tuple[str, int, int]  # module, channel, call
DEFAULTS: dict[str, Any] = {"size": 224, "steps": 128, "param": "fft", "seed": 0}
SETTINGS = ("size", "steps", "param", "seed", "lr", "decorrelate")  # what the button may take
KEPT = 32  # finished visualizations shown again when their channel is selected
SLICE = 0.5  # seconds of optimization between looks at the kernel's messages
_PATCHES = 8  # top dataset patches beside the visualization


class FeaturevisPanel(Panel):
    name = "featurevis"
    after = ("layer", "channel", "dataset")
    owns = {TRAIT: f"extra.{TRAIT}"}
    messages = ("visualize",)
    views = ("featurevis",)
    shown = views
    inputs = ("featurevis_settings",)
    validates = ("featurevis_settings",)
    traits = {
        # The Visualize button's settings (layerscope.visualize's arguments): size, steps,
        # param, seed, lr, decorrelate. explorer.visualize(**options) sets them too.
        "featurevis_settings": t.Dict(dict(DEFAULTS)).tag(sync=True),
    }

    def __init__(self) -> None:
        self.job: Job | None = None  # the one running from the button
        self.job_settings: dict[str, Any] = {}  # what it runs with
        # Finished ones, shown again for their unit while the weights are theirs.
        self.done: dict[Target, tuple[dict[str, Any], FeatureVis, Hashable]] = {}
        # The thread the Explorer was made on (a kernel's main thread, where cells run) and
        # its event loop: the slices run there, whatever thread a click is handled on.
        self.home = threading.get_ident()
        self.loop: asyncio.AbstractEventLoop | None = None

    def check(self, ctx: Context, name: str, value: Any) -> dict[str, Any]:
        unknown = sorted(set(value) - set(SETTINGS))
        if unknown:
            raise InvalidTraitError(
                f"featurevis_settings: unknown {', '.join(unknown)}; it takes "
                f"{', '.join(SETTINGS)} (layerscope.visualize's arguments)"
            )
        try:
            check_settings(**value)
        except LayerScopeError as exc:
            raise InvalidTraitError(f"featurevis_settings: {exc}") from None
        return {**DEFAULTS, **value}

    # -- what is shown ---------------------------------------------------------------------------

    @staticmethod
    def target(ctx: Context) -> Target | None:
        """The selected module, channel and call, when the module gives channel maps."""
        layer = ctx.view.layer
        if not layer or layer["kind"] != "maps":
            return None
        return layer["module"], int(ctx.selected_channel), int(layer["call"])

    def build(self, ctx: Context) -> dict[str, FeaturevisPayload | None]:
        self.note_loop()
        target = self.target(ctx)
        if self.job is not None and job_target(self.job) != target:
            self.stop(ctx, publish=False)  # another unit selected: its run is not wanted
        if target is None:
            return {TRAIT: None}
        if self.job is not None:
            return {TRAIT: running(self.job, self.job_settings)}
        return {TRAIT: self.shown_for(ctx, target)}

    def note_loop(self) -> None:
        """Remember the home thread's event loop when called on it."""
        if threading.get_ident() == self.home:
            with contextlib.suppress(RuntimeError):  # no loop: a script, nothing to schedule
                self.loop = asyncio.get_running_loop()

    def kept(self, ctx: Context, target: Target) -> tuple[dict[str, Any], FeatureVis] | None:
        """The finished visualization of ``target`` if it was made for these weights."""
        kept = self.done.get(target)
        if kept is None:
            return None
        if weights_key(dict(ctx.session.model.named_modules())) != kept[2]:
            del self.done[target]  # the weights changed since
            return None
        return kept[0], kept[1]

    def shown_for(self, ctx: Context, target: Target) -> FeaturevisPayload:
        kept = self.kept(ctx, target)
        if kept is not None:
            return finished(kept[1], kept[0], target[2])
        return {"module": target[0], "channel": target[1], "call": target[2], "state": "idle",
                "settings": dict(ctx.featurevis_settings)}  # fmt: skip

    def figure(self, view: ViewState, name: str) -> Spec:
        fv: Any = view.extra.get(TRAIT)
        if not fv or "png" not in fv:
            raise NotReadyError(
                "no feature visualization: press Visualize under the channel, or call "
                "explorer.visualize()"
            )
        ds: Any = view.dataset
        same = ds and ds.get("module") == fv["module"] and ds.get("channel") == fv["channel"]
        return featurevis_spec(fv, ds["examples"][:_PATCHES] if same and "examples" in ds else [])

    def export(self, ctx: Context, module: str, view: ViewState) -> ViewState:
        if not view.channel or not view.layer:
            return view
        target = (module, int(view.channel["channel"]), int(view.layer["call"]))
        kept = self.kept(ctx, target)
        if kept is None:
            return view
        return view.with_(extra={**view.extra, TRAIT: finished(kept[1], kept[0], target[2])})

    # -- running it ------------------------------------------------------------------------------

    def start(self, ctx: Context, target: Target, settings: dict[str, Any]) -> Job:
        pre = ctx.session.preprocess
        return start(ctx.session.model, target[0], [target[1]], call=target[2],
                     preprocess=pre if isinstance(pre, Preprocess) else None,
                     **settings)  # fmt: skip

    def keep(self, target: Target, settings: dict[str, Any], job: Job) -> FeatureVis:
        """The finished job's result, kept to show again (the last few dozen: ~0.6 MB each)."""
        fv = job.result()
        self.done.pop(target, None)
        self.done[target] = (settings, fv, job.weights)
        while len(self.done) > KEPT:
            del self.done[next(iter(self.done))]
        return fv

    def visualize(
        self, ctx: Context, channel: int | None, module: str | None, options: dict[str, Any]
    ) -> FeatureVis:
        """``explorer.visualize()``: run to the end now (progress in the header), keep it, show
        it when its unit is selected; ``options`` become the button's settings too."""
        shown = self.target(ctx)
        if channel is not None and (isinstance(channel, bool) or not isinstance(channel, int)):
            raise ArgumentError(f"channel must be an integer, got {channel!r}")
        name = module or (shown[0] if shown else None)
        if name is None:
            raise NotReadyError("select a module with channel maps first, or pass module=")
        (name,) = ctx.known([name])
        c = channel if channel is not None else int(ctx.selected_channel)
        call = shown[2] if shown and shown[0] == name else 0
        ctx.quietly(featurevis_settings={**ctx.featurevis_settings, **options})  # checked
        settings = dict(ctx.featurevis_settings)
        self.stop(ctx)
        target = (name, c, call)
        job = self.start(ctx, target, settings)
        try:
            while not job.done:
                job.advance(1)
                ctx.status(progress(job))
        finally:
            ctx.status({"state": "idle"})
        fv = self.keep(target, settings, job)
        if shown == target:
            ctx.publish({TRAIT: finished(fv, settings, call)})
        return fv

    def message(self, ctx: Context, content: dict[str, Any]) -> None:
        """The Visualize button (``stop``: its Stop button)."""
        if content.get("stop"):
            self.stop(ctx)
            return
        target = self.target(ctx)
        if target is None:
            raise NotReadyError("select a module with channel maps to visualize a channel")
        self.note_loop()
        loop = self.loop if self.loop is not None and self.loop.is_running() else None
        if loop is None:  # no event loop (a script): run it to the end now
            self.visualize(ctx, target[1], target[0], {})
            return
        self.stop(ctx, publish=False)
        settings = self.job_settings = dict(ctx.featurevis_settings)
        job = self.job = self.start(ctx, target, settings)
        ctx.status(progress(job))
        ctx.publish({TRAIT: running(job, settings)})
        # On the home thread's loop, whatever thread this message came on: cells run there
        # too, so a slice never runs while one does (it may use the model).
        loop.call_soon_threadsafe(self.slice, ctx, job, target, settings, loop)

    def slice(
        self,
        ctx: Context,
        job: Job,
        target: Target,
        settings: dict[str, Any],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        """About half a second of the button's run, then the next slice is scheduled."""
        with ctx.lock:  # a click may be running in a subshell's thread: one at a time
            if self.job is not job:  # stopped, or another one started
                return
            if self.target(ctx) != target:  # the unit changed without this panel's step
                self.stop(ctx)
                return
            began = time.perf_counter()
            try:
                job.advance(1)
                while not job.done and time.perf_counter() - began < SLICE:
                    job.advance(1)
                fv = self.keep(target, settings, job) if job.done else None
            except Exception as exc:
                self.stop(ctx)
                ctx.steps.report(self.name, exc)
                return
            if fv is not None:
                self.job = None
                ctx.status({"state": "idle"})
                ctx.publish({TRAIT: finished(fv, settings, target[2])})
                return
            ctx.status(progress(job))
            ctx.publish({TRAIT: running(job, settings)})
        loop.call_soon(self.slice, ctx, job, target, settings, loop)

    def stop(self, ctx: Context, publish: bool = True) -> None:
        """Stop the run under way: what it found so far is dropped, nothing is cached, and
        (``publish``) the unit shows what it showed before."""
        if self.job is None:
            return
        self.job = None
        ctx.status({"state": "idle"})
        if publish:
            target = self.target(ctx)
            ctx.publish({TRAIT: self.shown_for(ctx, target) if target else None})


def job_target(job: Job) -> Target:
    return job.module, job.channels[0], job.call


def progress(job: Job) -> Any:
    return {"state": "running", "done": job.step, "total": job.steps, "unit": "steps",
            "label": f"visualizing {job.module} channel {job.channels[0]}"}  # fmt: skip


def png(tensor: Any) -> bytes:
    arr = (tensor.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    out = io.BytesIO()
    Image.fromarray(arr).save(out, format="PNG")
    return out.getvalue()


def running(job: Job, settings: dict[str, Any]) -> FeaturevisPayload:
    c = job.channels[0]
    payload: FeaturevisPayload = {"module": job.module, "channel": c, "call": job.call,
                                  "state": "running", "step": job.step, "steps": job.steps,
                                  "settings": dict(settings)}  # fmt: skip
    if job.step:
        payload["png"] = png(job.image(c))
        payload["trace"] = array_buffer(job.trace(c).numpy().astype(np.float32))
    return payload


def finished(fv: FeatureVis, settings: dict[str, Any], call: int) -> FeaturevisPayload:
    trace = fv.trace[:, 0].numpy().astype(np.float32)
    return {"module": fv.module, "channel": fv.channels[0], "call": call, "state": "done",
            "step": len(trace), "steps": len(trace), "png": png(fv.tensor[0]),
            "trace": array_buffer(trace), "settings": dict(settings)}  # fmt: skip


def featurevis_spec(fv: FeaturevisPayload, examples: list[Any]) -> Spec:
    """The visualization (left), the channel's top dataset patches beside it when a sweep
    holds them (a click opens one), the objective per step below (or right)."""
    if "png" not in fv:
        raise LayerScopeError("a feature visualization payload without its image")
    size = int(fv.get("settings", {}).get("size", 224))
    trace = decode_array(fv["trace"]) if "trace" in fv else np.zeros(0, np.float32)
    low = 0.3 if examples else 0.0  # the trace under everything when patches are beside
    data, axes, images, notes = patch_cells(examples, 4, (0.36, 1.0), (low + 0.06, 1.0))
    v = str(len(examples) + 1)
    t = str(len(examples) + 2)
    axes[f"xaxis{v}"] = {"domain": [0.0, 0.34 if examples else 0.48], "range": [0, size],
                         "visible": False, "anchor": f"y{v}", "constrain": "domain"}  # fmt: skip
    axes[f"yaxis{v}"] = {"domain": [low + 0.06, 0.95], "range": [size, 0], "visible": False,
                         "scaleanchor": f"x{v}", "anchor": f"x{v}",
                         "constrain": "domain"}  # fmt: skip
    images.append({"source": payload_ref(TRAIT, "png"), "xref": f"x{v}", "yref": f"y{v}",
                   "x": 0, "y": 0, "sizex": size, "sizey": size, "sizing": "stretch",
                   "layer": "below"})  # fmt: skip
    steps = np.arange(1, len(trace) + 1, dtype=np.int32)
    data.append({"type": "scatter", "mode": "lines", "x": steps, "y": trace,
                 "line": {"width": 1.5, "color": "#4c78a8"}, "showlegend": False,
                 "xaxis": f"x{t}", "yaxis": f"y{t}", "meta": {"role": "trace"},
                 "hovertemplate": "step %{x}: %{y:.4g}<extra>objective</extra>"})  # fmt: skip
    axes[f"xaxis{t}"] = {"domain": [0.0, 1.0] if examples else [0.56, 1.0], "anchor": f"y{t}",
                         "range": [0, fv.get("steps", len(trace))],
                         "title": {"text": "step", "standoff": 2}}  # fmt: skip
    axes[f"yaxis{t}"] = {"domain": [0.0, low - 0.08] if examples else [0.12, 0.9],
                         "anchor": f"x{t}", "title": {"text": "objective"}}  # fmt: skip
    s = fv.get("settings", {})
    state = "" if fv["state"] == "done" else f", step {fv.get('step', 0)} of {fv.get('steps')}"
    beside = f" · its top {len(examples)} dataset patches (click: open)" if examples else ""
    how = f"{s.get('param', 'fft')}, {s.get('steps')} steps, {size} px{state}"
    call = f" (call {fv['call']})" if fv.get("call") else ""
    title = f"{fv['module']}{call} channel {fv['channel']}: what excites it most ({how}){beside}"
    return {"data": data, "layout": layout(
        title, "examples", height=380 if examples else 280, images=images, annotations=notes,
        margin={"l": 44, "r": 8, "t": 28, "b": 32}, **axes)}  # fmt: skip
