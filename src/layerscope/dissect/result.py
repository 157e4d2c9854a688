"""A dissection's result: per module, each unit's threshold, its IoU with every concept, and its
label (the concept of highest IoU, when that IoU reaches ``min_iou``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import LayerScopeError, OutOfRangeError, did_you_mean

__all__ = ["Concept", "Dissection", "ModuleSummary", "Summary"]


@dataclass(frozen=True)
class Concept:
    """A unit's label: the concept ``name`` (class ``index`` of the masks) and the unit's IoU
    with it over the dataset."""

    name: str
    iou: float
    index: int


@dataclass(frozen=True)
class ModuleSummary:
    """One module of :meth:`Dissection.summary`: how many of its ``channels`` are labelled, by
    how many distinct concepts, and the concepts with most units, (name, units) most first."""

    module: str
    channels: int
    labelled: int
    concepts: int
    top: tuple[tuple[str, int], ...]


class Summary(list[ModuleSummary]):
    """A list of :class:`ModuleSummary`, printed as a table."""

    def __repr__(self) -> str:
        lines = [f"{'module':<28} {'labelled':>12} {'concepts':>8}  top concepts (units)"]
        for s in self:
            top = ", ".join(f"{n} ({k})" for n, k in s.top) or "-"
            lines.append(
                f"{s.module:<28} {s.labelled:>5} of {s.channels:<5} {s.concepts:>8}  {top}"
            )
        return "\n".join(lines)


@dataclass
class Dissection:
    """What :func:`layerscope.dissect` found. ``concepts``: the classes present in the masks
    (labelled pixels > 0), in class order; ``images``: how many images were counted;
    ``skipped``: (image, reason) of those that were not. Per module, :meth:`iou` is (channels,
    concepts), :meth:`threshold` (channels,)."""

    modules: list[str]
    classes: list[str]  # every class of the masks, by index
    thresholds: dict[str, torch.Tensor]  # (C,) float32
    hits: dict[str, torch.Tensor]  # (C, K) int64: pixels over threshold on each class
    fired: dict[str, torch.Tensor]  # (C,) int64: pixels over threshold on labelled pixels
    area: torch.Tensor  # (K,) int64: labelled pixels of each class
    quantile: float = 0.005
    min_iou: float = 0.04
    images: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    exact: dict[str, torch.Tensor] = field(default_factory=dict)  # (C,) the exact quantile
    record: dict[str, Any] = field(default_factory=dict, repr=False)  # what made it (file)
    _ious: dict[Any, torch.Tensor] = field(default_factory=dict, repr=False, compare=False)

    def __repr__(self) -> str:
        labelled = sum(s.labelled for s in self.summary())
        units = sum(int(t.shape[0]) for t in self.thresholds.values())
        return (
            f"Dissection({', '.join(self.modules)}: {labelled} of {units} units labelled, "
            f"{len(self.concepts)} concepts, {self.images} images, {len(self.skipped)} skipped)"
        )

    @property
    def concepts(self) -> list[str]:
        return [self.classes[k] for k in self._present().tolist()]

    def _present(self) -> torch.Tensor:
        return (self.area > 0).nonzero().flatten()

    def _module(self, module: str) -> str:
        if module not in self.thresholds:
            hint = did_you_mean(module, self.thresholds)
            hint = f": {hint}" if hint else ""
            raise LayerScopeError(
                f"this dissection has no module {module!r} (it dissected "
                f"{', '.join(self.modules)}){hint}"
            )
        return module

    def threshold(self, module: str) -> torch.Tensor:
        """Each channel's activation threshold (C,): its top-``quantile`` level."""
        return self.thresholds[self._module(module)].clone()

    def _iou(self, module: str) -> torch.Tensor:
        """(C, concepts) float64, computed once per module (``label`` asks for it per unit)."""
        key = (module, id(self.hits.get(module)), id(self.fired.get(module)), id(self.area))
        if key not in self._ious:
            if len(self._ious) > 16:
                self._ious.clear()
            self._ious[key] = self._compute_iou(module)
        return self._ious[key]

    def _compute_iou(self, module: str) -> torch.Tensor:
        present = self._present()
        hits = self.hits[self._module(module)][:, present].double()
        union = self.fired[module].double()[:, None] + self.area[present].double()[None] - hits
        return torch.where(union > 0, hits / union.clamp(min=1), torch.zeros(()).double())

    def iou(self, module: str) -> torch.Tensor:
        """The IoU of every unit with every concept (C, concepts), concepts as
        :attr:`concepts` lists them: intersections over unions summed over all images."""
        return self._iou(module).float()

    def label(self, module: str, channel: int) -> Concept | None:
        """The unit's concept (highest IoU; the first concept on a tie), or None when its IoU
        is under ``min_iou``."""
        iou = self._iou(module)
        if not 0 <= channel < iou.shape[0]:
            raise OutOfRangeError(
                f"channel {channel} is out of range: {module} has {iou.shape[0]} channels"
            )
        return self._labels(module, iou)[channel]

    def labels(self, module: str) -> list[Concept | None]:
        """Every unit's label (:meth:`label`) of ``module``, channel by channel."""
        return self._labels(module)

    def _labels(self, module: str, iou: torch.Tensor | None = None) -> list[Concept | None]:
        iou = self._iou(module) if iou is None else iou
        if iou.shape[1] == 0:
            return [None] * iou.shape[0]
        best, where = iou.max(1)
        present, names = self._present().tolist(), self.concepts
        return [
            Concept(names[int(k)], float(v), present[int(k)]) if float(v) >= self.min_iou else None
            for v, k in zip(best, where)
        ]

    def units(self, concept: str) -> list[tuple[str, int, float]]:
        """The units labelled ``concept`` over every dissected module, as (module, channel,
        IoU), highest IoU first. Only units whose label is this concept: a unit whose IoU with
        it is high but higher still with another concept is listed under that one."""
        if concept not in self.concepts:
            hint = did_you_mean(concept, self.concepts)
            hint = f": {hint}" if hint else ""
            raise LayerScopeError(f"no concept {concept!r} in these masks{hint}")
        found = []
        for module in self.modules:
            for channel, c in enumerate(self._labels(module)):
                if c is not None and c.name == concept:
                    found.append((module, channel, c.iou))
        order = {m: i for i, m in enumerate(self.modules)}
        return sorted(found, key=lambda u: (-u[2], order[u[0]], u[1]))

    def summary(self, top: int = 5) -> Summary:
        """Per module: its labelled units, its distinct concepts, and the ``top`` concepts by
        number of units."""
        out = Summary()
        for module in self.modules:
            labels = [c.name for c in self._labels(module) if c is not None]
            counts: dict[str, int] = {}
            for name in labels:
                counts[name] = counts.get(name, 0) + 1
            ranked = sorted(counts.items(), key=lambda kv: (-kv[1], self.classes.index(kv[0])))
            channels = int(self.thresholds[module].shape[0])
            out.append(ModuleSummary(module, channels, len(labels), len(counts),
                                     tuple(ranked[:top])))  # fmt: skip
        return out

    def save(self, path: str | Path) -> Path:
        """Write the dissection to ``path``: one safetensors file (a JSON header and raw
        tensors, no pickle), see :mod:`layerscope.dissect.format`."""
        from .format import save_dissection

        return save_dissection(self, Path(path))

    @classmethod
    def load(cls, path: str | Path, model: Any = None) -> Dissection:
        """Read a dissection written by :meth:`save` (or by ``dissect(..., path=...)`` once
        finished). ``model`` checks that it was made with this model's weights."""
        from .format import load_dissection

        return load_dissection(Path(path), model)
