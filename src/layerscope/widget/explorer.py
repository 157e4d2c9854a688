"""The Explorer: the widget's controller. It observes clicks and cells, runs the steps they call
for (:class:`~layerscope.widget.steps.Steps`: image -> hooks -> layer -> channel -> class ->
gradcam), and publishes a view-state as traits. The computing is the session's; the payloads
are the schema's; the checks are :mod:`~layerscope.widget.validation`'s.

Bad values are refused by traitlets validation: a Python assignment raises ``TraitError``; a
value from the browser is refused, shown as an error, and the browser put back in sync."""

from __future__ import annotations

import contextlib
import inspect
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import traitlets as t
from PIL import Image
from torch import nn

from ..activations import Activations
from ..capture import resolve_modules
from ..compare import Comparison, compare_images, compare_models
from ..dataset import Sweep
from ..errors import ArgumentError, LayerScopeError, NotReadyError
from ..gradients import GradCam, grad_cam
from ..images import SAMPLE_IMAGES, sample_image
from ..importance import ChannelImportance
from ..nested import first_tensor, iter_tensors
from ..preprocess import PreparedImage, Preprocess
from ..receptive import ReceptiveField
from ..spatial import spatial_maps
from . import validation as check
from .dataset_panel import DatasetPanel
from .dataset_view import dataset_payload
from .export import write_html
from .figures import build_figure
from .memo import PayloadMemo
from .options import check_options, resolve_model
from .payload import channel_payload, class_label, gradcam_payload
from .session import Session
from .steps import Steps, Unchanged
from .traits import PUBLIC_TRAITS, LayerScopeWidget
from .viewstate import ViewOptions, ViewState, module_view

__all__ = ["Explorer"]

_ORDER = ("image", "hooks", "layer", "channel", "class", "gradcam", "ablation", "importance",
          "dataset")  # fmt: skip
_AFTER = {"image": _ORDER[1:], "hooks": ("layer", "channel", "gradcam", "importance", "dataset"),
          "layer": ("channel", "gradcam", "importance", "dataset"), "channel": ("dataset",),
          "class": ("gradcam", "importance"), "gradcam": (), "ablation": (),
          "importance": (), "dataset": ()}  # fmt: skip
_CLEARS = {"layer": ("_layer", "_channel", "_gradcam", "_importance", "_dataset"),
           "channel": ("_channel",), "class": ("_class_score",), "gradcam": ("_gradcam",),
           "ablation": ("_ablation",), "importance": ("_importance",),
           "dataset": ("_dataset",)}  # fmt: skip
_STEP_OF = {"image_name": "image", "_upload": "image", "hooked_modules": "hooks",
            "selected_module": "layer", "selected_call": "layer", "selected_frame": "layer",
            "selected_channel": "channel", "selected_class": "class", "overlay": "gradcam",
            "gradcam_region": "gradcam", "aggregate": None, "colorscale": None,
            "overlay_opacity": None, "ablations": "ablation",
            "show_importance": "importance"}  # fmt: skip


