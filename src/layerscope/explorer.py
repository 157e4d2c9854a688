"""The Explorer: the widget's controller. Hook toggles become captures (early stop, cache),
captures become small payloads, and every click has a Python twin that stays in sync."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from . import payload
from .activations import Activations
from .capture import Capturer, resolve_modules
from .errors import LayerScopeError, close_matches
from .models import PRESETS, load_preset
from .nested import first_tensor
from .preprocess import Preprocess, prepare_image
from .receptive import ReceptiveFieldTracer
from .tree import module_tree
from .widget import LayerScopeWidget

__all__ = ["Explorer"]

_OPTIONS = {
    "selected_module",
    "selected_channel",
    "selected_call",
    "aggregate",
    "overlay",
    "overlay_opacity",
    "colorscale",
    "selected_class",
    "layout",
}


class Explorer(LayerScopeWidget):
    """Look inside a model while it runs.

    >>> Explorer()                      # DeepLabV3-ResNet50 on the bundled astronaut
    >>> Explorer("deeplabv3_mobilenet_v3_large", "my_photo.jpg")
    >>> Explorer(my_model, img, preprocess=my_transform, hooked_modules=["layer3"])

    ``model``: a preset name (see ``layerscope.models.PRESETS``), an ``nn.Module``, or None for
    DeepLabV3-ResNet50 (pretrained when torchvision can supply the weights, else random with a
    notice). ``image``: a path, PIL image, array or tensor; None for the sample image.
    ``preprocess``: a :class:`Preprocess` or any callable returning a tensor; presets bring their
    own. ``image_size`` overrides the resize of a :class:`Preprocess` (smaller is faster).
    ``weights`` is passed to :func:`layerscope.load_preset` for preset models."""

    def __init__(
        self,
        model: str | nn.Module | None = None,
        image: Any = None,
        *,
        preprocess: Preprocess | Callable[[Any], Any] | None = None,
        device: str | torch.device | None = None,
        class_names: list[str] | None = None,
        hooked_modules: Iterable[str] = (),
        weights: Any = "DEFAULT",
        image_size: int | None = None,
        memory_budget: int | None = None,
        topk: int = 16,
        bins: int = 64,
        **options: Any,
    ) -> None:
        unknown = sorted(set(options) - _OPTIONS)
        if unknown:
            known = sorted(
                _OPTIONS
                | {
                    "preprocess",
                    "device",
                    "class_names",
                    "hooked_modules",
                    "weights",
                    "image_size",
                    "memory_budget",
                    "topk",
                    "bins",
                }
            )
            hints = {u: close_matches(u, known, limit=1) for u in unknown}
            raise TypeError(
                "Explorer got unknown argument(s): "
                + ", ".join(
                    f"{u!r}" + (f" (did you mean {h[0]!r}?)" if h else "") for u, h in hints.items()
                )
                + f"; accepted: {', '.join(known)}"
            )
        super().__init__(**{k: v for k, v in options.items() if k != "selected_module"})
        self._topk, self._bins = topk, bins
        notice, title = "", ""
        if model is None or isinstance(model, str):
            name = model or "deeplabv3_resnet50"
            if name not in PRESETS:
                raise LayerScopeError(
                    f"no preset named {name!r}; did you mean "
                    f"{', '.join(close_matches(name, PRESETS) or sorted(PRESETS))}?"
                )
            preset = load_preset(name, weights=weights, device=device)
            model, class_names = preset.model, class_names or preset.class_names
            preprocess = preprocess or preset.preprocess
            notice, title = preset.notice or "", f"{name} ({preset.weights_source})"
        elif not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module or a preset name, got {type(model)}")
        else:
            title = type(model).__name__
            if device is not None:
                model.to(device)
        if preprocess is None:
            preprocess = Preprocess(resize=None)
        if image_size is not None:
            if not isinstance(preprocess, Preprocess):
                raise TypeError("image_size needs a layerscope Preprocess, not a custom callable")
            preprocess = preprocess.with_size(image_size)
        self.model = model
        self.class_names = list(class_names or [])
        self._capturer = Capturer(model, memory_budget=memory_budget)
        if image is None:
            from .images import sample_image

            image = sample_image()
        self.prepared = prepare_image(image, preprocess)
        self._last_progress = 0.0
        self._acts: Activations | None = None
        self._scores: torch.Tensor | None = None
        self._notice, self._title = notice, title
        self._image = {
            "jpeg": payload.jpeg(self.prepared.image),
            "size": [self.prepared.image.height, self.prepared.image.width],
        }
        self._geometry = self.prepared.geometry.to_json()
        self._first_run()
        self.observe(self._on_hooked, "hooked_modules")
        self.observe(self._on_selected, ["selected_module", "selected_call"])
        self.observe(self._on_channel, "selected_channel")
        self.observe(self._on_class, "selected_class")
        names = list(hooked_modules)
        if names:
            self.hooked_modules = names
        if options.get("selected_module"):
            self.selected_module = options["selected_module"]

    # -- the Python twins of the clicks ------------------------------------------------------

    @property
    def inputs(self) -> torch.Tensor:
        """The preprocessed image batch the model sees."""
        return self.prepared.tensor

    @property
    def activations(self) -> Activations:
        """The hooked modules' captured outputs (from the cache: no forward)."""
        if not self.hooked_modules:
            raise LayerScopeError(
                "no module is hooked: click one in the tree or set hooked_modules"
            )
        return self._capture(self.hooked_modules)

    def hook(self, *names: str) -> None:
        """Hook modules (like clicking them in the tree)."""
        self.hooked_modules = list(dict.fromkeys([*self.hooked_modules, *names]))

    def unhook(self, *names: str) -> None:
        self.hooked_modules = [n for n in self.hooked_modules if n not in names]

    def figure(self, view: str = "overlay") -> Any:
        """The shown view as a ``plotly.graph_objects.Figure``: ``"overlay"``, ``"channel"``,
        ``"aggregate"``, ``"grid"``, ``"histogram"``, ``"mask"`` or ``"score"``."""
        from .figures import build_figure

        return build_figure(self, view)

    # -- controller ----------------------------------------------------------------------------

    def _capture(self, names: list[str], label: str = "") -> Activations:
        self._status = {"state": "running", "done": 0, "total": None, "label": label}
        start = time.perf_counter()
        try:
            acts = self._capturer.capture(self.inputs, names, progress=self._progress)
        finally:
            self._status = {"state": "idle", "seconds": round(time.perf_counter() - start, 4)}
        return acts

    def _progress(self, done: int, total: int | None) -> None:
        now = time.perf_counter()
        if now - self._last_progress > 0.1:  # a few updates a second is enough for a bar
            self._last_progress = now
            self._status = {"state": "running", "done": done, "total": total}

    def _first_run(self) -> None:
        # One complete forward: learns the execution order and every output's shape, follows
        # the receptive fields, and gives the model's output (the predicted mask).
        with ReceptiveFieldTracer(self.model, self.inputs) as tracer:
            acts = self._capture([""], "first forward")
        self.receptive_fields = tracer.fields
        counts = self._capturer.known_call_counts(self.inputs)
        shapes = self._capturer.known_shapes(self.inputs)
        self._tree = module_tree(
            self.model, call_counts=counts, shapes=shapes, receptive=self.receptive_fields
        )
        logits = first_tensor(acts[""])
        n = len(self.class_names)
        if logits is not None and logits.dim() == 4 and n and logits.shape[1] == n:
            seg, self._scores = payload.segmentation_payload(
                logits, (self.prepared.image.height, self.prepared.image.width), self.class_names
            )
            self._segmentation = seg
            self._on_class(None)

    def _guard(self, fn: Callable[[], None]) -> None:
        try:
            fn()
            self._error = ""
        except Exception as exc:  # shown in the widget, not only in the kernel log
            self._error = f"{type(exc).__name__}: {exc}"
            self.log_traceback = traceback.format_exc()

    def _on_hooked(self, change: Any) -> None:
        def run() -> None:
            names = list(dict.fromkeys(change["new"]))
            known = {n for n, _ in self.model.named_modules()}
            bad = [n for n in names if n not in known]
            if bad:
                self.hooked_modules = [n for n in names if n in known]
                resolve_modules(self.model, bad)  # raises with the close matches
            if names != change["new"]:
                self.hooked_modules = names
                return
            if not names:
                self._acts, self._layer, self._channel = None, {}, {}
                self.selected_module = ""
                return
            added = [n for n in names if n not in (change["old"] or [])]
            self._acts = self._capture(names, added[-1] if added else "")
            if added:
                self.selected_module = added[-1]
            elif self.selected_module not in names:
                self.selected_module = names[-1]

        self._guard(run)

    def _on_selected(self, change: Any) -> None:
        def run() -> None:
            name = self.selected_module
            if not name:
                self._layer, self._channel = {}, {}
                return
            if name not in self.hooked_modules:
                self.hook(name)  # selecting an unhooked module hooks it first
                return
            if self._acts is None or name not in self._acts.requested:
                self._acts = self._capture(self.hooked_modules, name)
            calls = self._acts.calls(name)
            if not calls:
                self._layer = {"module": name, "kind": "never-called", "calls": 0}
                self._channel = {}
                return
            call = self.selected_call
            if not 0 <= call < len(calls):
                self.selected_call = 0
                raise LayerScopeError(
                    f"{name} ran {len(calls)} time(s): call {call} does not exist"
                )
            cls = type(dict(self.model.named_modules())[name]).__name__
            rf = self.receptive_fields.get(name) if call == 0 else None
            layer = payload.layer_payload(
                name,
                cls,
                calls[call],
                call=call,
                calls=len(calls),
                topk=self._topk,
                bins=self._bins,
            )
            layer["rf"] = rf.to_json() if rf is not None else None
            self._layer = layer
            channel = self.selected_channel
            if layer["kind"] != "maps":
                self._channel = {}
            elif (
                change is not None
                and change.get("name") == "selected_module"
                or not (0 <= channel < layer["channels"])
            ):
                self._set_channel(layer["topk"][0])  # the most active channel
            else:
                self._send_channel()

        self._guard(run)

    def _set_channel(self, channel: int) -> None:
        if self.selected_channel == channel:
            self._send_channel()
        else:
            self.selected_channel = channel  # the observer sends it

    def _on_channel(self, change: Any) -> None:
        def run() -> None:
            layer = self._layer
            if layer.get("kind") != "maps":
                return
            if not 0 <= self.selected_channel < layer["channels"]:
                bad = self.selected_channel
                self.selected_channel = (
                    change["old"] if 0 <= change["old"] < layer["channels"] else 0
                )
                raise LayerScopeError(
                    f"channel {bad} is out of range: {layer['module']} has {layer['channels']}"
                )
            self._send_channel()

        self._guard(run)

    def _send_channel(self) -> None:
        layer = self._layer
        output = self._acts.calls(layer["module"])[layer["call"]]  # type: ignore[union-attr]
        edges = layer["histogram"]["edges"]
        self._channel = payload.channel_payload(
            output, self.selected_channel, bins=self._bins, value_range=[edges[0], edges[-1]]
        )

    def _on_class(self, change: Any) -> None:
        def run() -> None:
            if self._scores is None:
                return
            legend = self._segmentation.get("legend", [])
            cls = self.selected_class
            if cls < 0:
                present = [e["index"] for e in legend if e["index"] != 0] or [0]
                cls = present[0]
            if not 0 <= cls < self._scores.shape[0]:
                raise LayerScopeError(
                    f"class {cls} is out of range (0-{self._scores.shape[0] - 1})"
                )
            score = self._scores[cls].cpu().numpy()
            self._class_score = {
                "class": cls,
                "name": self.class_names[cls],
                "map": payload.array_buffer(score),
            }

        self._guard(run)
