"""The Explorer's constructor arguments: rejected with a hint when unknown, and turned into a
model, its preprocessing, class names and the notice the widget shows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .errors import LayerScopeError, close_matches
from .models import PRESETS, load_preset
from .preprocess import Preprocess

__all__ = ["check_options", "resolve_model", "OPTIONS"]

# Traits that may be given to the constructor, besides its named arguments.
OPTIONS = {
    "selected_module",
    "selected_channel",
    "selected_call",
    "selected_frame",
    "aggregate",
    "overlay",
    "overlay_opacity",
    "colorscale",
    "selected_class",
    "layout",
}
_ARGUMENTS = {
    "preprocess",
    "device",
    "class_names",
    "hooked_modules",
    "weights",
    "image_size",
    "memory_budget",
    "topk",
    "bins",
}


def check_options(options: dict[str, Any]) -> None:
    unknown = sorted(set(options) - OPTIONS)
    if not unknown:
        return
    known = sorted(OPTIONS | _ARGUMENTS)
    hints = []
    for u in unknown:
        near = close_matches(u, known, limit=1)
        hints.append(f"{u!r}" + (f" (did you mean {near[0]!r}?)" if near else ""))
    raise TypeError(
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
        preset = load_preset(name, weights=weights, device=device)
        model, class_names = preset.model, class_names or preset.class_names
        preprocess = preprocess or preset.preprocess
        notice, title = preset.notice or "", f"{name} ({preset.weights_source})"
    elif not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module or a preset name, got {type(model)}")
    else:
        title = type(model).__name__
        if device is not None:
            model.to(device)
    if preprocess is None:
        preprocess = Preprocess(resize=None)
    if image_size is not None:
        if not isinstance(preprocess, Preprocess):
            raise TypeError("image_size needs a layerscope Preprocess, not a custom callable")
        preprocess = preprocess.with_size(image_size)
    return model, preprocess, list(class_names or []), notice, title
