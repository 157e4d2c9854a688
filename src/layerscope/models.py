"""Model presets: torchvision's DeepLabV3 family (the flagship), FCN, LR-ASPP, ResNet and ViT
classifiers, each with its own preprocessing and class names.

Pretrained weights come through torchvision's own download and cache. When they cannot be had
(no network, no cache), the preset falls back to random weights, warns, and says so in
``Preset.notice`` so the widget can show it."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torchvision.models as tvm
from torch import nn
from torchvision.models import segmentation as seg

from .errors import LayerScopeError, close_matches
from .preprocess import Preprocess

__all__ = [
    "Preset",
    "load_preset",
    "PRESETS",
    "PretrainedWeightsUnavailable",
    "torchvision_class_names",
]


@dataclass(frozen=True)
class _Spec:
    builder: Callable[..., nn.Module]
    weights: Any  # the torchvision weights enum: transforms and class names, offline
    task: str
    random_kwargs: tuple[tuple[str, Any], ...] = ()  # so random models have the pretrained tree


_SEG = (("weights_backbone", None), ("aux_loss", True))
PRESETS: dict[str, _Spec] = {
    "deeplabv3_resnet50": _Spec(
        seg.deeplabv3_resnet50, seg.DeepLabV3_ResNet50_Weights, "segmentation", _SEG
    ),
    "deeplabv3_resnet101": _Spec(
        seg.deeplabv3_resnet101, seg.DeepLabV3_ResNet101_Weights, "segmentation", _SEG
    ),
    "deeplabv3_mobilenet_v3_large": _Spec(
        seg.deeplabv3_mobilenet_v3_large,
        seg.DeepLabV3_MobileNet_V3_Large_Weights,
        "segmentation",
        _SEG,
    ),
    "fcn_resnet50": _Spec(seg.fcn_resnet50, seg.FCN_ResNet50_Weights, "segmentation", _SEG),
    "lraspp_mobilenet_v3_large": _Spec(
        seg.lraspp_mobilenet_v3_large,
        seg.LRASPP_MobileNet_V3_Large_Weights,
        "segmentation",
        (("weights_backbone", None),),
    ),
    "resnet18": _Spec(tvm.resnet18, tvm.ResNet18_Weights, "classification"),
    "resnet50": _Spec(tvm.resnet50, tvm.ResNet50_Weights, "classification"),
    "vit_b_16": _Spec(tvm.vit_b_16, tvm.ViT_B_16_Weights, "classification"),
}


class PretrainedWeightsUnavailable(UserWarning):
    """Pretrained weights could not be loaded; the model has random weights."""


@dataclass
class Preset:
    """A ready model: ``model`` (in eval mode), its ``preprocess``, ``class_names``, and
    whether its weights are ``pretrained``. ``notice`` explains random weights, else None."""

    name: str
    model: nn.Module
    preprocess: Preprocess
    class_names: list[str]
    pretrained: bool
    weights_source: str
    notice: str | None = None
    task: str = "segmentation"


def load_preset(
    name: str = "deeplabv3_resnet50",
    *,
    weights: Any = "DEFAULT",
    weights_backbone: Any = None,
    device: str | torch.device | None = None,
) -> Preset:
    """Build a preset model.

    ``weights``: ``"DEFAULT"`` (pretrained through torchvision's cache or download, random with
    a warning when that fails), ``None`` (random weights, no download), a torchvision weights
    enum member, or a path to a local state-dict file (loaded with ``weights_only=True``).
    ``weights_backbone`` only matters with ``weights=None``; the default builds no backbone
    weights, so nothing is downloaded. The environment variable ``LAYERSCOPE_WEIGHTS=none``
    turns the default into ``None``, and ``LAYERSCOPE_IMAGE_SIZE=N`` resizes to ``N`` instead of
    520 (the test suite runs the notebooks that way)."""
    if str(weights) == "DEFAULT" and os.environ.get("LAYERSCOPE_WEIGHTS") == "none":
        weights = None  # tests and CI: never download, whatever a notebook asks for
    if name not in PRESETS:
        hint = close_matches(name, PRESETS) or sorted(PRESETS)
        raise LayerScopeError(f"no preset named {name!r}; did you mean {', '.join(hint)}?")
    spec = PRESETS[name]
    builder, meta = spec.builder, spec.weights.DEFAULT
    preprocess = Preprocess.from_transforms(meta.transforms())
    if os.environ.get("LAYERSCOPE_IMAGE_SIZE"):  # tests and CI: small inputs, quick forwards
        preprocess = preprocess.with_size(int(os.environ["LAYERSCOPE_IMAGE_SIZE"]))
    class_names = list(meta.meta["categories"])

    def random_model() -> nn.Module:
        kwargs = dict(spec.random_kwargs)
        if "weights_backbone" in kwargs:
            kwargs["weights_backbone"] = weights_backbone
        return builder(weights=None, **kwargs)

    notice = None
    if weights is None:
        model, pretrained, source = random_model(), False, "random (weights=None)"
        notice = "Random weights (weights=None): maps show the architecture, not learned features."
    elif isinstance(weights, (str, Path)) and str(weights) != "DEFAULT":
        model = _from_file(random_model(), Path(weights))
        pretrained, source = True, f"file {weights}"
    else:
        chosen = meta if str(weights) == "DEFAULT" else weights
        try:
            model, pretrained, source = builder(weights=chosen), True, f"torchvision {chosen}"
        except Exception as exc:  # network, cache or checksum failures all end here
            model, pretrained, source = random_model(), False, "random (download failed)"
            notice = (
                f"Pretrained weights for {name} could not be loaded ({type(exc).__name__}: "
                f"{exc}). Using RANDOM weights: maps show the architecture, not learned features. "
                "Run once with network access (torchvision caches them in ~/.cache/torch) or "
                "pass weights='path/to/weights.pth'."
            )
            warnings.warn(notice, PretrainedWeightsUnavailable, stacklevel=2)
    model.eval()
    if device is not None:
        model.to(device)
    return Preset(name, model, preprocess, class_names, pretrained, source, notice, spec.task)


def _from_file(model: nn.Module, path: Path) -> nn.Module:
    if not path.is_file():
        raise LayerScopeError(f"no weights file at {str(path)!r}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise LayerScopeError(
            f"could not read {str(path)!r} as a state dict with weights_only=True ({exc}); "
            "save it with torch.save(model.state_dict(), path)"
        ) from exc
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if getattr(model, "aux_classifier", None) is not None and not any(
        k.startswith("aux_classifier.") for k in state
    ):
        # Dropped as torchvision does without aux weights; Module.__setattr__'s stub takes only
        # a Tensor or a Module, so None (which torch accepts) needs the ignore.
        model.aux_classifier = None  # type: ignore[assignment]
    try:
        result = model.load_state_dict(state, strict=False)
        problems = [f"missing {result.missing_keys[:5]}"] if result.missing_keys else []
        if result.unexpected_keys:
            problems.append(f"unexpected {result.unexpected_keys[:5]}")
    except RuntimeError as exc:  # shape mismatches
        problems = [str(exc).splitlines()[1].strip() if "\n" in str(exc) else str(exc)]
    if problems:
        raise LayerScopeError(
            f"{str(path)!r} does not fit this model ({'; '.join(problems)}): "
            "is it for another architecture or preset?"
        )
    return model


def torchvision_class_names(model: nn.Module, classes: int) -> list[str] | None:
    """Class names for a torchvision model passed as itself rather than as a preset: a
    segmentation model with 21 classes has those of torchvision's segmentation weights (VOC's
    categories), with another count ``class 0``, ``class 1``, ...; a classifier with 1000
    classes has ImageNet's. None for any other model: its output is not taken for classes."""
    origin = type(model).__module__
    if origin.startswith("torchvision.models.segmentation"):
        voc = list(seg.DeepLabV3_ResNet50_Weights.DEFAULT.meta["categories"])
        return voc if classes == len(voc) else [f"class {i}" for i in range(classes)]
    if origin.startswith("torchvision.models.") and classes == 1000:
        return list(tvm.ResNet50_Weights.DEFAULT.meta["categories"])
    return None
