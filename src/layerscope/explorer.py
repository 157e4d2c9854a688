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
from .attribution import gradcam_payload
from .capture import Capturer, resolve_modules
from .errors import LayerScopeError
from .explorer_setup import check_options, resolve_model
from .explorer_tools import ExplorerTools
from .images import SAMPLE_IMAGES, sample_image
from .nested import first_tensor
from .preprocess import Preprocess, prepare_image
from .receptive import ReceptiveFieldTracer
from .tree import module_tree
from .widget import LayerScopeWidget

__all__ = ["Explorer"]


class Explorer(ExplorerTools, LayerScopeWidget):
    """Look inside a model while it runs.

    >>> Explorer()                      # DeepLabV3-ResNet50 on the bundled astronaut
    >>> Explorer("deeplabv3_mobilenet_v3_large", "my_photo.jpg")
    >>> Explorer(my_model, img, preprocess=my_transform, hooked_modules=["layer3"])

    ``model``: a preset name (see ``layerscope.models.PRESETS``), an ``nn.Module``, or None for
    DeepLabV3-ResNet50 (pretrained when torchvision can supply the weights, else random with a
    notice). ``image``: a path, PIL image, array or tensor; None for the sample image.
    ``preprocess``: a :class:`Preprocess` or any callable returning a tensor; presets bring their
    own. ``image_size`` overrides the resize of a :class:`Preprocess` (smaller is faster).
    ``weights`` is passed to :func:`layerscope.load_preset` for preset models.

    Errors from the widget's actions show in the widget; ``explorer.last_traceback`` holds the
    full traceback of the latest one."""

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
        check_options(options)
        super().__init__(**{k: v for k, v in options.items() if k != "selected_module"})
        self._topk, self._bins = topk, bins
        model, preprocess, class_names, notice, title = resolve_model(
            model,
            weights=weights,
            device=device,
            preprocess=preprocess,
            class_names=class_names,
            image_size=image_size,
        )
        self.model = model
        self.class_names = list(class_names or [])
        # On a GPU, captures stay on the device and only the reduced payloads reach the CPU.
        on_gpu = any(p.device.type != "cpu" for p in model.parameters())
        self._capturer = Capturer(
            model, memory_budget=memory_budget, storage=None if on_gpu else "cpu"
        )
        self._preprocess = preprocess
        self._last_progress = 0.0
        self._calls: dict[str, list[Any]] = {}  # hooked module -> its outputs, call by call
        self._scores: torch.Tensor | None = None
        self._output_size: tuple[int, ...] | None = None
        self._fields_by_shape: dict[tuple[int, ...], dict[str, Any]] = {}
        self._notice, self._title = notice, title
        self._samples = sorted(SAMPLE_IMAGES)
        if image is None:
            image, self.image_name = sample_image(), "astronaut"
        else:
            self.image_name = image if isinstance(image, str) and image in SAMPLE_IMAGES else ""
        self._prepare(image)
        self._first_run()
        self.observe(self._on_image_name, "image_name")
        self.observe(self._on_upload, "_upload")
        self.observe(self._on_hooked, "hooked_modules")
        self.observe(self._on_selected, ["selected_module", "selected_call", "selected_frame"])
        self.observe(self._on_channel, "selected_channel")
        self.observe(self._on_class, "selected_class")
        self.observe(
            self._on_gradcam, ["overlay", "selected_class", "gradcam_region", "selected_module"]
        )
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

    def set_image(self, image: Any, name: str = "") -> None:
        """Show another image: a path, PIL image, array, tensor or the bytes of an image file.
        The first forward and the hooked captures run again (progress shown in the widget)."""
        self._prepare(image)
        self._calls = {}
        self._first_run()
        for module in self.hooked_modules:
            self._outputs(module)
        with self.hold_sync():
            self.set_trait("image_name", name)
            self._on_selected(None)
            self._on_gradcam(None)

    def _prepare(self, image: Any) -> None:
        self.prepared = prepare_image(image, self._preprocess)
        self._image = {
            "jpeg": payload.jpeg(self.prepared.image),
            "size": [self.prepared.image.height, self.prepared.image.width],
        }
        self._geometry = self.prepared.geometry.to_json()

    def _on_image_name(self, change: Any) -> None:
        def run() -> None:
            name = change["new"]
            if name in SAMPLE_IMAGES:
                self.set_image(sample_image(name), name)

        self._guard(run)

    def _on_upload(self, change: Any) -> None:
        def run() -> None:
            upload = change["new"] or {}
            if upload.get("data") is None:
                return
            self.set_image(bytes(upload["data"]), str(upload.get("name", "uploaded image")))

        self._guard(run)

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
        # A cached output runs no forward, so nothing is traced: keep what this shape showed.
        shape = tuple(self.inputs.shape)
        if tracer.fields:
            self._fields_by_shape[shape] = tracer.fields
        self.receptive_fields = self._fields_by_shape.get(shape, {})
        counts = self._capturer.known_call_counts(self.inputs)
        shapes = self._capturer.known_shapes(self.inputs)
        self._tree = module_tree(
            self.model, call_counts=counts, shapes=shapes, receptive=self.receptive_fields
        )
        logits = first_tensor(acts[""])
        self._output_size = (
            tuple(logits.shape[-2:]) if logits is not None and logits.dim() == 4 else None
        )
        n = len(self.class_names)
        if logits is not None and logits.dim() == 4 and n and logits.shape[1] == n:
            seg, self._scores = payload.segmentation_payload(
                logits, (self.prepared.image.height, self.prepared.image.width), self.class_names
            )
            self._segmentation = seg
            self._on_class(None)
        elif logits is not None and logits.dim() == 2 and n and logits.shape[1] == n:
            self._prediction = payload.vector_payload(logits[0], 5, self.class_names)

    def _guard(self, fn: Callable[[], None]) -> None:
        try:
            fn()
            self._error = ""
        except Exception as exc:  # shown in the widget, not only in the kernel log
            self._error = f"{type(exc).__name__}: {exc}"
            self.last_traceback = traceback.format_exc()  # the details, for a cell to print

    def _outputs(self, name: str) -> list[Any]:
        """Every call's output of one hooked module: from the cache, else one capture of that
        module alone (it stops early; other hooked modules are not recomputed)."""
        if name not in self._calls:
            self._calls[name] = self._capture([name], name).calls(name)
        return self._calls[name]

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
            self._calls = {n: c for n, c in self._calls.items() if n in names}
            added = [n for n in names if n not in (change["old"] or [])]
            for name in added:  # captured before the views change, with progress shown
                self._outputs(name)
            with self.hold_sync():  # one message: selection, layer and channel together
                if not names:
                    self._layer, self._channel = {}, {}
                    self.selected_module = ""
                elif added:
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
            calls = self._outputs(name)
            with self.hold_sync():
                self._show_layer(name, calls, change)

        self._guard(run)

    def _show_layer(self, name: str, calls: list[Any], change: Any) -> None:
        if not calls:
            self._layer = {"module": name, "kind": "never-called", "calls": 0}
            self._channel = {}
            return
        call = self.selected_call
        if self.selected_frame < 0:
            self.selected_frame = 0
            raise LayerScopeError("frames are numbered from 0")
        if not 0 <= call < len(calls):
            self.selected_call = 0
            raise LayerScopeError(f"{name} ran {len(calls)} time(s): call {call} does not exist")
        cls = type(dict(self.model.named_modules())[name]).__name__
        try:
            layer = payload.layer_payload(
                name,
                cls,
                calls[call],
                call=call,
                calls=len(calls),
                topk=self._topk,
                bins=self._bins,
                frame=self.selected_frame,
                class_names=self.class_names,
            )
        except IndexError as exc:  # a frame past the end of a video output
            self.selected_frame = 0
            raise LayerScopeError(str(exc)) from exc
        rf = self.receptive_fields.get(name) if call == 0 else None
        layer["rf"] = rf.to_json() if rf is not None else None
        self._layer = layer
        channel = self.selected_channel
        if layer["kind"] != "maps":
            self._channel = {}
        elif (change is not None and change.get("name") == "selected_module") or not (
            0 <= channel < layer["channels"]
        ):
            self._set_channel(layer["topk"][0])  # the most active channel
        else:
            self._send_channel()

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
        output = self._outputs(layer["module"])[layer["call"]]
        edges = layer["histogram"]["edges"]
        channel = payload.channel_payload(
            output,
            self.selected_channel,
            bins=self._bins,
            value_range=[edges[0], edges[-1]],
            frame=layer.get("frame", 0),
        )
        # The front end draws a layer and a channel together only when they belong together.
        self._channel = {**channel, "module": layer["module"], "call": layer["call"]}

    def _on_gradcam(self, change: Any) -> None:
        def run() -> None:
            if self.overlay != "gradcam" or not self.selected_module:
                if self._gradcam:
                    self._gradcam = {}
                return
            if self._layer.get("kind") != "maps":
                raise LayerScopeError(
                    f"Grad-CAM needs a spatial map; {self.selected_module} has none"
                )
            self._status = {"state": "running", "label": "Grad-CAM (forward and backward)"}
            start = time.perf_counter()
            try:
                result = self.grad_cam(region=self.gradcam_region or None)
            finally:
                self._status = {"state": "idle", "seconds": round(time.perf_counter() - start, 4)}
            self._gradcam = gradcam_payload(self, result, self._bins)

        self._guard(run)

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
