"""The Explorer's Python tools beyond the clicks: Grad-CAM, comparisons, figures and the HTML
export. A mixin, so the controller in explorer.py stays about the widget's state."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from .attribution import explorer_grad_cam
from .compare import Comparison, compare_images, compare_models
from .errors import LayerScopeError
from .gradients import GradCam
from .preprocess import Preprocess

if TYPE_CHECKING:
    from .explorer import Explorer

__all__ = ["ExplorerTools"]


class ExplorerTools:
    """Methods of :class:`~layerscope.Explorer` that read its state and build something."""

    def grad_cam(
        self: Explorer,
        module: str | None = None,
        target_class: int | None = None,
        region: list[float] | None = None,
    ) -> GradCam:
        """Grad-CAM at ``module`` (default: the selected one) for ``target_class`` (default:
        the class picked in the legend, else the largest predicted one), summed over the
        class's predicted pixels or over ``region``, an image-pixel box (y0, x0, y1, x1)."""
        return explorer_grad_cam(self, module, target_class, region)

    def compare(
        self: Explorer,
        image: Any = None,
        model: nn.Module | None = None,
        module: str | None = None,
        channel: int | str | None = None,
    ) -> Comparison:
        """The selected module's selected channel (or ``channel``; ``"aggregate"`` for the
        aggregate map) for this image against ``image``, or through this model against
        ``model``. Returns a :class:`~layerscope.compare.Comparison`; ``.figure()`` draws A, B
        and A - B on shared scales."""
        name = module or self.selected_module
        if not name:
            raise LayerScopeError("no module selected: hook one, or pass module=")
        if channel == "aggregate":
            ch = None
        elif channel is None:
            ch = self.selected_channel if name == self.selected_module else None
        else:
            ch = int(channel)
        if (image is None) == (model is None):
            raise LayerScopeError("pass either image= (another image) or model= (another model)")
        if image is not None:
            return compare_images(
                self.model,
                self.prepared.image,
                image,
                name,
                preprocess=self._fixed_size_preprocess(),
                channel=ch,
                aggregate=self.aggregate,
                labels=(self.image_name or "this image", "other image"),
            )
        return compare_models(
            self.model,
            model,
            self.prepared.image,
            name,
            preprocess=self._preprocess,
            channel=ch,
            aggregate=self.aggregate,
            labels=("this model", "other model"),
        )

    def _fixed_size_preprocess(self: Explorer) -> Any:
        """This explorer's preprocessing with both sides fixed, so two images line up."""
        pre = self._preprocess
        if isinstance(pre, Preprocess) and not pre.crop:
            h, w = self.prepared.geometry.input_size
            return Preprocess(resize=(h, w), mean=pre.mean, std=pre.std)
        return pre

    def to_html(self: Explorer, path: str | Path) -> Path:
        """Write a single self-contained HTML file (plotly.js inlined, no network needed) with
        the image, the prediction and every hooked module's views, still interactive."""
        from .export import explorer_html

        return explorer_html(self, path)

    def figure(self: Explorer, view: str = "overlay") -> Any:
        """The shown view as a ``plotly.graph_objects.Figure``: ``"overlay"``, ``"channel"``,
        ``"aggregate"``, ``"grid"``, ``"histogram"``, ``"mask"`` or ``"score"``."""
        from .figures import build_figure

        return build_figure(self, view)
