"""LayerScope: look inside a PyTorch model while it runs.

>>> import layerscope
>>> acts = layerscope.capture(model, x, ["backbone.layer1", "backbone.layer4"])
"""

from .activations import Activations, MemoryReport
from .capture import Capturer, capture, resolve_modules
from .compare import Comparison, compare_images, compare_models
from .dataset import Sweep, sweep
from .edits import Ablate, Patch, Scale
from .errors import CaptureError, ImageError, LayerScopeError, UnknownModuleError
from .gradients import GradCam, grad_cam, grad_cams
from .images import load_image, sample_image
from .importance import ChannelImportance, channel_importance
from .intervene import Intervention, intervene
from .models import Preset, load_preset
from .nested import Dropped
from .preprocess import PreparedImage, Preprocess, prepare_image
from .receptive import ReceptiveField, receptive_fields
from .spatial import Layout
from .store import DEFAULT_MEMORY_BUDGET
from .tree import module_tree
from .widget import Explorer, ViewState

__all__ = [
    "Ablate",
    "Activations",
    "CaptureError",
    "Comparison",
    "Capturer",
    "ChannelImportance",
    "DEFAULT_MEMORY_BUDGET",
    "Dropped",
    "Explorer",
    "GradCam",
    "ImageError",
    "Intervention",
    "Layout",
    "LayerScopeError",
    "MemoryReport",
    "Patch",
    "PreparedImage",
    "Preprocess",
    "Preset",
    "ReceptiveField",
    "Sweep",
    "Scale",
    "UnknownModuleError",
    "ViewState",
    "capture",
    "channel_importance",
    "compare_images",
    "compare_models",
    "grad_cam",
    "grad_cams",
    "intervene",
    "load_image",
    "load_preset",
    "module_tree",
    "prepare_image",
    "receptive_fields",
    "resolve_modules",
    "sample_image",
    "sweep",
]

__version__ = "0.1.0"
