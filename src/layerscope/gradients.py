"""Grad-CAM at any module, for a chosen class: one forward and one backward pass, hooks removed
and the model left as it was found, exactly as for forward captures.

The target is the class's score summed over the pixels predicted as that class (a segmentation
model) or over a region given as a boolean mask, or the class's logit (a classifier). Grad-CAM
weights each channel of the module's output by its mean gradient and keeps the positive part of
the weighted sum (Selvaraju et al., 2017).

A batch of N images gives one result per image (:class:`BatchGradCam`), each for its own score:
the class's score over the pixels *that* image predicts as the class (or its logit); the sum of
the N scores is differentiated once, and as the images do not mix in an eval-mode forward each
image's gradient is that of its own score (as pytorch-grad-cam and captum compute it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .capture import resolve_modules
from .errors import LayerScopeError
from .hooks import hooked
from .nested import describe, first_tensor, map_tensors
from .outputs import class_output
from .safety import as_args, prepare_inputs, run_model
from .spatial import Layout, spatial_maps

__all__ = ["BatchGradCam", "GradCam", "grad_cam", "grad_cams"]


@dataclass(frozen=True)
class GradCam:
    """``cam`` (H, W) at the module's resolution, ``activation`` and ``gradient`` (C, H, W)
    (channels first, whatever the module's own layout), ``weights`` (C,) and the target
    ``score`` that was differentiated over ``pixels`` pixels (``mask``: which, at the class
    map's resolution; None for a classifier's logit)."""

    module: str
    target_class: int
    cam: torch.Tensor
    activation: torch.Tensor
    gradient: torch.Tensor
    weights: torch.Tensor
    score: float
    pixels: int
    mask: torch.Tensor | None = None


@dataclass(frozen=True)
class BatchGradCam:
    """Grad-CAM of a batch: ``cam`` (N, H, W), ``activation`` and ``gradient`` (N, C, H, W),
    ``weights`` (N, C), ``scores`` and ``pixels`` (one per image); ``result[i]`` is image i's
    :class:`GradCam`."""

    module: str
    target_class: int
    cam: torch.Tensor
    activation: torch.Tensor
    gradient: torch.Tensor
    weights: torch.Tensor
    scores: tuple[float, ...]
    pixels: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.scores)

    def __getitem__(self, i: int) -> GradCam:
        return GradCam(
            self.module,
            self.target_class,
            self.cam[i],
            self.activation[i],
            self.gradient[i],
            self.weights[i],
            self.scores[i],
            self.pixels[i],
        )


def grad_cam(
    model: nn.Module,
    inputs: Any,
    module: str,
    target_class: int,
    *,
    region: torch.Tensor | None = None,
    call: int = 0,
    layout: Layout | None = None,
) -> GradCam | BatchGradCam:
    """Grad-CAM of ``target_class`` at ``module`` (its ``call``-th call).

    ``region``: an (h, w) boolean mask over the class map's pixels; the score is summed there
    instead of over the pixels predicted as the class (segmentation models only).
    ``layout``: where the output's channels and grid are (traced by the Explorer; default:
    from the shape). A batch of N images gives a :class:`BatchGradCam` (one result per image;
    ``region`` may then be (N, h, w))."""
    layouts = {module: layout} if layout is not None else None
    result = grad_cams(model, inputs, [module], target_class, region=region, call=call,
                       layouts=layouts, strict=True)  # fmt: skip
    return result[module]


def grad_cams(
    model: nn.Module,
    inputs: Any,
    modules: list[str],
    target_class: int,
    *,
    region: torch.Tensor | None = None,
    call: int = 0,
    layouts: dict[str, Layout] | None = None,
    strict: bool = False,
) -> dict[str, GradCam | BatchGradCam]:
    """Grad-CAM at several modules from one forward and one backward pass: the gradient of the
    score reaches every module's output at once. Modules without a spatial map are left out
    (``strict``: an error instead)."""
    named = dict(model.named_modules())
    names = resolve_modules(model, modules, named)
    args = differentiable(prepare_inputs(model, named, as_args(inputs)))
    layouts = layouts or {}
    kept: dict[str, torch.Tensor] = {}
    seen = dict.fromkeys(names, 0)

    def hook(name: str) -> Any:
        def keep(_m: nn.Module, _a: Any, out: Any) -> Any:
            seen[name] += 1
            if seen[name] - 1 != call:
                return None
            t = first_tensor(out)
            if t is None or not has_cam_maps(t, layouts.get(name)):
                if strict:
                    raise LayerScopeError(
                        f"Grad-CAM needs a spatial map; {name} gives {describe(out)}"
                    )
                return None
            src = on_graph(t)
            kept[name] = src
            # Downstream gets a copy, so in-place ops after the module (ResNet's ReLU) cannot
            # rewrite the tensor whose gradient is asked for.
            return map_tensors(out, lambda x: src.clone() if x is t else x)

        return keep

    with hooked(model, {n: hook(n) for n in names}, train=False, grad=True, named=named):
        output = run_model(model, args)
        if strict and not kept:
            name = names[0]
            raise LayerScopeError(
                f"{name} ran {seen[name]} time(s) in this forward: no call {call}"
            )
        if not kept:  # none of them gives a spatial map: nothing to differentiate
            return {}
        logits, mask = target_pixels(output, target_class, region, "Grad-CAM")
        scores = class_score(logits, target_class, mask)  # one per image
        order = list(kept)
        grads = torch.autograd.grad(scores.sum(), [kept[n] for n in order], allow_unused=True)
    rows = scores.shape[0]
    values = tuple(float(v) for v in scores.detach())
    pixels = (1,) * rows if mask is None else tuple(int(m.sum()) for m in _per_row(mask, rows))
    results: dict[str, GradCam | BatchGradCam] = {}
    for name, gradient in zip(order, grads):
        if gradient is None:  # not on the path to the class score (an auxiliary head)
            gradient = torch.zeros_like(kept[name])
        layout = layouts.get(name)
        if rows == 1:
            results[name] = image_cam(name, target_class, kept[name], gradient, values[0], mask,
                                      layout)  # fmt: skip
            continue
        cams = [cam_parts(kept[name], gradient, i, layout) for i in range(rows)]
        cam, activation, grad_maps, weights = (torch.stack(parts) for parts in zip(*cams))
        results[name] = BatchGradCam(name, target_class, cam, activation, grad_maps, weights,
                                     values, pixels)  # fmt: skip
    return results


def has_cam_maps(t: torch.Tensor, layout: Layout | None) -> bool:
    """Whether Grad-CAM can be taken at ``t``: floating values laid out as spatial maps."""
    return t.is_floating_point() and spatial_maps(t, 0, layout)[0] is not None


def image_cam(
    name: str,
    target_class: int,
    activation: torch.Tensor,
    gradient: torch.Tensor,
    score: float,
    mask: torch.Tensor | None,
    layout: Layout | None,
) -> GradCam:
    """One image's Grad-CAM from the module's output and the score's gradient there; ``mask``
    the pixels the score summed over (None: a logit)."""
    row = None if mask is None else (mask[0] if mask.dim() == 3 else mask)
    pixels = 1 if row is None else int(row.sum())
    cam, a, g, weights = cam_parts(activation, gradient, 0, layout)
    return GradCam(name, target_class, cam, a, g, weights, score, pixels,
                   None if row is None else row.cpu())  # fmt: skip


def cam_parts(
    activation: torch.Tensor, gradient: torch.Tensor, row: int, layout: Layout | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Image ``row``'s CAM, activation and gradient maps (C, H, W), and channel weights."""
    a = spatial_maps(activation.detach()[row : row + 1], 0, layout)[0]
    g = spatial_maps(gradient.detach()[row : row + 1], 0, layout)[0]
    assert a is not None and g is not None  # kept only when it has maps (grad_cams' hook)
    weights = g.float().mean(dim=(1, 2))
    return torch.relu((weights[:, None, None] * a.float()).sum(0)), a, g, weights


