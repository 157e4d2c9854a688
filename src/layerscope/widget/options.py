"""The Explorer's constructor arguments: rejected with a hint when unknown, and turned into a
model, its preprocessing, class names and the notice the widget shows."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..errors import ArgumentTypeError, LayerScopeError, close_matches
from ..models import PRESETS, PretrainedWeightsUnavailable, load_preset
from ..outputs import model_class_names
from ..preprocess import Preprocess

__all__ = ["check_options", "resolve_model"]


def check_options(
    options: dict[str, Any], traits: tuple[str, ...], arguments: tuple[str, ...]
) -> None:
    """Reject keyword arguments that are neither the Explorer's own nor a public trait, with
    the closest name."""
    unknown = sorted(set(options) - set(traits))
    if not unknown:
        return
    known = sorted({*traits, *arguments})
    hints = []
    for u in unknown:
        near = close_matches(u, known, limit=1)
        hints.append(f"{u!r}" + (f" (did you mean {near[0]!r}?)" if near else ""))
    raise ArgumentTypeError(
        f"Explorer got unknown argument(s): {', '.join(hints)}; accepted: {', '.join(known)}"
    )


def resolve_model(
    model: str | nn.Module | None,
    *,
    weights: Any,
    device: str | torch.device | None,
    preprocess: Preprocess | Callable[[Any], Any] | None,
    class_names: list[str] | None,
    image_size: int | None,
) -> tuple[nn.Module, Preprocess | Callable[[Any], Any], list[str], str, str]:
    """(model, preprocess, class names, notice, title) for a preset name, None (the default
    DeepLabV3-ResNet50) or a user's own module."""
    notice, title = "", ""
    if model is None or isinstance(model, str):
        name = model or "deeplabv3_resnet50"
        if name not in PRESETS:
            raise LayerScopeError(
                f"no preset named {name!r}; did you mean "
                f"{', '.join(close_matches(name, PRESETS) or sorted(PRESETS))}?"
            )
        with warnings.catch_warnings():
            # The widget shows the notice itself: one readable message, not a second warning.
            warnings.simplefilter("ignore", PretrainedWeightsUnavailable)
            preset = load_preset(name, weights=weights, device=device)
        model, class_names = preset.model, class_names or preset.class_names
        preprocess = preprocess or preset.preprocess
        notice, title = preset.notice or "", f"{name} ({preset.weights_source})"
    elif not isinstance(model, nn.Module):
        raise ArgumentTypeError(f"model must be an nn.Module or a preset name, got {type(model)}")
    else:
        title = type(model).__name__
        class_names = class_names or model_class_names(model)  # a Hugging Face config's labels
        if device is not None:
            model.to(device)
    if preprocess is None:
        preprocess = Preprocess(resize=None)
    if image_size is not None:
        if not isinstance(preprocess, Preprocess):
            raise ArgumentTypeError(
                "image_size needs a layerscope Preprocess, not a custom callable"
            )
        preprocess = preprocess.with_size(image_size)
    return model, preprocess, list(class_names or []), notice, title
