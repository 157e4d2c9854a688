"""The Explorer's Dataset panel: a sweep over many images for the widget's model, the selected
channel's top images and the channels' statistics, and opening an example (its image becomes the
Explorer's, with the unit marked). A mixin of :class:`~layerscope.widget.explorer.Explorer`:
the payloads are :mod:`~layerscope.widget.dataset_view`'s, the step runs in the Explorer's
:class:`~layerscope.widget.steps.Steps`."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

from ..dataset import Sweep
from ..dataset import sweep as run_sweep
from ..dataset.format import model_fingerprint
from ..errors import LayerScopeError, NotReadyError
from .dataset_view import CropCache, dataset_payload, example, unit_mark

__all__ = ["DatasetPanel"]


class DatasetPanel:
    """What the Explorer adds for dataset sweeps (it provides the traits and the steps)."""

    _sweep: Sweep | None
    _crops: CropCache
    # Provided by the Explorer:
    model: Any
    hooked_modules: Any
    selected_module: Any
    selected_channel: Any
    _session: Any
    _steps: Any
    _view: Any
    _image: Any
    _dataset: Any
    _unit_mark: Any
    _set_status: Callable[[dict[str, Any]], None]
    _show_image: Callable[[Any, str], None]
    on_msg: Callable[..., None]

    def _init_dataset(self, sweep: Sweep | None) -> None:
        if sweep is not None and not isinstance(sweep, Sweep):
            raise LayerScopeError(
                f"sweep= takes a layerscope.Sweep (from layerscope.sweep or Sweep.load), got "
                f"{type(sweep).__name__}"
            )
        self._sweep, self._crops = sweep, CropCache()  # checked once the model is known
        self.on_msg(self._on_dataset_msg)

    @property
    def dataset_sweep(self) -> Sweep | None:
        """The sweep the Dataset panel shows (None before one is given or run)."""
        return self._sweep

    @dataset_sweep.setter
    def dataset_sweep(self, value: Sweep | None) -> None:
        self._use_sweep(value)

    def _use_sweep(self, value: Sweep | None) -> None:
        if value is not None and not isinstance(value, Sweep):
            raise LayerScopeError(
                f"dataset_sweep takes a layerscope.Sweep, got {type(value).__name__}"
            )
        self._check_sweep_model(value)
        self._sweep = value
        self._steps.mark("dataset")
        self._steps.run()

    def _check_sweep_model(self, sweep: Sweep | None) -> None:
        """Refuse a sweep of other weights: its scores and units would be marked on maps this
        model computes, where they do not hold."""
        if sweep is None or sweep.fingerprint == model_fingerprint(self.model):
            return
        raise LayerScopeError(
            "this sweep was made with another model (its weights fingerprint "
            f"{sweep.fingerprint[:12]}... is not this model's): its examples and scores would not "
            "match what this Explorer shows. Sweep this model (explorer.sweep(images)), or give "
            "the Explorer the model the sweep was made with"
        )

    def sweep(self, images: Any, modules: list[str] | None = None, **options: Any) -> Sweep:
        """Run a dataset sweep (:func:`layerscope.sweep`) for this model over ``images``: the
        hooked modules (or ``modules``), with the Explorer's preprocessing unless ``preprocess=``
        is given, progress in the widget. The Dataset panel then shows the selected channel's
        top images; the sweep is returned (``sweep.save(path)`` keeps it)."""
        names = list(modules or self.hooked_modules)
        if not names:
            raise NotReadyError("no module to sweep: hook one first, or pass modules=[...]")
        options.setdefault("preprocess", self._session.preprocess)
        if "progress" not in options:
            status = self._set_status

            def progress(done: int, total: int) -> None:
                status({"state": "running", "done": done, "total": total, "unit": "images",
                        "label": "dataset sweep"})  # fmt: skip

            options["progress"] = progress
        try:
            result = run_sweep(self.model, images, names, **options)
        finally:
            self._set_status({"state": "idle"})
        self._use_sweep(result)
        return result

    def show_example(self, rank: int) -> None:
        """Open example ``rank`` (0: the best) of the Dataset panel: its image becomes the
        Explorer's, the module and channel stay, and the unit is marked on the image (like
        clicking the patch)."""
        module, channel = self.selected_module, self.selected_channel
        if self._sweep is None:
            raise NotReadyError("no dataset sweep: explorer.sweep(images) runs one")
        ex = example(self._sweep, module, channel, rank)
        image = self._sweep.original(ex.index)
        self._show_image(image, str(ex.source))
        self._steps.run()
        if self.selected_module == module and self.selected_channel != channel:
            self.selected_channel = channel
        mark = unit_mark(self._sweep, module, channel, rank, self._image["size"])
        self._view = self._view.with_(unit=mark)
        self._unit_mark = dict(mark)

    def _on_dataset_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if not isinstance(content, dict) or content.get("kind") != "show-example":
            return
        try:
            self.show_example(int(content.get("rank", -1)))
        except Exception as exc:  # shown in the widget like any other action's error
            self._steps.last_traceback = traceback.format_exc()
            self._steps.fail("dataset", f"{type(exc).__name__}: {exc}", clear=False)

    def _step_dataset(self) -> None:
        layer, name = self._view.layer or {}, self.selected_module
        payload = None
        if self._sweep is not None and name and layer.get("kind") in ("maps", "vector"):
            payload = dataset_payload(self._sweep, name, self.selected_channel, self._crops)
        self._view = self._view.with_(dataset=payload)
        self._dataset = dict(payload or {})
