"""What turning units off costs, per class, over a dataset (Bau et al., PNAS 2020: remove a
concept's units, measure the class's drop, against as many random units).

For a segmentation model the measure is each class's IoU: pixels where the prediction (the argmax
over classes, logits upsampled bilinearly to the mask's size) and the mask are both the class,
over pixels where either is, summed over all images, unlabelled pixels (255) left out. For a
classifier it is each class's accuracy: of the images labelled with the class, the fraction
predicted as it; its ``masks`` are then the labels, one class index per image (a sequence, or a
Dataset returning ``(image, label)``).

Each image is measured without the edit, with it, and with ``repeats`` random controls: in each
edited module, as many units drawn at random from its other units (never the edited ones; one
draw per repeat for the whole dataset, from ``torch.Generator().manual_seed(seed)``), edited
alike. The variants of an image run as one batch (the input repeated, each slice edited its own
way), so the unedited forward runs once per image, not once per repeat."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..capture import resolve_modules
from ..dataset import DEFAULT_PREPROCESS
from ..dataset.sources import Sources, open_sources
from ..edits import Ablate, Edit, Scale, apply_edit, edit_call
from ..errors import LayerScopeError
from ..hooks import hooked
from ..models import torchvision_class_names
from ..outputs import class_output, model_class_names
from ..safety import run_model
from .masks import Masks, geometry_preprocess, open_masks
from .work import Partial, run_local

__all__ = ["ablation_effect", "AblationEffect", "EffectRow", "EffectTable"]


@dataclass(frozen=True)
class EffectRow:
    """One class of :meth:`AblationEffect.table`: its ``support`` (labelled pixels, or images
    for a classifier), the measure ``without`` the edit, ``with_edit``, and with random units
    (``random_mean`` and ``random_std`` over the repeats; None without a control)."""

    concept: str
    index: int
    support: int
    without: float
    with_edit: float
    random_mean: float | None
    random_std: float | None


class EffectTable(list[EffectRow]):
    """Rows of :class:`EffectRow`, printed as a table."""

    metric = "IoU"

    def __repr__(self) -> str:
        head = f"{'class':<18} {'support':>9} {self.metric + ' without':>12} {'with edit':>10}"
        lines = [head + f" {'random units':>17}"]
        for r in self:
            rand = "-" if r.random_mean is None else f"{r.random_mean:.3f} ± {r.random_std:.3f}"
            lines.append(f"{r.concept[:18]:<18} {r.support:>9} {r.without:>12.3f} "
                         f"{r.with_edit:>10.3f} {rand:>17}")  # fmt: skip
        return "\n".join(lines)


@dataclass
class AblationEffect:
    """What :func:`ablation_effect` measured. ``confusion`` (V, K, K): counts of (true class,
    predicted class) per variant: 0 without the edit, 1 with it, 2.. the random controls, whose
    units ``controls`` lists (module -> channels, per repeat)."""

    metric: str  # "iou" or "accuracy"
    classes: list[str]
    edits: dict[str, Edit]
    controls: list[dict[str, tuple[int, ...]]]
    confusion: torch.Tensor
    images: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def scores(self) -> torch.Tensor:
        """(V, K) the measure of each class in each variant (0 where a class is absent)."""
        c = self.confusion.double()
        hit = c.diagonal(dim1=1, dim2=2)
        truth = c.sum(2)
        whole = truth if self.metric == "accuracy" else truth + c.sum(1) - hit
        return torch.where(whole > 0, hit / whole.clamp(min=1), torch.zeros(()).double())

    def table(self) -> EffectTable:
        """Per class present in the masks (or labels): the measure without the edit, with it,
        and with random units (mean ± sample standard deviation over the repeats)."""
        s = self.scores()
        support = self.confusion[0].sum(1)
        rows = EffectTable()
        rows.metric = "IoU" if self.metric == "iou" else "accuracy"
        for k in (support > 0).nonzero().flatten().tolist():
            rand = [float(v) for v in s[2:, k]]
            mean = statistics.fmean(rand) if rand else None
            std = statistics.stdev(rand) if len(rand) > 1 else (0.0 if rand else None)
            rows.append(EffectRow(self.classes[k], k, int(support[k]), float(s[0, k]),
                                  float(s[1, k]), mean, std))  # fmt: skip
        return rows


@dataclass
class Confusion:
    counts: torch.Tensor  # (V, K, K)

    def merge(self, other: Confusion) -> None:
        self.counts = self.counts + other.counts

    def cpu(self) -> Confusion:
        return Confusion(self.counts.cpu())


@dataclass
class EffectJob:
    """Each batch: the variants (no edit, the edit, the controls) as one forward."""

    variants: list[dict[str, Edit]]
    metric: str
    classes: int
    masks: Masks
    needs_masks: bool = True

    def run(self, model: nn.Module, named: dict[str, nn.Module], x: torch.Tensor,
            masks: torch.Tensor | None, into: Partial) -> None:  # fmt: skip
        n, v = x.shape[0], len(self.variants)
        calls: dict[str, int] = {}

        def make(name: str) -> Any:
            def hook(_m: nn.Module, _a: Any, out: Any) -> Any:
                call = calls.get(name, 0)
                calls[name] = call + 1
                pieces = list(out.split(n))
                for i, variant in enumerate(self.variants):
                    edit = variant.get(name)
                    if edit is not None and edit_call(edit) in (None, call):
                        pieces[i] = apply_edit(name, edit, pieces[i])
                return torch.cat(pieces)

            return hook

        edited = {name for variant in self.variants for name in variant}
        with hooked(model, {name: make(name) for name in edited}, train=False, named=named):
            output = run_model(model, (x.repeat(v, *([1] * (x.dim() - 1))),))
        scores = class_output(output)
        if scores is None or scores.classes != self.classes:
            raise LayerScopeError("the model's output changed its classes between images")
        pred = _predictions(scores.scores, tuple(x.shape[-2:]), self.metric)
        if masks is None:  # a segmentation model gives the masks
            if self.masks.own:
                masks = pred[:n]
            else:
                assert self.masks.model is not None
                with hooked(self.masks.model, {}, train=False):
                    masks = self.masks.segment(x)
        counts = torch.zeros(v, self.classes, self.classes, dtype=torch.int64)
        valid = masks >= 0
        truth = masks[valid]
        for i in range(v):
            guess = pred[i * n : (i + 1) * n][valid]
            both = torch.bincount(truth * self.classes + guess, minlength=self.classes**2)
            counts[i] = both.view(self.classes, self.classes).cpu()
        part = Confusion(counts)
        if "effect" in into.states:
            into.states["effect"].merge(part)
        else:
            into.states["effect"] = part


def _predictions(scores: torch.Tensor, size: tuple[int, ...], metric: str) -> torch.Tensor:
    """(N, H * W) predicted classes at the input's size, or (N, 1) of a classifier."""
    if metric == "accuracy":
        return scores.argmax(1)[:, None]
    s = scores.float()
    if tuple(s.shape[-2:]) != size:
        s = F.interpolate(s, size=size, mode="bilinear", align_corners=False)
    return s.argmax(1).flatten(1)


