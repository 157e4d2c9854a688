"""One pass of a dissection (or of an ablation measure) over some images: read and prepare each
image and its mask, forward batches of one input size with hooks that reduce each module's
output where it is produced, and return the batch's partial counts. The same code runs in this
process (:func:`run_local`) and in Ray's actors (:mod:`.ray_engine`); the driver merges the
partials, which are exact counts, so any split gives the same result."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from ..dataset.sources import Sources
from ..errors import LayerScopeError
from ..hooks import hooked
from ..nested import first_tensor
from ..safety import run_model
from .masks import Masks, MissingMask
from .refine import EDGES, bucket_of, edge_values
from .sketch import Level, SketchPart, keeps_exact
from .tally import Pending, Tally, _widen, class_areas, count_hits, unit_hits

__all__ = ["Partial", "Job", "SketchJob", "TallyJob", "Items", "reduce_items", "run_local",
           "Done"]  # fmt: skip


@dataclass
class Partial:
    """What one batch gave: images counted and skipped, each module's partial state, and the
    labelled pixels of each class (IoU passes)."""

    counted: list[int] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)
    states: dict[str, Any] = field(default_factory=dict)
    area: torch.Tensor | None = None

    def cpu(self) -> Partial:
        states = {n: s.cpu() for n, s in self.states.items()}
        return Partial(self.counted, self.skipped, states, self.area)


Done = Callable[[Partial], None]


class Job(Protocol):
    """A pass: which masks its items need, and a batch of inputs -> partial states."""

    needs_masks: bool

    def run(self, model: nn.Module, named: dict[str, nn.Module], x: torch.Tensor,
            masks: torch.Tensor | None, into: Partial) -> None: ...  # fmt: skip


def _maps(name: str, out: Any) -> torch.Tensor:
    t = first_tensor(out)
    if t is None or t.dim() != 4:
        shape = None if t is None else tuple(t.shape)
        raise LayerScopeError(
            f"{name} gives {shape}: a dissection compares (N, C, H, W) maps with masks; "
            "choose modules with a spatial output (a convolution's, a ResNet stage's)"
        )
    return t


def _first_calls(modules: list[str], fn: Callable[[str, torch.Tensor], None]) -> dict[str, Any]:
    """Forward hooks calling ``fn(name, output)`` on each module's first call of a forward."""
    seen: set[str] = set()

    def make(name: str) -> Callable[..., None]:
        def hook(_m: nn.Module, _a: Any, out: Any) -> None:
            if name not in seen:  # a reused module: its first call counts
                seen.add(name)
                fn(name, _maps(name, out))  # before any in-place op after the module

        return hook

    return {n: make(n) for n in modules}


@dataclass
class SketchJob:
    """A sketch pass: each module's values into its :class:`SketchPart`."""

    modules: list[str]
    levels: dict[str, Level | None]  # None: the first pass, channels not known yet
    quantile: float
    images: int  # of the dissection: with a module's positions, its values per channel at most
    needs_masks: bool = False  # the first pass reads masks to skip the images without one

    def run(self, model: nn.Module, named: dict[str, nn.Module], x: torch.Tensor,
            masks: torch.Tensor | None, into: Partial) -> None:  # fmt: skip
        def count(name: str, out: torch.Tensor) -> None:
            level = self.levels[name] or Level.first(out.shape[1])
            if not bool(level.todo.any()):
                return  # a later pass, nothing open in this module
            exact = keeps_exact(self.images * out.shape[2] * out.shape[3], self.quantile)
            part = SketchPart.empty(level, exact)
            values = out.detach().flatten(2)
            if not bool(level.todo.all()):
                values = values[:, level.todo.nonzero().flatten().to(values.device)]
            part.update(values, level, self.quantile)
            if name in into.states:
                into.states[name].merge(part)
            else:
                into.states[name] = part

        with hooked(model, _first_calls(self.modules, count), train=False, named=named):
            run_model(model, (x,))


