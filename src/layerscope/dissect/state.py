"""Where a dissection stands between its passes: which pass (``stage`` "sketch" with its level,
then "tally", then "done"), which images the first pass counted or skipped, which the current pass
has done, and the counts so far. This is what a checkpoint holds, so a dissection interrupted in
any pass resumes in that pass without counting an image twice."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import LayerScopeError
from .masks import Masks
from .refine import Cut, edge_values, settle
from .result import Dissection
from .sketch import ChannelThresholds, Level, SketchPart
from .tally import Tally, _widen
from .work import Partial, SketchJob, TallyJob, _add

__all__ = ["RunState"]


@dataclass
class RunState:
    """A dissection in progress (or done): what identifies it and its counts."""

    modules: list[str]
    quantile: float
    labels: list[str]  # the images
    fingerprint: str
    preprocess: str
    masks: str
    classes: list[str] | None  # None: ``class i`` for the values the masks hold
    preprocess_args: dict[str, Any] | None = None
    stage: str = "sketch"  # "sketch" (level in thresholds), "tally", "done"
    passes: int = 0  # passes finished
    counted: set[int] = field(default_factory=set)  # by the first pass
    skipped: list[tuple[int, str]] = field(default_factory=list)
    processed: set[int] = field(default_factory=set)  # by the current pass
    digests: dict[int, str] = field(default_factory=dict)  # image index -> contents
    mask_digests: dict[int, str] = field(default_factory=dict)
    thresholds: dict[str, ChannelThresholds] = field(default_factory=dict)
    parts: dict[str, SketchPart] = field(default_factory=dict)  # the current sketch pass
    tallies: dict[str, Tally] = field(default_factory=dict)
    area: torch.Tensor | None = None

    @property
    def first(self) -> bool:
        return self.passes == 0

    def todo(self) -> list[int]:
        """The images the current pass has still to do, in order."""
        if self.first:
            return [i for i in range(len(self.labels)) if i not in self.processed]
        return sorted(self.counted - self.processed)

    def job(self, masks: Masks) -> SketchJob | TallyJob:
        if self.stage == "sketch":
            levels = {n: (self.thresholds[n].level if n in self.thresholds else None)
                      for n in self.modules}  # fmt: skip
            images = len(self.labels)
            return SketchJob(self.modules, levels, self.quantile, images, needs_masks=self.first)
        thresholds, pending = {}, {}
        for n in self.modules:
            th = self.thresholds[n]
            now = ~th.tallied & ~th.level.todo  # found, not counted yet
            thresholds[n] = torch.where(now, th.threshold, torch.full((), math.inf))
            pending[n] = th.level if bool(th.level.todo.any()) else None
        first = not any(bool(t.tallied.any()) for t in self.thresholds.values())
        return TallyJob(self.modules, thresholds, masks, pending, self.quantile, areas=first)

    def merge(self, part: Partial) -> None:
        """Add a batch's counts (called with interrupts deferred)."""
        again = self.processed.intersection(part.counted)
        if again:  # never: each image is in one batch of a pass; guarded all the same
            raise LayerScopeError(
                f"{self.labels[min(again)]!r} came back twice in pass {self.passes + 1}"
            )
        if self.skipped_again(part):
            bad = part.skipped[0]
            raise LayerScopeError(
                f"{self.labels[bad[0]]!r} could not be read again in pass {self.passes + 1} "
                f"({bad[1]}); it was counted in the first pass: the images changed during the "
                "dissection"
            )
        for name, state in part.states.items():
            if isinstance(state, SketchPart):
                if name in self.parts:
                    self.parts[name].merge(state)
                else:
                    self.parts[name] = state
            elif name in self.tallies:
                self.tallies[name].merge(state)
            else:
                self.tallies[name] = state
        if part.area is not None:
            self.area = part.area if self.area is None else _add(self.area, part.area)
        if self.first:
            self.counted.update(part.counted)
            self.skipped.extend(part.skipped)
            self.processed.update(i for i, _ in part.skipped)
        self.processed.update(part.counted)

    def skipped_again(self, part: Partial) -> bool:
        return not self.first and bool(part.skipped)

    def finish_pass(self) -> None:
        """After a whole pass: read what the sketch gives, and choose the next pass. After a
        sketch pass comes the IoU pass (the channels still open settle in it); after it, done,
        unless a channel's values were packed too tightly to settle (:mod:`.refine`)."""
        missing = [n for n in self.modules if n not in self.parts and n not in self.tallies]
        if self.counted and missing:
            raise LayerScopeError(
                f"{', '.join(missing)} never ran in the model's forward: nothing to dissect "
                "there (a module the forward does not call, such as DeepLabV3's "
                "classifier.0.convs)"
            )
        if self.stage == "sketch":
            for name in self.modules:
                part = self.parts.get(name)
                if part is None:
                    continue  # no image counted, or no channel of it open in this pass
                if name not in self.thresholds:
                    self.thresholds[name] = ChannelThresholds(int(part.count.shape[0]))
                self.thresholds[name].resolve(part, self.quantile)
            self.parts = {}
            self.stage = "tally"
        elif self.stage == "tally":
            reopened = False
            for name in self.modules:
                reopened |= self._settle(self.thresholds[name], self.tallies[name])
            self.stage = "sketch" if reopened else "done"
        self.passes += 1
        self.processed = set()

    def _settle(self, th: ChannelThresholds, tally: Tally) -> bool:
        """Count the channels found before this IoU pass as tallied; settle the open ones from
        their buckets. Whether some stay open."""
        th.tallied |= ~th.level.todo
        if tally.pending is None:
            return False
        level, pending = th.level, tally.pending
        edges = edge_values(level)
        k = max(int(tally.hits.shape[1]), int(pending.buckets.shape[2]))
        tally.hits, buckets = _widen(tally.hits, k), _widen(pending.buckets, k)
        nxt = Level(level.number + 1, level.lo.clone(), level.hi.clone(), level.shift.clone(),
                    level.target.clone(), torch.zeros_like(level.todo))  # fmt: skip
        for i, (c, cut) in enumerate(zip(level.channels().tolist(),
                                         settle(pending.part, level, th.values))):  # fmt: skip
            if isinstance(cut, Cut):
                th.threshold[c], th.exact[c] = float(edges[i, cut.edge]), cut.exact
                tally.hits[c] = buckets[i, cut.edge + 1 :].sum(0)  # the pixels over that edge
                tally.fired[c] = tally.hits[c].sum()
                th.tallied[c] = True
            else:
                nxt.lo[c], nxt.hi[c], nxt.shift[c], nxt.target[c] = cut.interval
                nxt.todo[c] = True
        th.level, tally.pending = nxt, None
        return bool(nxt.todo.any())

    def result(self, min_iou: float) -> Dissection:
        """The finished dissection."""
        k = 0 if self.area is None else int(self.area.shape[0])
        k = max([k, *(int(t.hits.shape[1]) for t in self.tallies.values())])
        names = self.classes if self.classes is not None else [f"class {i}" for i in range(k)]
        k = len(names)
        area = torch.zeros(k, dtype=torch.int64) if self.area is None else _widen(self.area, k)
        return Dissection(
            list(self.modules),
            list(names),
            {n: self.thresholds[n].threshold.clone() for n in self.modules},
            {n: _widen(self.tallies[n].hits, k) for n in self.modules},
            {n: self.tallies[n].fired.clone() for n in self.modules},
            area,
            self.quantile,
            min_iou,
            len(self.counted),
            [(self.labels[i], why) for i, why in self.skipped],
            {n: self.thresholds[n].exact.clone() for n in self.modules},
            self.record(),
        )

    def record(self) -> dict[str, Any]:
        """What identifies the dissection in its file."""
        return {
            "fingerprint": self.fingerprint,
            "preprocess": self.preprocess,
            "preprocess_args": self.preprocess_args,
            "masks": self.masks,
            "sources": list(self.labels),
            "digests": dict(self.digests),
            "mask_digests": dict(self.mask_digests),
            "counted": sorted(self.counted),
            "skipped_ids": [i for i, _ in self.skipped],
            "dynamic_classes": self.classes is None,
            "passes": self.passes,
        }