def ablation_effect(
    model: nn.Module,
    images: Any,
    edits: dict[str, Edit],
    *,
    masks: Any,
    classes: list[str] | None = None,
    control: str | None = "random",
    repeats: int = 5,
    seed: int = 0,
    preprocess: Any = None,
    batch_size: int = 8,
    engine: str = "local",
) -> AblationEffect:
    """Measure each class without ``edits``, with them, and with as many random units
    (``control="random"``, ``repeats`` draws seeded by ``seed``; ``control=None``: none).

    ``edits``: module name -> :class:`~layerscope.Ablate` or :class:`~layerscope.Scale` (a random
    control edits its units the same way). ``masks``: for a segmentation model as
    :func:`layerscope.dissect` takes them; for a classifier the labels (a sequence of class
    indices, one per image, or a Dataset returning ``(image, label)``). ``batch_size``: inputs
    per forward; the variants of an image share one, so ``batch_size // (2 + repeats)`` images
    go in each (at least one). The model is left as found."""
    if control not in ("random", None):
        raise LayerScopeError(f"control must be 'random' or None, got {control!r}")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise LayerScopeError(f"repeats must be a positive integer, got {repeats!r}")
    if engine not in ("local", "ray"):
        raise LayerScopeError(f"engine must be 'local' or 'ray', got {engine!r}")
    if not isinstance(edits, dict) or not edits:
        raise LayerScopeError("edits: a dict of module name -> ls.Ablate(units), at least one")
    named = dict(model.named_modules())
    resolve_modules(model, list(edits), named)
    for name, edit in edits.items():
        if not isinstance(edit, (Ablate, Scale)):
            raise LayerScopeError(
                f"the edit of {name} is a {type(edit).__name__}: ablation_effect measures "
                "Ablate or Scale edits (a random control edits other units the same way)"
            )
    pre = preprocess if preprocess is not None else DEFAULT_PREPROCESS
    sources = open_sources(images)
    labels = _labels(masks, sources)
    metric, k, channels = _probe(model, named, sources, pre, list(edits))
    names = classes if classes is not None else _names(model, k)
    if len(names) != k:
        raise LayerScopeError(f"{len(names)} class names for a model of {k} classes")
    found = labels or open_masks(masks, sources, model, names)
    found.classes = list(names)
    pre = geometry_preprocess(pre, found.kind)
    if (metric == "accuracy") != (found.kind == "labels"):
        raise LayerScopeError(
            "a classifier is measured against labels (one class index per image), a "
            "segmentation model against masks"
        )
    controls = _controls(edits, channels, repeats, seed) if control else []
    variants: list[dict[str, Edit]] = [{}, dict(edits)]
    for draw in controls:
        variants.append({m: _like(edits[m], units) for m, units in draw.items()})
    job = EffectJob(variants, metric, k, found)
    state = Partial()

    def done(part: Partial) -> None:
        for key, value in part.states.items():
            if key in state.states:
                state.states[key].merge(value)
            else:
                state.states[key] = value
        state.counted += part.counted
        state.skipped += part.skipped

    per_step = max(1, batch_size // len(variants))
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    order = list(range(len(sources)))
    if engine == "ray":
        from .ray_engine import run_ray

        run_ray(job, model, sources, pre, found, order, batch_size=per_step, device=device,
                done=done)  # fmt: skip
    else:
        run_local(job, model, sources, pre, found, order, batch_size=per_step, device=device,
                  done=done)  # fmt: skip
    if not state.counted:
        raise LayerScopeError(f"no image could be measured ({len(state.skipped)} skipped)")
    confusion = state.states["effect"].counts
    skipped = [(sources.labels[i], why) for i, why in sorted(state.skipped)]
    return AblationEffect(metric, list(names), dict(edits), controls, confusion,
                          len(state.counted), skipped)  # fmt: skip


def _labels(masks: Any, sources: Sources) -> Masks | None:
    """A classifier's labels, when ``masks`` are: a sequence of integers, or a Dataset whose
    items' second element is one."""
    values: Any = None
    if isinstance(masks, (list, tuple, np.ndarray)) or (
        isinstance(masks, torch.Tensor) and masks.dim() == 1
    ):
        values = [int(v) for v in masks]
    elif isinstance(masks, torch.utils.data.Dataset) and hasattr(masks, "__len__") and len(masks):
        first = masks[0]
        label = first[1] if isinstance(first, (tuple, list)) and len(first) > 1 else None
        if isinstance(label, (int, np.integer)) or (
            isinstance(label, torch.Tensor) and label.numel() == 1
        ):
            values = masks
    if values is None:
        return None
    if len(values) != len(sources):
        raise LayerScopeError(f"{len(values)} labels for {len(sources)} images")
    return Masks("labels", "labels", None, dataset=values)


def _probe(
    model: nn.Module, named: dict[str, nn.Module], sources: Sources, pre: Any, modules: list[str]
) -> tuple[str, int, dict[str, int]]:
    """One forward of the first readable image: the model's kind of output, its number of
    classes and the edited modules' channels."""
    channels: dict[str, int] = {}

    def make(name: str) -> Any:
        def hook(_m: nn.Module, _a: Any, out: Any) -> None:
            if isinstance(out, torch.Tensor) and out.dim() in (2, 4):
                channels.setdefault(name, int(out.shape[1]))

        return hook

    for i in range(len(sources)):
        try:
            x = sources.prepare(i, pre).tensor
        except Exception:
            continue
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        with hooked(model, {m: make(m) for m in modules}, train=False, named=named):
            out = run_model(model, (x.to(device),))
        scores = class_output(out)
        if scores is None:
            raise LayerScopeError(
                "the model's output holds no class scores: ablation_effect measures a "
                "segmentation model's (N, K, h, w) or a classifier's (N, K) output"
            )
        missing = [m for m in modules if m not in channels]
        if missing:
            raise LayerScopeError(f"{', '.join(missing)} gave no (N, C[, H, W]) output to edit")
        return ("iou" if scores.kind == "segmentation" else "accuracy"), scores.classes, channels
    raise LayerScopeError("no image could be read")


def _names(model: nn.Module, k: int) -> list[str]:
    own = model_class_names(model)
    if len(own) == k:
        return own
    return torchvision_class_names(model, k) or [f"class {i}" for i in range(k)]


def _controls(
    edits: dict[str, Edit], channels: dict[str, int], repeats: int, seed: int
) -> list[dict[str, tuple[int, ...]]]:
    """Per repeat, per edited module: as many units as the edit's, drawn from the others."""
    g = torch.Generator().manual_seed(seed)
    draws = []
    for _ in range(repeats):
        draw = {}
        for name, edit in edits.items():
            chosen = set(getattr(edit, "channels", ()))
            pool = [c for c in range(channels[name]) if c not in chosen]
            if len(pool) < len(chosen):
                raise LayerScopeError(
                    f"{name}: {len(chosen)} edited units leave only {len(pool)} others to draw "
                    "a random control from"
                )
            picked = torch.randperm(len(pool), generator=g)[: len(chosen)]
            draw[name] = tuple(sorted(pool[i] for i in picked.tolist()))
        draws.append(draw)
    return draws


def _like(edit: Edit, units: tuple[int, ...]) -> Edit:
    if isinstance(edit, Scale):
        return Scale(list(units), edit.factor, edit.call)
    assert isinstance(edit, Ablate)
    return Ablate(list(units), edit.value, edit.call)
