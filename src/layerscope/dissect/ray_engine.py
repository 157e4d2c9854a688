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

from ..dataset.ship import driver_only_modules, missing_module_error, pickled_by_value
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
    try:
        import ray
    except ImportError as exc:
        raise LayerScopeError(
            "engine='ray' needs Ray: pip install 'layerscope[ray]' (or ray[data])"
        ) from exc
    if not todo:
        return
    if not ray.is_initialized():
        ray.init()  # RAY_ADDRESS when set, else a local cluster
    gpus = ray.cluster_resources().get("GPU", 0)
    cpus = ray.cluster_resources().get("CPU", 1)
    pool = actors or max(1, int(gpus) if gpus else min(2, int(cpus)))
    reads = job.needs_masks and masks.kind != "model"  # a model's masks come from forwards
    items = Items(sources, preprocess, masks if reads else None, todo)
    if getattr(job, "masks", None) is not None and job.masks.own:  # one copy of the model
        job = replace(job, masks=replace(job.masks, model=None))
    others = [sources.items if sources.kind == "dataset" else None, masks.dataset, masks.model]
    shipped = driver_only_modules(model, preprocess, *others)
    cpu_model = model.to("cpu") if device.type != "cpu" else model
    try:
        with pickled_by_value(shipped):
            ds: Any = ray.data.from_items([{"position": i} for i in range(len(todo))])
            ds = ds.map(_Prepare(items))
            ds = ds.map_batches(
                _Reduce,
                fn_constructor_args=(ray.put(cpu_model), job),
                batch_size=batch_size,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=pool),
                num_gpus=1 if gpus else 0,
            )
            for batch in ds.iter_batches(batch_size=1, batch_format="numpy"):
                for blob in batch["partial"]:
                    kind, value = pickle.loads(blob)
                    if kind == "fatal":
                        raise LayerScopeError(value)
                    done(value)
    except ray.exceptions.RayError as exc:  # a worker failed; an import: say which and why
        missing = missing_module_error(exc)
        if missing is None:
            raise
        raise missing from exc
    finally:
        if device.type != "cpu":
            model.to(device)
