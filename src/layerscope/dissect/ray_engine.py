"""A dissection's passes (and an ablation measure) on Ray Data: images and masks read and
prepared in a map stage, the model in an actor pool reducing each batch to partial counts (the
same :class:`~layerscope.dissect.work.Partial` as the local engine), merged on the driver. The
counts are exact, so the result does not depend on how the images were split. Code of the user's
own modules travels by value, as for sweeps (:mod:`layerscope.dataset.ship`)."""

from __future__ import annotations

import pickle
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import nn

from ..dataset.ray_engine import map_on_ray
from ..dataset.ship import driver_only_modules
from ..dataset.sources import Sources
from ..errors import LayerScopeError
from .masks import Masks
from .work import Done, Items, reduce_items

__all__ = ["run_ray"]


class _Prepare:
    """A Ray task: image index -> its prepared item, pickled (or the error that stops the run:
    a class value beyond the classes)."""

    def __init__(self, items: Items) -> None:
        self.items = items

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        index = int(row["position"])
        try:
            blob, fatal = pickle.dumps(self.items[index]), ""
        except LayerScopeError as exc:  # a mask of a class beyond the classes
            blob, fatal = b"", str(exc)
        return {"blob": blob, "fatal": fatal}


class _Reduce:
    """A Ray actor holding one copy of the model: a batch of items -> one partial."""

    def __init__(self, model: Any, job: Any) -> None:
        import ray

        self.model = ray.get(model) if isinstance(model, ray.ObjectRef) else model
        if torch.cuda.is_available():
            self.model.to("cuda")
        self.device = next((p.device for p in self.model.parameters()), torch.device("cpu"))
        self.named = dict(self.model.named_modules())
        self.job = job

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        fatal = [str(f) for f in batch["fatal"] if f]
        if fatal:
            return {"partial": np.array([pickle.dumps(("fatal", fatal[0]))], dtype=object)}
        items = [pickle.loads(b) for b in batch["blob"]]
        part = reduce_items(self.job, self.model, self.named, items, self.device).cpu()
        return {"partial": np.array([pickle.dumps(("ok", part))], dtype=object)}


def run_ray(
    job: Any, model: nn.Module, sources: Sources, preprocess: Any, masks: Masks,
    todo: list[int], *, batch_size: int, device: torch.device, done: Done,
    actors: int | None = None,
) -> None:  # fmt: skip
    """Run ``job`` over the images ``todo`` on Ray, ``done(partial)`` per batch."""
    reads = job.needs_masks and masks.kind != "model"  # a model's masks come from forwards
    items = Items(sources, preprocess, masks if reads else None, todo)
    if getattr(job, "masks", None) is not None and job.masks.own:  # one copy of the model
        job = replace(job, masks=replace(job.masks, model=None))
    others = [sources.items if sources.kind == "dataset" else None, masks.dataset, masks.model]
    shipped = driver_only_modules(model, preprocess, *others)

    def each(blob: Any) -> None:
        kind, value = blob
        if kind == "fatal":
            raise LayerScopeError(value)
        done(value)

    map_on_ray(model, device, [{"position": i} for i in range(len(todo))], _Prepare(items),
               _Reduce, (job,), batch_size=batch_size, actors=actors, shipped=shipped,
               each=each)  # fmt: skip