@dataclass
class TallyJob:
    """The IoU pass: where each unit exceeds its threshold, counted per class; and for the
    channels whose threshold is still open (``pending``), their values at a finer level and
    their pixels by candidate threshold (:mod:`.refine`)."""

    modules: list[str]
    thresholds: dict[str, torch.Tensor]  # +inf for a channel not counted in this pass
    masks: Masks
    pending: dict[str, Level | None] = field(default_factory=dict)
    quantile: float = 0.005
    areas: bool = True  # count each class's pixels: in the first IoU pass only
    needs_masks: bool = True

    def run(self, model: nn.Module, named: dict[str, nn.Module], x: torch.Tensor,
            masks: torch.Tensor | None, into: Partial) -> None:  # fmt: skip
        if masks is None and not self.masks.own:  # another model segments the images
            assert self.masks.model is not None
            with hooked(self.masks.model, {}, train=False):
                masks = self.masks.segment(x)
        size = (int(x.shape[-2]), int(x.shape[-1]))
        later: dict[str, torch.Tensor] = {}

        def count(name: str, out: torch.Tensor, labels: torch.Tensor | None) -> None:
            if labels is None:  # the masks come from this forward's output: count after it
                later[name] = out.detach().clone()
                return
            k = self._classes(labels)
            pairs, pixels, _ = unit_hits(out, self.thresholds[name], size)
            tally = Tally(*count_hits(pairs, pixels, labels, out.shape[1], k))
            level = self.pending.get(name)
            if level is not None and bool(level.todo.any()):
                tally.pending = self._open(out, level, labels, size, k)
            if name in into.states:
                into.states[name].merge(tally)
            else:
                into.states[name] = tally

        hooks = _first_calls(self.modules, lambda n, out: count(n, out, masks))
        with hooked(model, hooks, train=False, named=named):
            output = run_model(model, (x,))
        if masks is None:
            masks = self.masks.segment(x, output)
            for name, out in later.items():
                count(name, out, masks)
        if self.areas:
            area = class_areas(masks, self._classes(masks))
            into.area = area if into.area is None else _add(into.area, area)

    def _open(self, out: torch.Tensor, level: Level, labels: torch.Tensor,
              size: tuple[int, int], k: int) -> Pending:  # fmt: skip
        """The open channels' values at their level and their pixels by candidate threshold."""
        idx = level.channels().to(out.device)
        sub = out.detach()[:, idx]
        part = SketchPart.empty(level)
        part.update(sub.flatten(2), level, self.quantile)
        edges = edge_values(level).to(out.device)
        pairs, pixels, values = unit_hits(sub, edges[:, 0].float(), size)
        n = len(idx)
        label = labels[pairs // n, pixels]
        seen = label >= 0
        channel = pairs[seen] % n
        bucket = bucket_of(values[seen], channel, edges)
        index = (channel * (EDGES + 1) + bucket) * k + label[seen]
        found = torch.bincount(index, minlength=n * (EDGES + 1) * k)
        return Pending(part.cpu(), found.view(n, EDGES + 1, k).cpu())

    def _classes(self, labels: torch.Tensor) -> int:
        if self.masks.classes is not None:
            return len(self.masks.classes)
        return int(labels.max()) + 1 if labels.numel() else 0


def _add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    k = max(a.shape[-1], b.shape[-1])
    return _widen(a, k) + _widen(b, k)


class Items(torch.utils.data.Dataset):
    """Image ``todo[i]`` as (index, input (3, H, W) or None, mask (H * W,) or None, why it was
    skipped or None). Masks are read only for a job that needs them."""

    def __init__(
        self, sources: Sources, preprocess: Any, masks: Masks | None, todo: list[int]
    ) -> None:
        self.sources, self.preprocess, self.masks, self.todo = sources, preprocess, masks, todo

    def __len__(self) -> int:
        return len(self.todo)

    def __getitem__(self, i: int) -> tuple[int, Any, Any, str | None]:
        index = self.todo[i]
        try:
            prepared = self.sources.prepare(index, self.preprocess)
        except Exception as exc:  # unreadable, corrupt, not an image: reported, never fatal
            return index, None, None, f"{type(exc).__name__}: {exc}"
        mask = None
        if self.masks is not None and self.masks.kind != "model":
            try:
                label = self.sources.labels[index]
                mask = self.masks.load(label, index, prepared.geometry).flatten()
            except MissingMask as exc:
                return index, None, None, str(exc)
        return index, prepared.tensor[0], mask, None


def reduce_items(
    job: Any, model: nn.Module, named: dict[str, nn.Module], items: list[Any],
    device: torch.device,
) -> Partial:  # fmt: skip
    """The partial of a batch of :class:`Items`: a forward per input shape in it."""
    into = Partial(skipped=[(i, why) for i, x, _, why in items if x is None])
    groups: dict[tuple[int, ...], list[Any]] = {}
    for item in items:
        if item[1] is not None:
            groups.setdefault(tuple(item[1].shape), []).append(item)
    for group in groups.values():
        x = torch.stack([g[1] for g in group]).to(device)
        masks = None
        if group[0][2] is not None:
            masks = torch.stack([g[2] for g in group]).to(device)
        job.run(model, named, x, masks, into)
        into.counted.extend(g[0] for g in group)
    return into


def run_local(
    job: Any, model: nn.Module, sources: Sources, preprocess: Any, masks: Masks,
    todo: list[int], *, batch_size: int, device: torch.device, done: Done,
) -> None:  # fmt: skip
    """Run ``job`` over the images ``todo`` in this process, ``done(partial)`` after each
    batch."""
    named = dict(model.named_modules())
    loader = torch.utils.data.DataLoader(
        Items(sources, preprocess, masks if job.needs_masks else None, todo),
        batch_size=batch_size,
        shuffle=False,
        num_workers=0,
        collate_fn=list,
    )
    for items in loader:
        done(reduce_items(job, model, named, items, device))
