"""The Explorer: its constructor and its Python API. What it shows are its panels
(:mod:`~layerscope.widget.panels`, one module each, registered in one list); its core
(:class:`~layerscope.widget.core.Core`) runs them as steps when a click or a cell changes a
trait, in the order their declared dependencies give, each with its own error, and what they
publish goes out as one message. The API's methods delegate to the panels; the computing is
the session's; the payloads are the schema's.

Bad values are refused by traitlets validation (each panel checks its own inputs): a Python
assignment raises ``TraitError``; a value from the browser is refused, shown as an error, and
the browser put back in sync."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from ..activations import Activations
from ..capture import resolve_modules
from ..compare import Comparison
from ..dataset import Sweep
from ..dissect import Dissection
from ..errors import ArgumentError, NotReadyError
from ..gradients import GradCam
from ..images import SAMPLE_IMAGES, sample_image
from ..importance import ChannelImportance
from ..preprocess import PreparedImage, Preprocess
from ..receptive import ReceptiveField
from . import panels as registry
from .core import Core
from .export import write_html
from .figures import build_figure
from .options import check_options, resolve_model
from .panel_api import PanelMethods
from .panels.base import Panel
from .panels.channel import compare_maps
from .panels.concepts import ConceptsPanel
from .panels.dataset import DatasetPanel
from .panels.gradcam import explain
from .panels.importance import importance_of
from .session import Session
from .traits import PUBLIC_TRAITS, LayerScopeWidget, payload_trait
from .viewstate import ViewState

__all__ = ["Explorer"]


class Explorer(PanelMethods, LayerScopeWidget):
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
    ``explorer.sweep(images)``); ``dissection``: a :class:`~layerscope.Dissection` of it for the
    Concepts panel (or ``explorer.dissect(images, masks=...)``). ``panels``: the panel classes
    to show (default: ``layerscope.widget.panels.REGISTRY``). Any public trait
    (``selected_channel=...``) may be given too.

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
        dissection: Dissection | None = None,
        panels: Iterable[type[Panel]] | None = None,
        **options: Any,
    ) -> None:
        kinds = list(registry.REGISTRY if panels is None else panels)
        added = {k: v for p in kinds for k, v in p.traits.items()}
        shown = [v for p in kinds for v in p.shown]
        added.update({f"_view_{v}": payload_trait() for v in shown})
        known = LayerScopeWidget.class_traits()
        added.update({k: payload_trait() for p in kinds for k in p.owns  # a panel's payloads
                      if k not in added and k not in known})  # fmt: skip
        own = [p for p in inspect.signature(Explorer.__init__).parameters
               if p not in ("self", "options")]  # fmt: skip
        check_options(options, (*PUBLIC_TRAITS, *(k for k in added if k[0] != "_")), tuple(own))
        DatasetPanel.checked(sweep, "sweep=")  # before the model is loaded
        super().__init__()
        if added:
            self.add_traits(**added)
        self._panels = {p.name: p() for p in kinds}
        if len(self._panels) < len(kinds):
            raise ArgumentError("panels=: two panels have the same name")
        model, preprocess, class_names, self._notice, self._title = resolve_model(
            model, weights=weights, device=device, preprocess=preprocess,
            class_names=class_names, image_size=image_size,
        )  # fmt: skip
        self.model = model
        if sweep is not None:  # checked before any view is drawn from it
            self._panel(DatasetPanel).use(model, sweep, "sweep=")
        if dissection is not None:
            self._panel(ConceptsPanel).use(model, dissection, "dissection=")
        named = dict(model.named_modules())
        resolve_modules(model, list(layouts or {}) or [""], named)
        self._session = s = Session(model, preprocess, class_names, layouts=layouts or {},
                                    memory_budget=memory_budget,
                                    status=lambda v: ctx.status(v))  # fmt: skip
        self._ctx = ctx = Core(self, s, self._panels, title=self._title, notice=self._notice,
                               modules=named, topk=topk, bins=bins)  # fmt: skip
        self._steps = ctx.steps
        self._refused = ctx.refused  # a value from the browser refused: its panel's error
        self._samples = sorted(SAMPLE_IMAGES)
        self._shown_views = shown
        if image is None:
            image, name = sample_image(), "astronaut"
        else:
            name = image if isinstance(image, str) and image in SAMPLE_IMAGES else ""
        ctx.show_image(image, name)  # errors here raise: there is no widget to show them yet
        self.observe(lambda change: ctx.changed(change["name"], change["new"]), ctx.observed())
        if hooked_modules:
            self.hooked_modules = list(hooked_modules)
        for key in sorted(options, key=lambda k: (k != "selected_module", k)):
            setattr(self, key, options[key])
        self._steps.run()

    # -- the Python twins of the clicks ----------------------------------------------------------

    @property
    def view(self) -> ViewState:
        """What the views show now, as data (what ``figure`` and ``to_html`` draw)."""
        return self._ctx.view

    @property
    def errors(self) -> dict[str, str]:
        """The errors shown in the widget, by the panel (step) that raised them."""
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
        with self._ctx.lock:
            self._ctx.show_image(image, name)
            self._steps.run()

    def grad_cam(self, module: str | None = None, target_class: int | None = None,
                 region: list[float] | None = None) -> GradCam:  # fmt: skip
        """Grad-CAM at ``module`` (default: the selected one) for ``target_class`` (default:
        the class picked in the legend, else the largest predicted one), summed over the
        class's predicted pixels or over ``region``, an image-pixel box (y0, x0, y1, x1)."""
        with self._ctx.lock:
            return explain(self._ctx, module, target_class, region)

    def channel_importance(
        self, module: str | None = None, target_class: int | None = None
    ) -> ChannelImportance:
        """What each channel of ``module`` (default: the selected one) does to ``target_class``
        (default: the class the views use): every channel's first-order estimate and the exact
        drop of the largest 16 (:func:`layerscope.channel_importance`). The importance view
        shows the same result: computed once per image, module and class, and shared."""
        with self._ctx.lock:
            return importance_of(self._ctx, module, target_class)

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
        with self._ctx.lock:
            return compare_maps(self._ctx, image, model, module, channel)

    def figure(self, view: str = "image") -> Any:
        """A view as a ``plotly.graph_objects.Figure``, drawn from the same spec the widget
        draws: ``"image"`` (the default: the photo as shown), ``"overlay"``, ``"channel"``,
        ``"aggregate"``, ``"grid"``, ``"histogram"``, ``"mask"``, ``"score"``, ``"vector"``,
        ``"gradcam"``, ``"gradient"``, ``"ablation"``, ``"importance"``, ``"dataset"``,
        ``"graph"``, or a view of a panel of your own."""
        return build_figure(self._panels, self.view, view)

    def to_html(self, path: str | Path) -> Path:
        """Write a single self-contained HTML file (plotly.js inlined, no network needed) with
        the image, the prediction and every hooked module's views, still interactive."""
        modules = [(n, self.view if n == self.selected_module else self._ctx.exported(n))
                   for n in self.hooked_modules]  # fmt: skip
        return write_html(path, self._panels, title=self._title, prediction=self.view,
                          modules=modules,
                          notice=self._notice)  # fmt: skip
