"""The Explorer's methods that act through one panel: the Dataset panel's sweep, the feature
visualization, the Concepts panel's dissection. Each holds the core's lock (a click may be
running on a kernel subshell's thread meanwhile) and asks the panel; the Explorer inherits them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from ..dataset import Sweep
from ..dissect import Dissection
from ..errors import NotReadyError
from ..featurevis import FeatureVis
from .panels.base import Panel
from .panels.concepts import ConceptsPanel
from .panels.dataset import DatasetPanel
from .panels.featurevis import FeaturevisPanel

if TYPE_CHECKING:
    from torch import nn

    from .core import Core
    from .steps import Steps

__all__ = ["PanelMethods"]

P = TypeVar("P", bound=Panel)


class PanelMethods:
    model: nn.Module
    _panels: dict[str, Panel]
    _ctx: Core
    _steps: Steps

    def _panel(self, kind: type[P]) -> P:
        found = [p for p in self._panels.values() if isinstance(p, kind)]
        if not found:
            raise NotReadyError(f"this Explorer has no {kind.name} panel (see panels=)")
        return found[0]

    def _show(self, panel: Panel) -> None:
        self._steps.mark(panel.name)
        self._steps.run()

    # -- the Dataset panel -----------------------------------------------------------------------

    @property
    def dataset_sweep(self) -> Sweep | None:
        """The sweep the Dataset panel shows (None before one is given or run)."""
        return self._panel(DatasetPanel).sweep

    @dataset_sweep.setter
    def dataset_sweep(self, value: Sweep | None) -> None:
        panel = self._panel(DatasetPanel)
        with self._ctx.lock:
            panel.use(self.model, value)
            self._show(panel)

    def sweep(self, images: Any, modules: list[str] | None = None, **options: Any) -> Sweep:
        """Run a dataset sweep (:func:`layerscope.sweep`) for this model over ``images``: the
        hooked modules (or ``modules``), with the Explorer's preprocessing unless ``preprocess=``
        is given, progress in the widget. The Dataset panel then shows the selected channel's
        top images; the sweep is returned (``sweep.save(path)`` keeps it)."""
        with self._ctx.lock:
            result = self._panel(DatasetPanel).run_sweep(self._ctx, images, modules, options)
        self.dataset_sweep = result
        return result

    def show_example(self, rank: int) -> None:
        """Open example ``rank`` (0: the best) of the Dataset panel: its image becomes the
        Explorer's, the module and channel stay, and the unit is marked on the image (like
        clicking the patch)."""
        with self._ctx.lock:
            self._panel(DatasetPanel).show_example(self._ctx, rank)

    # -- feature visualization -------------------------------------------------------------------

    def visualize(
        self, channel: int | None = None, module: str | None = None, **options: Any
    ) -> FeatureVis:
        """The feature visualization (:func:`layerscope.visualize`) of the selected channel (or
        ``channel`` of ``module``), run to the end now with progress in the widget and shown
        beside the channel's top dataset patches. ``options`` (``steps``, ``size``, ``param``,
        ``seed``, ...) are kept for the Visualize button too (defaults: 128 steps at 224 px)."""
        with self._ctx.lock:
            return self._panel(FeaturevisPanel).visualize(self._ctx, channel, module, options)

    # -- the Concepts panel ----------------------------------------------------------------------

    @property
    def dissection(self) -> Dissection | None:
        """The dissection the Concepts panel shows (None before one is given or run)."""
        return self._panel(ConceptsPanel).dissection

    @dissection.setter
    def dissection(self, value: Dissection | None) -> None:
        panel = self._panel(ConceptsPanel)
        with self._ctx.lock:
            panel.use(self.model, value)
            if value is None or self._ctx.selected_concept not in value.concepts:
                self._ctx.quietly(selected_concept="")  # a name of the dissection before
            self._show(panel)  # its run redraws every view: the card and tiles name units

    def dissect(
        self, images: Any, masks: Any, modules: list[str] | None = None, **options: Any
    ) -> Dissection:
        """Run a dissection (:func:`layerscope.dissect`) of this model's hooked modules (or
        ``modules``) over ``images`` against ``masks``, with the Explorer's preprocessing
        unless ``preprocess=`` is given, progress in the widget. The Concepts panel then names
        the units; the dissection is returned (``d.save(path)`` keeps it)."""
        with self._ctx.lock:
            result = self._panel(ConceptsPanel).run(self._ctx, images, masks, modules, options)
        self.dissection = result
        return result
