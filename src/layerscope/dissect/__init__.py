"""What is this unit? Network Dissection (Bau, Zhou, Khosla, Oliva and Torralba, CVPR 2017):
threshold each unit at its top quantile over a dataset, upsample its thresholded map to the
image and compare it with labelled concept masks by IoU; the unit is a "person detector" when
its IoU with the person masks is high. And the causal half (Bau et al., PNAS 2020): what the
model loses on a class when a concept's units are turned off, against as many random units
(:func:`ablation_effect`).

>>> d = layerscope.dissect(model, "photos/", ["backbone.layer3", "backbone.layer4"],
...                        masks="labels/")
>>> d.label("backbone.layer4", 42), d.units("person")[:5], d.summary()

Locally by default; ``engine="ray"`` runs each pass on Ray Data (the partial counts are exact and
merge on the driver, so the result does not depend on the split)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..capture import resolve_modules
from ..dataset import DEFAULT_PREPROCESS
from ..dataset.format import (
    check_same_preprocess,
    describe_preprocess,
    first_difference,
    model_fingerprint,
    preprocess_args,
)
from ..dataset.identify import content_digest
from ..dataset.local import Every, interrupts_deferred
from ..dataset.sources import Sources, open_sources
from ..errors import LayerScopeError
from .ablation import AblationEffect, EffectRow, EffectTable, ablation_effect
from .format import read_state, save_state
from .masks import Masks, geometry_preprocess, open_masks
from .progress import Bar
from .result import Concept, Dissection, ModuleSummary, Summary
from .state import RunState
from .work import Partial, run_local

__all__ = ["dissect", "Dissection", "Concept", "ModuleSummary", "Summary", "ablation_effect",
           "AblationEffect", "EffectRow", "EffectTable"]  # fmt: skip

CHECKPOINT_SECONDS = 20.0


def dissect(
    model: nn.Module,
    images: Any,
    modules: str | list[str],
    *,
    masks: Any,
    classes: list[str] | None = None,
    quantile: float = 0.005,
    min_iou: float = 0.04,
    preprocess: Any = None,
    batch_size: int = 8,
    engine: str = "local",
    path: str | Path | None = None,
    progress: Any = True,
) -> Dissection:
    """Dissect ``modules`` of ``model`` over ``images`` against ``masks``.

    Definitions. The threshold of channel c is its ``1 - quantile`` quantile over every position
    of every image at the module's own grid: the m-th largest of its N values, m and N as
    ``numpy.quantile(values, 1 - quantile, method="inverted_cdf")`` picks (exact while 0.1 % of
    N is under 8 values, else within 0.1 % of N in rank: the values above it differ from the
    exact one's by at most ``0.001 N``; :mod:`layerscope.dissect.sketch`). The unit's map on an
    image is upsampled bilinearly (``align_corners=False``) to the mask's size after
    preprocessing (the model input's) and compared with ``> threshold``, in float64 (the
    bilinear value itself, not a float32 rounding of it). The IoU of unit c with concept k is
    the sum over images of the pixels where it fires on k, divided by the sum over images of the
    pixels where it fires or k is (pixels of no label, 255, left out). Concepts are the classes
    present in the masks (the background class of VOC too). A unit's label is the concept of
    highest IoU when that IoU is at least ``min_iou``.

    Passes: two. A sketch pass reads the thresholds; a threshold it cannot place within 0.1 %
    of rank is settled in the IoU pass, which histograms that channel finer and counts its
    pixels by candidate threshold (:mod:`layerscope.dissect.refine`). Only values packed within
    1/32768 of an octave around the quantile take a third and fourth pass, for those channels.
    Memory: under 10 KB per channel for the sketch and 8 bytes per channel and concept for the
    IoU counts, whatever the number of images.

    ``images``: a folder, paths, a Dataset or image tensors, as :func:`layerscope.sweep` takes.
    ``masks``: a folder of label images matched to the image files by stem (a palette or grey
    PNG whose value is the class index, 255 unlabelled), a Dataset whose item i is (image i,
    its mask), or a segmentation model (``model`` itself included), whose argmax over classes at
    the input's size is the mask. ``classes``: the class names, index order; else a segmentation
    model's (torchvision's: VOC's 21; Hugging Face's ``id2label``), else ``class i``. An image
    without a mask, or whose mask has another aspect ratio, is skipped and listed in
    ``skipped``; a class value beyond ``classes`` is an error naming the mask and the value.
    ``preprocess``: a :class:`~layerscope.Preprocess` or a function of a PIL image (default:
    resize 224, centre crop 224); the masks go through the same resize and crop, nearest
    neighbour. ``path``: checkpoint there (about every 20 s, and when interrupted); run again
    with the same arguments to resume in the pass where it stopped; refused when the weights,
    modules, quantile, preprocessing, images or masks changed (a Dataset's items are known by
    index only: their contents are not checked). ``progress``: a bar, or a
    callable ``(done, total)`` counting images over all passes (``total`` grows when a pass is
    added). The model is left as found: no hook stays, train/eval modes are restored."""
    if not isinstance(quantile, (int, float)) or not 0 < quantile <= 0.5:
        raise LayerScopeError(f"quantile must lie in (0, 0.5], got {quantile!r}")
    if not isinstance(min_iou, (int, float)) or not 0 <= min_iou <= 1:
        raise LayerScopeError(f"min_iou must lie in [0, 1], got {min_iou!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise LayerScopeError(f"batch_size must be a positive integer, got {batch_size!r}")
    if engine not in ("local", "ray"):
        raise LayerScopeError(f"engine must be 'local' or 'ray', got {engine!r}")
    named = dict(model.named_modules())
    names = resolve_modules(model, modules, named)
    pre = preprocess if preprocess is not None else DEFAULT_PREPROCESS
    sources = open_sources(images)
    mask_src = open_masks(masks, sources, model, classes)
    pre = geometry_preprocess(pre, mask_src.kind)
    fresh = RunState(names, float(quantile), list(sources.labels), model_fingerprint(model),
                     describe_preprocess(pre), _describe_masks(mask_src), mask_src.classes,
                     preprocess_args(pre))  # fmt: skip
    where = Path(path) if path is not None else None
    state = _start(where, fresh, sources, pre, mask_src)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    bar = Bar(progress)
    every = Every(CHECKPOINT_SECONDS)

    def done(part: Partial) -> None:
        digests = _digests(state, sources, mask_src, part.counted) if state.first else ({}, {})
        with interrupts_deferred():  # a batch's counts and its record change together
            state.merge(part)
            state.digests.update(digests[0])
            state.mask_digests.update(digests[1])
        bar.advance(len(part.counted) + len(part.skipped))
        if where is not None and every():
            save_state(state, where, min_iou)

    try:
        while state.stage != "done":
            bar.plan(state, len(sources))
            job = state.job(mask_src)
            todo = state.todo()
            if engine == "ray":
                from .ray_engine import run_ray

                run_ray(job, model, sources, pre, mask_src, todo, batch_size=batch_size,
                        device=device, done=done)  # fmt: skip
            else:
                run_local(job, model, sources, pre, mask_src, todo, batch_size=batch_size,
                          device=device, done=done)  # fmt: skip
            if not state.counted:
                reasons = "; ".join(f"{state.labels[i]}: {why}" for i, why in state.skipped[:3])
                raise LayerScopeError(
                    f"no image could be dissected ({len(state.skipped)} skipped: {reasons})"
                )
            with interrupts_deferred():
                state.finish_pass()
            if where is not None:
                save_state(state, where, min_iou)
    finally:
        bar.close()
        if where is not None and (state.processed or state.passes) and state.stage != "done":
            save_state(state, where, min_iou)  # also after an interrupt: what was counted is kept
    return state.result(float(min_iou))


def _describe_masks(masks: Masks) -> str:
    if masks.kind == "model" and not masks.own and masks.model is not None:
        return f"{masks.describe} #{model_fingerprint(masks.model)}"
    return masks.describe


def _digests(
    state: RunState, sources: Sources, masks: Masks, counted: list[int]
) -> tuple[dict[int, str], dict[int, str]]:
    """Contents digests of the images just counted and of their mask files."""
    images, files = {}, {}
    for i in counted:
        if sources.kind != "dataset":
            d = content_digest(sources.items[i])
            if d is not None:
                images[i] = d
        if masks.kind == "folder":
            found = masks.file(sources.labels[i])
            if found is not None:
                files[i] = content_digest(found) or ""
    return images, files


def _start(
    path: Path | None, fresh: RunState, sources: Sources, pre: Any, masks: Masks
) -> RunState:
    """A new dissection, or the one checkpointed at ``path`` when it is the same one."""
    if path is None or not path.is_file():
        return fresh
    state, _ = read_state(path)
    where = repr(str(path))
    mismatch = [
        what
        for what, ours, theirs in (
            ("model weights", fresh.fingerprint, state.fingerprint),
            ("modules", fresh.modules, state.modules),
            ("quantile", fresh.quantile, state.quantile),
            ("preprocessing", fresh.preprocess, state.preprocess),
            ("images", fresh.labels, state.labels),
            ("masks", fresh.masks, state.masks),
            ("classes", fresh.classes, state.classes),
        )
        if ours != theirs
    ]
    if mismatch:
        detail = ""
        if "images" in mismatch:
            detail = f"; {first_difference(fresh.labels, state.labels)}"
        raise LayerScopeError(
            f"{where} holds another dissection (its {', '.join(mismatch)} differ{detail}): "
            "give another path, or delete it to start over"
        )
    check_same_preprocess(pre, state.preprocess, where)
    changed = [i for i, d in sorted(state.digests.items())
               if content_digest(sources.items[i]) != d]  # fmt: skip
    changed += [
        i
        for i, d in sorted(state.mask_digests.items())
        if (f := masks.file(sources.labels[i])) is None or (content_digest(f) or "") != d
    ]
    if changed:
        raise LayerScopeError(
            f"{where} was dissected over other contents: {len(set(changed))} image(s) or masks "
            f"changed since, first {sources.labels[min(changed)]!r}; resuming would mix old and "
            "new images: give another path, or delete it to start over"
        )
    return state