def _per_row(mask: torch.Tensor, rows: int) -> list[torch.Tensor]:
    return [mask[i] if mask.dim() == 3 and mask.shape[0] == rows else mask for i in range(rows)]


def target_pixels(
    output: Any, cls: int, region: torch.Tensor | None = None, what: str = "Grad-CAM"
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The class scores in ``output`` ((N, K) or (N, K, H, W)), checked for ``cls``, and the
    pixels a class map's score is summed over, per image (N, H, W): ``region`` ((H, W) for
    every image, or (N, H, W)), else those each image predicts as ``cls`` (None for a
    classifier). ``what`` names the analysis in the errors."""
    found = class_output(output)
    if found is None:
        raise LayerScopeError(
            f"{what} needs class scores: an (N, K) or (N, K, H, W) output "
            "(a tensor, torchvision's 'out' or a Hugging Face 'logits')"
        )
    logits = found.scores
    k = logits.shape[1]
    if not 0 <= cls < k:
        raise LayerScopeError(f"class {cls} is out of range: the model has {k} classes")
    if logits.dim() == 2:
        if region is not None:
            raise LayerScopeError("a region needs a segmentation output (N, K, H, W)")
        return logits, None
    if region is None:
        mask = logits.detach().argmax(1) == cls
        empty = [i for i in range(mask.shape[0]) if not bool(mask[i].any())]
        if empty:
            which = "" if mask.shape[0] == 1 else f" in image {empty[0]} of the batch"
            raise LayerScopeError(
                f"no pixel is predicted as class {cls}{which}: pick a class from the legend or "
                "draw a region on the image"
            )
    else:
        mask = region.to(device=logits.device, dtype=torch.bool)
        rows = logits.shape[0]
        if mask.dim() == 3 and mask.shape[0] not in (1, rows):
            raise LayerScopeError(
                f"region has {mask.shape[0]} masks for {rows} images: give one (h, w) mask, or "
                "one per image"
            )
        if mask.shape[-2:] != logits.shape[-2:] or mask.dim() not in (2, 3):
            raise LayerScopeError(
                f"region is {tuple(mask.shape)}, output is {tuple(logits.shape[-2:])}"
            )
        if not bool(mask.any()):
            raise LayerScopeError("the region is empty: draw it over the image")
    return logits, mask


def class_score(logits: torch.Tensor, cls: int, mask: torch.Tensor | None) -> torch.Tensor:
    """The score of ``cls`` in every row: the logit, or a class map summed over ``mask``
    ((H, W), or one (H, W) per row)."""
    if mask is None:
        return logits[:, cls]
    return (logits[:, cls] * mask.to(logits.device)).flatten(1).sum(1)


def differentiable(args: Any) -> Any:
    """The inputs as autograd sees them from the start: each floating tensor becomes a copy of
    a leaf that requires grad, so every module's output carries a graph even when the model's
    weights are frozen (``requires_grad=False``, common for inference) or partly frozen. The
    gradients asked for, at module outputs, are the same. A copy, not the leaf: a model that
    writes into its input in place may still do so."""
    return map_tensors(
        args, lambda t: t.detach().requires_grad_(True).clone() if t.is_floating_point() else t
    )


def on_graph(t: torch.Tensor) -> torch.Tensor:
    """``t`` when autograd follows it, else a leaf standing for it (an output computed from
    integer inputs and frozen weights only, such as a frozen embedding's): what follows is
    differentiated from there."""
    return t if t.requires_grad else t.detach().requires_grad_(True)
