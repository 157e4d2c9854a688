"""LayerScope: look inside a PyTorch model while it runs.

>>> import layerscope
>>> acts = layerscope.capture(model, x, ["backbone.layer1", "backbone.layer4"])

``__all__`` is what users call. Helpers stay importable from their modules
(``from layerscope.capture import resolve_modules``). The widget stack (anywidget, ipywidgets,
plotly) is imported on first use of :class:`Explorer`, so a capture, a sweep or a Ray worker
never loads it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .activations import Activations
from .capture import Capturer, capture
from .compare import Comparison, compare_images, compare_models
from .dataset import Sweep, sweep
from .dissect import AblationEffect, Concept, Dissection, ablation_effect, dissect
from .edits import Ablate, Patch, Scale
from .errors import (
    ArgumentError,
    CaptureError,
    ImageError,
    LayerScopeError,
    NotReadyError,
    UnknownModuleError,
)
from .featurevis import FeatureVis, visualize
from .gradients import BatchGradCam, GradCam, grad_cam, grad_cams
from .graph import ModuleGraph, module_graph
from .images import load_image, sample_image
from .importance import ChannelImportance, channel_importance
from .intervene import Intervention, intervene
from .models import Preset, load_preset
from .preprocess import Preprocess, prepare_image
from .receptive import ReceptiveField, receptive_fields
from .tree import module_tree

if TYPE_CHECKING:
    from .widget.explorer import Explorer

__all__ = [
    # capture
    "capture",
    "Capturer",
    "Activations",
    "module_tree",
    "module_graph",
    "ModuleGraph",
    # the widget
    "Explorer",
    # analyses
    "grad_cam",
    "grad_cams",
    "GradCam",
    "BatchGradCam",
    "channel_importance",
    "ChannelImportance",
    "intervene",
    "Intervention",
    "Ablate",
    "Scale",
    "Patch",
    "compare_images",
    "compare_models",
    "Comparison",
    "receptive_fields",
    "ReceptiveField",
    "visualize",
    "FeatureVis",
    # dataset sweeps
    "sweep",
    "Sweep",
    # dissection
    "dissect",
    "Dissection",
    "Concept",
    "ablation_effect",
    "AblationEffect",
    # models and images
    "load_preset",
    "Preset",
    "Preprocess",
    "prepare_image",
    "load_image",
    "sample_image",
    # errors
    "LayerScopeError",
    "ArgumentError",
    "NotReadyError",
    "UnknownModuleError",
    "CaptureError",
    "ImageError",
]

__version__ = "0.1.0"

# Names served on first access (PEP 562): name -> the module that defines it.
_LAZY = {"Explorer": ".widget.explorer"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later accesses skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
