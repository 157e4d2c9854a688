"""The widget side: the view-state data model, the payload schema and its serializer, the
figures and the HTML export drawn from view-states, and the Explorer that publishes them.
Analysis (capture, receptive fields, gradients, reductions) never imports from here."""

from .explorer import Explorer
from .traits import LayerScopeWidget
from .viewstate import Scene, ViewOptions, ViewState

__all__ = ["Explorer", "LayerScopeWidget", "Scene", "ViewOptions", "ViewState"]