class Explorer(DatasetPanel, LayerScopeWidget):
    """Look inside a model while it runs.

    >>> Explorer()                      # DeepLabV3-ResNet50 on the bundled astronaut
    >>> Explorer("deeplabv3_mobilenet_v3_large", "my_photo.jpg")
    >>> Explorer(my_model, img, preprocess=my_transform, hooked_modules=["layer3"])

    ``model``: a preset name (``layerscope.models.PRESETS``), an ``nn.Module`` (torchvision,
    Hugging Face or your own), or None for DeepLabV3-ResNet50 (pretrained when torchvision can
    supply the weights, else random with a notice). ``image``: a path, PIL image, array or
    tensor; None for the sample image. ``preprocess``: a :class:`Preprocess` or any callable
    returning a tensor; presets bring their own. ``image_size`` overrides the resize of a
    :class:`Preprocess`. ``memory_budget``: bytes for the model's captures (one budget per
    model, shared by its Explorers and Capturers). ``layouts``: where the tracer cannot tell,
    which dimensions of a module's output are channels and grid (``{"features.5": "NHWC"}``).
    ``sweep``: a :class:`~layerscope.Sweep` of this model for the Dataset panel (or run one with
    ``explorer.sweep(images)``). Any public trait (``selected_channel=...``) may be given too.

    Errors from the widget's actions show in the widget; ``explorer.errors`` lists them and
    ``explorer.last_traceback`` holds the full traceback of the latest one."""

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
        layouts: dict[str, str] | None = None,
        sweep: Sweep | None = None,
        **options: Any,
    ) -> None:
        own = [
            p
            for p in inspect.signature(Explorer.__init__).parameters
            if p not in ("self", "options")
        ]
        check_options(options, PUBLIC_TRAITS, tuple(own))
        super().__init__()
        self._steps = Steps(_ORDER, _AFTER, _CLEARS, run=lambda s: getattr(self, f"_step_{s}")(),
                            show=lambda text: setattr(self, "_error", text),
                            clear=self._clear,
                            interrupted=lambda: self._set_status({"state": "idle"}),
                            batch=self.hold_sync)  # fmt: skip
        self._quiet = False
        self._topk, self._bins = topk, bins
        self._selected: tuple[str, list[Any]] | None = None  # held: the budget's one exception
        self._hooked: list[str] = []
        self._fresh: dict[str, list[Any]] = {}
        self._memo = PayloadMemo()  # payloads of outputs the store serves again
        self._pending_image: Any = None
        self._init_dataset(sweep)
        model, preprocess, class_names, self._notice, self._title = resolve_model(
            model, weights=weights, device=device, preprocess=preprocess,
            class_names=class_names, image_size=image_size,
        )  # fmt: skip
        self.model = model
        self._check_sweep_model(sweep)  # before any view is drawn from it
        self._named = dict(model.named_modules())
        resolve_modules(model, list(layouts or {}) or [""], self._named)
        self._session = Session(model, preprocess, class_names, memory_budget=memory_budget,
                                layouts=layouts or {}, status=self._set_status)  # fmt: skip
        self._samples = sorted(SAMPLE_IMAGES)
        if image is None:
            image, name = sample_image(), "astronaut"
        else:
            name = image if isinstance(image, str) and image in SAMPLE_IMAGES else ""
        self._show_image(image, name)  # errors here raise: there is no widget to show them yet
        self.observe(self._on_change, names=[*_STEP_OF, "_error"])
        if hooked_modules:
            self.hooked_modules = list(hooked_modules)
        for key in sorted(options, key=lambda k: (k != "selected_module", k)):
            setattr(self, key, options[key])
        self._steps.run()

    # -- the Python twins of the clicks ----------------------------------------------------------

    @property
    def view(self) -> ViewState:
        """What the views show now, as data (what ``figure`` and ``to_html`` draw)."""
        return self._view

    @property
    def errors(self) -> dict[str, str]:
        """The errors shown in the widget, by the step that raised them."""
        return dict(self._steps.errors)

    @property
    def last_traceback(self) -> str:
        """The full traceback behind the latest error shown in the widget ("" before any)."""
        return self._steps.last_traceback

    @property
    def prepared(self) -> PreparedImage:
        return self._session.prepared

    @property
    def inputs(self) -> torch.Tensor:
        """The preprocessed image batch the model sees (on its device, in its dtype)."""
        return self._session.inputs

    @property
    def class_names(self) -> list[str]:
        return self._session.class_names

    @property
    def receptive_fields(self) -> dict[str, ReceptiveField]:
        return dict(self._session.fields)

    @property
    def activations(self) -> Activations:
        """The hooked modules' captured outputs (from the cache: no forward)."""
        if not self.hooked_modules:
            raise NotReadyError("no module is hooked: click one in the tree, or hook(...)")
        return self._session.capture(list(self.hooked_modules), "hooked modules")

    def hook(self, *names: str) -> None:
        """Hook modules (like clicking them in the tree)."""
        self.hooked_modules = list(dict.fromkeys([*self.hooked_modules, *names]))

    def unhook(self, *names: str) -> None:
        self.hooked_modules = [n for n in self.hooked_modules if n not in names]

    @property
    def image(self) -> Image.Image:
        """The image shown (8-bit RGB); ``explorer.image = x`` is ``explorer.set_image(x)``."""
        return self._session.prepared.image

    @image.setter
    def image(self, value: Any) -> None:
        self.set_image(value)

    def set_image(self, image: Any, name: str = "") -> None:
        """Show another image: a path, PIL image, array, tensor or the bytes of an image file.
        The first forward and the hooked captures run again (progress shown in the widget)."""
        self._show_image(image, name)
        self._steps.run()

    def grad_cam(self, module: str | None = None, target_class: int | None = None,
                 region: list[float] | None = None) -> GradCam:  # fmt: skip
        """Grad-CAM at ``module`` (default: the selected one) for ``target_class`` (default:
        the class picked in the legend, else the largest predicted one), summed over the
        class's predicted pixels or over ``region``, an image-pixel box (y0, x0, y1, x1)."""
        name = module or self.selected_module
        if not name:
            raise NotReadyError("no module selected: hook one first")
        s = self._session
        cls = s.default_class(self.selected_class if target_class is None else target_class)
        if name in self.hooked_modules:
            # The views' pass (one forward and backward for every hooked module, kept in the
            # store) serves it when it is there: a lecture asks for what it just drew.
            cached = s.grad_cams([name], cls, region).get(name)
            if cached is not None:
                out = first_tensor(s.capture([name], "hooked modules")[name])
                activation = spatial_maps(out, 0, s.layouts.get(name))[0]
                weights = cached.gradient.float().mean(dim=(1, 2))
                return replace(cached, activation=activation, weights=weights)
        return grad_cam(self.model, self.inputs, name, cls, region=s.region_mask(region),
                        layout=s.layouts.get(name))  # fmt: skip

    def channel_importance(
        self, module: str | None = None, target_class: int | None = None
    ) -> ChannelImportance:
        """What each channel of ``module`` (default: the selected one) does to ``target_class``
        (default: the class the views use): every channel's first-order estimate and the exact
        drop of the largest 16 (:func:`layerscope.channel_importance`). The importance view
        shows the same result: computed once per image, module and class, and shared."""
        name = module or self.selected_module
        if not name:
            raise NotReadyError("no module selected: hook one first, or pass module=")
        (name,) = resolve_modules(self.model, [name], self._named)
        s = self._session
        cls = s.default_class(self.selected_class if target_class is None else target_class)
        call = (self._view.layer or {}).get("call", 0) if name == self.selected_module else 0
        return s.channel_importance(name, cls, call)

    def compare(
        self,
        image: Any = None,
        model: nn.Module | None = None,
        module: str | None = None,
        channel: int | str | None = None,
    ) -> Comparison:
        """The selected module's selected channel (or ``channel``; ``"aggregate"`` for the
        aggregate map) for this image against ``image``, or through this model against
        ``model``; ``.figure()`` draws A, B and A - B on shared scales."""
        name = module or self.selected_module
        if not name:
            raise NotReadyError("no module selected: hook one first, or pass module=")
        if (image is None) == (model is None):
            raise ArgumentError("pass either image= (another image) or model= (another model)")
        ch = None if channel == "aggregate" else int(channel) if channel is not None else (
            self.selected_channel if name == self.selected_module else None)  # fmt: skip
        pre = self._session.preprocess
        kw = dict(channel=ch, aggregate=self.aggregate)
        if image is None:
            return compare_models(self.model, model, self.prepared.image, name, preprocess=pre,  # type: ignore[arg-type]
                                  labels=("this model", "other model"), **kw)  # type: ignore[arg-type]  # fmt: skip
        if isinstance(pre, Preprocess) and not pre.crop:  # both sides one size: the maps line up
            pre = Preprocess(resize=self.prepared.geometry.input_size, mean=pre.mean, std=pre.std)
        return compare_images(self.model, self.prepared.image, image, name, preprocess=pre,
                              labels=(self.image_name or "this image", "other image"), **kw)  # type: ignore[arg-type]  # fmt: skip

    def figure(self, view: str = "overlay") -> Any:
        """The shown view as a ``plotly.graph_objects.Figure``: ``"overlay"``, ``"channel"``,
        ``"aggregate"``, ``"grid"``, ``"histogram"``, ``"mask"``, ``"score"``, ``"vector"``,
        ``"gradcam"``, ``"ablation"``, ``"importance"`` or ``"dataset"``."""
        return build_figure(self._view, view)

    def to_html(self, path: str | Path) -> Path:
        """Write a single self-contained HTML file (plotly.js inlined, no network needed) with
        the image, the prediction and every hooked module's views, still interactive."""
        modules = [(n, self._view if n == self.selected_module else self._exported_view(n))
                   for n in self.hooked_modules]  # fmt: skip
        return write_html(path, title=self._title, prediction=self._view, modules=modules,
                          notice=self._notice)  # fmt: skip

    def _exported_view(self, name: str) -> ViewState:
        """A hooked module's views for the export, with its Dataset panel when swept."""
        view = self._module_view(name)
        if self._sweep is not None and name in self._sweep.modules and view.channel:
            channel = view.channel["channel"]
            view = view.with_(dataset=dataset_payload(self._sweep, name, channel, self._crops))
        return view

    def _module_view(self, name: str, **kw: Any) -> ViewState:
        fresh = self._fresh.pop(name, None)
        calls = self._last_calls = fresh if fresh is not None else self._session.calls(name)
        call = kw.get("call", 0)
        layout = self._session.layout(name, calls[call]) if calls else None
        return module_view(self._view, name, type(self._named[name]).__name__, calls,
                           topk=self._topk, bins=self._bins, class_names=self.class_names,
                           layout=layout, rf=self._session.fields.get(name), memo=self._memo,
                           **kw)  # fmt: skip

    # -- validation ----------------------------------------------------------------------------

    def set_state(self, sync_data: dict[str, Any]) -> None:
        """Values from the browser, one by one: a refused one is shown as an error and sent
        back as it was kept, and does not undo the others."""
        for name, value in sync_data.items():
            try:
                super().set_state({name: value})
            except t.TraitError as exc:
                self._steps.fail(_STEP_OF.get(name) or name, str(exc), clear=False)
                self.send_state(name)

    def _known(self, names: list[str]) -> list[str]:
        try:
            return resolve_modules(self.model, names, self._named) if names else []
        except LayerScopeError as exc:
            raise check.InvalidTraitError(str(exc)) from None

    @t.validate("hooked_modules")
    def _valid_hooked(self, proposal: Any) -> list[str]:
        return self._known(list(dict.fromkeys(proposal["value"])))

    @t.validate("selected_module")
    def _valid_module(self, proposal: Any) -> str:
        return proposal["value"] and self._known([proposal["value"]])[0]

    @t.validate("selected_call")
    def _valid_call(self, proposal: Any) -> int:
        runs = (self._session.capturer.known_call_counts(self.inputs) or {}).get(
            self.selected_module, 1)  # fmt: skip
        return check.check_call(proposal["value"], self.selected_module, runs)

    @t.validate("selected_frame")
    def _valid_frame(self, proposal: Any) -> int:
        return check.check_frame(proposal["value"], self._layer or {}, self.selected_module)

    @t.validate("selected_channel")
    def _valid_channel(self, proposal: Any) -> int:
        return check.check_channel(proposal["value"], self._layer or {}, self.selected_module)

    @t.validate("selected_class")
    def _valid_class(self, proposal: Any) -> int:
        return check.check_class(proposal["value"], len(self._session.class_names))

    @t.validate("ablations")
    def _valid_ablations(self, proposal: Any) -> dict[str, list[int]]:
        value = {str(k): list(v) for k, v in proposal["value"].items() if len(v)}
        self._known(list(value))
        shapes = self._session.capturer.known_shapes(self.inputs) or {}
        return check.check_ablations(value, shapes)

    @t.validate("overlay_opacity")
    def _valid_opacity(self, proposal: Any) -> float:
        return check.check_opacity(proposal["value"])

    @t.validate("gradcam_region")
    def _valid_region(self, proposal: Any) -> list[float]:
        return check.check_region(list(proposal["value"]))

    # -- the controller ----------------------------------------------------------------------------

    def _on_change(self, change: dict[str, Any]) -> None:
        name = change["name"]
        if name == "_error":
            if not change["new"]:  # dismissed in the browser
                self._steps.dismiss()
            return
        if self._quiet:
            return
        if name in ("aggregate", "colorscale", "overlay_opacity", "overlay", "gradcam_region"):
            self._view = self._view.with_(options=self._options())
        if name == "_upload":
            upload = change["new"] or {}
            if upload.get("data") is None:
                return
            self._pending_image = (bytes(upload["data"]), str(upload.get("name", "upload")))
        step = _STEP_OF[name]
        if step is not None:
            self._steps.mark(step)
            self._steps.run()

    @contextlib.contextmanager
    def _quietly(self) -> Iterator[None]:
        """Set traits that follow from what the controller did, without asking it again."""
        was, self._quiet = self._quiet, True
        try:
            yield
        finally:
            self._quiet = was

    def _clear(self, trait: str) -> None:
        """Empty a payload, in the traits and in the view-state alike."""
        setattr(self, trait, {})
        if trait == "_class_score":  # part of the scene
            self._view = self._view.with_(scene=replace(self._view.scene, class_score=None))
        else:
            self._view = self._view.with_(**{trait[1:]: None})
        if trait == "_layer":
            self._selected = None

    def _set_status(self, status: dict[str, Any]) -> None:
        self._now("_status", status)

    def _now(self, trait: str, value: Any) -> None:
        """Set a trait and send it at once, also while a click's changes are held back to go
        out as one message (progress, a placeholder while a capture runs)."""
        setattr(self, trait, value)
        if self._holding_sync:
            self.send_state(trait)
            self._states_to_send.discard(trait)

    def _options(self) -> ViewOptions:
        return ViewOptions(self.aggregate, self.colorscale, self.overlay, self.overlay_opacity,
                           tuple(self.gradcam_region))  # fmt: skip

    def _publish(self, view: ViewState) -> None:
        """Make ``view`` what the widget shows: one message for what changed."""
        self._view = view
        with self.hold_sync():
            for trait, value in (("_layer", view.layer), ("_channel", view.channel),
                                 ("_gradcam", view.gradcam)):  # fmt: skip
                if getattr(self, trait) is not value:
                    setattr(self, trait, dict(value or {}))

    def _show_image(self, image: Any, name: str) -> None:
        self._session.set_image(image)
        tree = self._session.first_run()
        scene = self._session.scene(self._title, self._notice)
        self._selected, self._hooked = None, []  # every hooked module is new for this image
        self._view = ViewState(scene, self._options())
        with self.hold_sync(), self._quietly():
            self._tree, self._image, self._geometry = tree, dict(scene.image), dict(scene.geometry)
            self._segmentation = dict(scene.segmentation or {})
            self._prediction = dict(scene.prediction or {})
            self._layer, self._channel, self._gradcam, self._class_score = {}, {}, {}, {}
            self._dataset, self._unit_mark = {}, {}
            self.image_name = self._shown_name = name
        self._steps.mark("hooks")
        self._steps.mark("class")

    # -- the steps, in order ------------------------------------------------------------------

    def _step_image(self) -> None:
        pending, self._pending_image = self._pending_image, None
        if pending is None and self.image_name in SAMPLE_IMAGES:
            pending = (sample_image(self.image_name), self.image_name)
        if pending is None or pending[1] == self._shown_name and pending[1] in SAMPLE_IMAGES:
            return
        try:
            self._show_image(*pending)
        except Exception as exc:
            with self._quietly():  # the image shown is still the one before, and its views
                self.image_name = self._shown_name
            self._steps.skip(*_AFTER["image"])
            raise Unchanged(f"{type(exc).__name__}: {exc}") from exc

    def _step_hooks(self) -> None:
        names = list(self.hooked_modules)
        added = [n for n in names if n not in self._hooked]
        self._hooked = names
        # Captured together (one forward), before the views change, with progress shown; the
        # layer step takes the selected one's calls from here instead of asking the store again.
        self._fresh = self._session.calls_of(added, strict=False) if added else {}
        pick = self.selected_module
        if not names:
            pick = ""
        elif added:
            pick = added[-1]
        elif pick not in names:
            pick = names[-1]
        if pick != self.selected_module:
            self.selected_module = pick
        elif added:  # the selection stays, but its output is new (a new image)
            self._steps.mark("layer")

    def _step_layer(self) -> None:
        name = self.selected_module
        if not name:
            self._selected = None
            self._publish(self._view.with_(layer=None, channel=None, gradcam=None))
            return
        if name not in self.hooked_modules:
            self.hook(name)  # selecting an unhooked module hooks it; the hooks step selects it
            return
        moved = self._selected is None or self._selected[0] != name
        if moved and (self.selected_call or self.selected_frame):
            with self._quietly():
                self.selected_call, self.selected_frame = 0, 0
        if name not in self._fresh and not self._session.holds(name):
            # A capture is coming: no old views meanwhile, and the widget says so at once.
            pending = {"module": name, "kind": "pending", "cls": "", "call": 0, "calls": 0}
            self._view = self._view.with_(layer=pending, channel=None, gradcam=None)  # type: ignore[arg-type]
            for trait, value in (("_channel", {}), ("_gradcam", {}), ("_layer", pending)):
                self._now(trait, value)
        self._selected = None
        view = self._module_view(name, call=self.selected_call,
                                 frame=self.selected_frame,
                                 channel=None if moved else self.selected_channel)  # fmt: skip
        self._selected = (name, self._last_calls)
        self._fresh = {}  # nothing but the selected output is held past a click
        self._publish(view)
        self._steps.skip("channel")  # the channel came with the layer
        if view.channel is not None and view.channel["channel"] != self.selected_channel:
            with self._quietly():
                self.selected_channel = view.channel["channel"]
        self._check_budget()

    def _step_channel(self) -> None:
        layer = self._view.layer or {}
        if layer.get("kind") != "maps" or self._selected is None:
            return
        name, calls = self._selected
        call, edges = layer["call"], layer["histogram"]["edges"]
        payload = channel_payload(name, call, calls[call], self.selected_channel, bins=self._bins,
                                  value_range=[edges[0], edges[-1]], frame=layer.get("frame", 0),
                                  layout=self._session.layout(name, calls[call]))  # fmt: skip
        self._publish(self._view.with_(channel=payload))

    def _step_class(self) -> None:
        if self._session.class_kind is None:
            return
        score = self._session.class_score(self._session.default_class(self.selected_class))
        self._view = self._view.with_(scene=replace(self._view.scene, class_score=score))
        self._class_score = dict(score or {})

    def _step_gradcam(self) -> None:
        layer, name = self._view.layer or {}, self.selected_module
        if self.overlay != "gradcam" or not name:
            self._publish(self._view.with_(gradcam=None))
            return
        cls = self._session.default_class(self.selected_class)
        cams = {}
        if layer.get("kind") == "maps":
            hooked = list(self.hooked_modules)
            cams = self._session.grad_cams(hooked, cls, self.gradcam_region or None)
        if name not in cams:
            raise LayerScopeError(f"Grad-CAM needs a spatial map; {name} has none")
        g = cams[name]
        label = class_label(self.class_names, cls)
        key = ("gradcam", name, cls, label, g.score, g.pixels, self._bins)
        payload = self._memo.get_or_make(key, (g.cam, g.gradient), lambda: gradcam_payload(
            name, cls, label, g.cam, g.gradient, score=g.score, pixels=g.pixels, bins=self._bins
        ))  # fmt: skip
        self._publish(self._view.with_(gradcam=payload))
        self._check_budget()

    def _step_ablation(self) -> None:
        payload = self._session.ablate(dict(self.ablations)) if self.ablations else None
        self._view = self._view.with_(ablation=payload)
        self._ablation = dict(payload or {})

    def _step_importance(self) -> None:
        layer, name = self._view.layer or {}, self.selected_module
        payload = None
        if self.show_importance and name and layer.get("kind") in ("maps", "vector"):
            cls = self._session.default_class(self.selected_class)
            payload = self._session.importance(name, cls, layer.get("call", 0))
        self._view = self._view.with_(importance=payload)
        self._importance = dict(payload or {})

    def _check_budget(self) -> None:
        """The selected module's output is the one thing held outside the model's budget, and
        only when the store could not keep it: say so."""
        if self._selected is None or self._session.holds(self._selected[0]):
            return
        held = sum(x.numel() * x.element_size() for c in self._selected[1] for x in iter_tensors(c))
        if held:
            warnings.warn(
                f"LayerScope: the selected module {self._selected[0]}'s output ({held:,} bytes) "
                "is held by the Explorer beyond the memory budget of the model's store "
                f"({self._session.capturer.memory_budget:,} bytes); raise memory_budget to "
                "keep it in the cache",
                ResourceWarning,
                stacklevel=2,
            )
