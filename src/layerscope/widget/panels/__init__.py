"""The Explorer's panels, one module each, registered in one list.

The Explorer runs them as steps, in an order derived from what each declares it depends on
(:func:`~layerscope.widget.steps.plan`): a change of a trait runs the panels that take it as
an input and every panel after them; all their payloads go out in one message; each has its
own error. To add a panel: subclass :class:`Panel` in a module of its own and add the class
to ``REGISTRY`` (here, or with :func:`register`), or pass ``Explorer(panels=[...])``."""

from __future__ import annotations

from ...errors import ArgumentError
from .ablation import AblationPanel
from .base import Context, Panel
from .channel import ChannelPanel
from .concepts import ConceptsPanel
from .dataset import DatasetPanel
from .featurevis import FeaturevisPanel
from .gradcam import GradcamPanel
from .graph import GraphPanel
from .hooks import HooksPanel
from .image import ImagePanel
from .importance import ImportancePanel
from .layer import LayerPanel
from .prediction import ClassPanel

__all__ = ["Context", "Panel", "REGISTRY", "register"]

REGISTRY: list[type[Panel]] = [
    ImagePanel,
    HooksPanel,
    LayerPanel,
    ChannelPanel,
    ClassPanel,
    GradcamPanel,
    AblationPanel,
    ImportancePanel,
    DatasetPanel,
    FeaturevisPanel,
    ConceptsPanel,
    GraphPanel,
]


def register(panel: type[Panel]) -> type[Panel]:
    """Add a panel to every Explorer made from now on (usable as a class decorator)."""
    if any(p.name == panel.name for p in REGISTRY):
        raise ArgumentError(f"a panel named {panel.name!r} is registered already")
    REGISTRY.append(panel)
    return panel
