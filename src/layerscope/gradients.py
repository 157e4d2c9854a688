"""Grad-CAM at any module, for a chosen class: one forward and one backward pass, hooks removed
and the model left as it was found, exactly as for forward captures.

The target is the class's score summed over the pixels predicted as that class (a segmentation
model) or over a region given as a boolean mask, or the class's logit (a classifier). Grad-CAM
weights each channel of the module's output by its mean gradient and keeps the positive part of
the weighted sum (Selvaraju et al., 2017)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .capture import resolve_modules
from .errors import CaptureError, LayerScopeError
from .nested import first_tensor, map_tensors
from .safety import as_args, forward_failed, model_kept_as_found, prepare_inputs

__all__ = ["GradCam", "grad_cam"]


@dataclass(frozen=True)
class GradCam:
    """``cam`` (H, W) at the module's resolution, ``activation`` and ``gradient`` (C, H, W),
    ``weights`` (C,) and the target ``score`` that was differentiated."""

    module: str
    target_class: int
    cam: torch.Tensor
    activation: torch.Tensor
    gradient: torch.Tensor
    weights: torch.Tensor
    score: float
    pixels: int


def grad_cam(
    model: nn.Module,
    inputs: Any,
    module: str,
    target_class: int,
    *,
    region: torch.Tensor | None = None,
    call: int = 0,
) -> GradCam:
    """Grad-CAM of ``target_class`` at ``module`` (its ``call``-th call).

    ``region``: an (H, W) boolean mask over the model's output pixels; the score is summed
    there instead of over the pixels predicted as the class (segmentation models only)."""
    named = dict(model.named_modules())
    (name,) = resolve_modules(model, [module], named)
    args = prepare_inputs(model, named, as_args(inputs))
    kept: list[torch.Tensor] = []
    seen = [0]

    def hook(_m: nn.Module, _a: Any, out: Any) -> Any:
        seen[0] += 1
        if seen[0] - 1 != call:
            return None
        t = first_tensor(out)
        if t is None or t.dim() != 4:
            raise LayerScopeError(f"Grad-CAM needs a (N, C, H, W) map; {name} gives {type(out)}")
        kept.append(t)
        # Downstream gets a copy, so in-place ops after the module (ResNet's ReLU) cannot
        # rewrite the tensor whose gradient is asked for.
        return map_tensors(out, lambda x: x.clone() if x is t else x)

    handle = named[name].register_forward_hook(hook)
    try:
        with model_kept_as_found(model, train=False, grad=True):
            try:
                output = model(*args)
            except LayerScopeError:
                raise
            except Exception as exc:
                raise CaptureError(forward_failed(model, args, exc)) from exc
            if not kept:
                raise LayerScopeError(
                    f"{name} ran {seen[0]} time(s) in this forward: no call {call}"
                )
            score, pixels = _target(first_tensor(output), target_class, region)
            (gradient,) = torch.autograd.grad(score, kept[0])
    finally:
        handle.remove()
    activation = kept[0].detach()[0]
    gradient = gradient.detach()[0]
    weights = gradient.mean(dim=(1, 2))
    cam = torch.relu((weights[:, None, None] * activation).sum(0))
    return GradCam(
        name, target_class, cam, activation, gradient, weights, float(score.detach()), pixels
    )


def _target(
    logits: torch.Tensor | None, cls: int, region: torch.Tensor | None
) -> tuple[torch.Tensor, int]:
    if logits is None or logits.dim() not in (2, 4):
        raise LayerScopeError("Grad-CAM needs class scores: an (N, K) or (N, K, H, W) output")
    k = logits.shape[1]
    if not 0 <= cls < k:
        raise LayerScopeError(f"class {cls} is out of range: the model has {k} classes")
    if logits.dim() == 2:
        if region is not None:
            raise LayerScopeError("a region needs a segmentation output (N, K, H, W)")
        return logits[0, cls], 1
    if region is None:
        mask = logits[0].argmax(0) == cls
        if not bool(mask.any()):
            raise LayerScopeError(
                f"no pixel is predicted as class {cls}: pick a class from the legend or draw "
                "a region on the image"
            )
    else:
        mask = region.to(device=logits.device, dtype=torch.bool)
        if mask.shape != logits.shape[-2:]:
            raise LayerScopeError(
                f"region is {tuple(mask.shape)}, output is {tuple(logits.shape[-2:])}"
            )
        if not bool(mask.any()):
            raise LayerScopeError("the region is empty: draw it over the image")
    return (logits[0, cls] * mask).sum(), int(mask.sum())
