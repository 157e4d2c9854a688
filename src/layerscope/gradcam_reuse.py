"""Grad-CAM at a module whose output LayerScope holds for this input (the widget captured it a
moment ago, when the module was hooked): only what follows the module runs again, with
autograd, from the held output; the modules before it are not run a second time.

The held output is a float32 copy of the module's own, and what follows runs the same
operations on it, so the class score, the gradient and the CAM are those of a full forward and
backward (checked against :func:`~layerscope.grad_cam` in the tests). Where a cached copy
could not stand for the module's own output (an output of several tensors, which may be views
of one another; a module without weights, which may hand back its input; a channels-last
model, whose convolutions round differently on a contiguous copy) the caller runs the full
pass."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .capture import Capturer, resolve_modules
from .errors import LayerScopeError
from .gradients import GradCam, class_score, has_cam_maps, image_cam, target_pixels
from .intervene import capture_storage, reusable, run_edited
from .safety import as_args, prepare_inputs
from .spatial import Layout

__all__ = ["grad_cam_after_capture"]


def grad_cam_after_capture(
    model: nn.Module,
    inputs: Any,
    module: str,
    target_class: int,
    *,
    region: torch.Tensor | None = None,
    layout: Layout | None = None,
) -> GradCam | None:
    """Grad-CAM of ``module``'s first call for one image, running only what follows it from
    its cached output; None when that output is not cached at full precision (or the order of
    the forward is not known yet): then a full forward and backward is the way."""
    named = dict(model.named_modules())
    (name,) = resolve_modules(model, [module], named)
    cap = Capturer(model, storage=capture_storage(model))
    if cap.known_schedule(inputs) is None or not cap.holds(inputs, name):
        return None
    if not _computes_its_output(named[name]) or _channels_last(model):
        return None
    # What stands in, from the cache (a forward until the module only when the modules before
    # it are not held).
    prefix, gated = reusable(cap, inputs, [name])
    held = gated.get(name, [None])[0]
    if not isinstance(held, torch.Tensor) or not has_cam_maps(held, layout):
        return None  # no map: the full pass leaves it out, as it does any such module
    kept: list[torch.Tensor] = []

    def leaf(index: int, out: Any) -> Any:
        if index != 0:
            return out
        x = out.detach().clone().requires_grad_(True)  # the held tensor, standing in
        kept.append(x)
        # Downstream gets a copy: an in-place op after the module (ResNet's ReLU) must not
        # write into the tensor whose gradient is asked for.
        return x.clone()

    args = prepare_inputs(model, named, as_args(inputs))
    run = run_edited(model, named, args, {name: leaf}, prefix, [], gated=gated, grad=True)
    if not kept:
        return None
    logits, mask = target_pixels(run.output, target_class, region, "Grad-CAM")
    score = class_score(logits, target_class, mask)
    if score.shape[0] != 1:
        raise LayerScopeError("grad_cam_after_capture takes one image")
    gradient = None
    if score.requires_grad:  # else not on the path to the class score (an auxiliary head)
        (gradient,) = torch.autograd.grad(score.sum(), kept[0], allow_unused=True)
    if gradient is None:
        gradient = torch.zeros_like(kept[0])
    return image_cam(name, target_class, kept[0], gradient, float(score.detach()[0]), mask, layout)


def _computes_its_output(module: nn.Module) -> bool:
    """Whether the module computes its output with weights of its own: then the output is a
    new tensor that only its return value carries on. A module without weights (Identity,
    Dropout in eval, an activation, a view) may hand back its input or a view of it, which
    the code after it may read through another name too: the gradient through that route
    would be missed when the output is a cached copy, so those run the full pass."""
    return any(True for _ in module.parameters())


def _channels_last(model: nn.Module) -> bool:
    """Whether the model's 4-D weights are in channels-last order: its convolutions then run
    on channels-last activations, and a cached output (contiguous) would round differently."""
    return any(
        p.dim() == 4
        and not p.is_contiguous()
        and p.is_contiguous(memory_format=torch.channels_last)
        for p in model.parameters()
    )
