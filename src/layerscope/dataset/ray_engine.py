"""The Ray Data engine: images read, decoded and preprocessed in a Ray Data map stage (Ray fuses
it into the actor pool's workers when it can); the model in an actor pool (one model per actor, a
GPU per actor where there are any) that reduces each batch to partial top-k and statistics; the
partials merged on the driver. Top-k and statistics are
mergeable (:class:`~layerscope.dataset.topk.ChannelTopK`), so the result does not depend on how
the images were split.

Connects to the cluster Ray itself would pick (``RAY_ADDRESS``, or a session already
initialised with ``ray.init``), else starts a local one. ``pip install layerscope[ray]``."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import LayerScopeError
from .local import Done, forward_by_shape
from .ship import driver_only_modules, missing_module_error, pickled_by_value
from .sources import Sources
from .topk import ChannelTopK

__all__ = ["run_ray", "map_on_ray"]


class _Decode:
    """A Ray task: image index -> its model input as bytes (or why it could not be read)."""

    def __init__(self, sources: Sources, preprocess: Any) -> None:
        self.sources, self.preprocess = sources, preprocess

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        index = int(row["index"])
        try:
            x = self.sources.prepare(index, self.preprocess).tensor[0].float().contiguous()
        except ImportError:  # the preprocessing's code is missing here: no image's fault
            raise
        except Exception as exc:  # unreadable, corrupt: reported, never fatal
            return {
                "index": index,
                "shape": [],
                "data": b"",
                "error": f"{type(exc).__name__}: {exc}",
            }
        return {"index": index, "shape": list(x.shape), "data": x.numpy().tobytes(), "error": ""}


class _Reduce:
    """A Ray actor holding one copy of the model: a batch of inputs -> one partial result."""

    def __init__(self, model: Any, modules: list[str], k: int) -> None:
        import ray

        # The model comes through the object store (one copy per node), not inside the UDF.
        self.model = ray.get(model) if isinstance(model, ray.ObjectRef) else model
        self.modules, self.k = modules, k
        if torch.cuda.is_available():
            self.model.to("cuda")
        self.device = next((p.device for p in self.model.parameters()), torch.device("cpu"))
        self.named = dict(self.model.named_modules())

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        states = {n: ChannelTopK(self.k) for n in self.modules}
        good, skipped = [], []
        for index, dims, data, error in zip(batch["index"], batch["shape"], batch["data"],
                                            batch["error"]):  # fmt: skip
            if error:
                skipped.append((int(index), str(error)))
                continue
            x = torch.frombuffer(bytearray(data), dtype=torch.float32).reshape(*map(int, dims))
            good.append((int(index), x))
        shapes = forward_by_shape(self.model, self.named, self.modules, states, good, self.device)
        counted = [i for i, _ in good]
        partial = {n: s.to("cpu") for n, s in states.items()}
        blob = pickle.dumps((partial, counted, skipped, shapes))
        return {"partial": np.array([blob], dtype=object)}


def run_ray(
    model: nn.Module,
    sources: Sources,
    modules: list[str],
    states: dict[str, ChannelTopK],
    todo: list[int],
    *,
    preprocess: Any,
    batch_size: int,
    device: torch.device,
    done: Done,
    actors: int | None = None,
) -> None:
    k = next(iter(states.values())).k
    # Code from the user's own modules (next to the notebook) travels by value: the workers
    # may not have them on their path.
    dataset = sources.items if sources.kind == "dataset" else None
    shipped = driver_only_modules(model, preprocess, dataset)

    def each(blob: Any) -> None:
        partial, counted, skipped, shapes = blob
        done(counted, skipped, shapes, partial)

    map_on_ray(model, device, [{"index": i} for i in todo], _Decode(sources, preprocess),
               _Reduce, (modules, k), batch_size=batch_size, actors=actors, shipped=shipped,
               each=each)  # fmt: skip


def map_on_ray(
    model: nn.Module,
    device: torch.device,
    rows: list[dict[str, Any]],
    prepare: Callable[[dict[str, Any]], dict[str, Any]],
    reducer: type,
    reducer_args: tuple[Any, ...],
    *,
    batch_size: int,
    actors: int | None,
    shipped: Any,
    each: Callable[[Any], None],
) -> None:
    """The Ray skeleton sweeps and dissections share: ``prepare`` each row in a map stage,
    ``reducer(model, *reducer_args)`` in an actor pool (one model per actor, a GPU each where
    the cluster has them) turning each batch into ``{"partial": [pickled]}``, and ``each`` of
    the unpickled partials on the driver. The user's modules in ``shipped`` travel by value;
    a worker's failed import is said plainly; the model goes back to ``device``."""
    try:
        import ray
    except ImportError as exc:
        raise LayerScopeError(
            "engine='ray' needs Ray: pip install 'layerscope[ray]' (or ray[data])"
        ) from exc
    if not rows:
        return
    if not ray.is_initialized():
        ray.init()  # RAY_ADDRESS when set, else a local cluster
    gpus = ray.cluster_resources().get("GPU", 0)
    cpus = ray.cluster_resources().get("CPU", 1)
    pool = actors or max(1, int(gpus) if gpus else min(2, int(cpus)))
    cpu_model = model.to("cpu") if device.type != "cpu" else model
    try:
        with pickled_by_value(shipped):
            ds: ray.data.Dataset = ray.data.from_items(rows)
            ds = ds.map(prepare)
            ds = ds.map_batches(
                reducer,
                fn_constructor_args=(ray.put(cpu_model), *reducer_args),
                batch_size=batch_size,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=pool),
                num_gpus=1 if gpus else 0,
            )
            for batch in ds.iter_batches(batch_size=1, batch_format="numpy"):
                for blob in batch["partial"]:
                    each(pickle.loads(blob))
    except ray.exceptions.RayError as exc:  # a worker failed; an import: say which and why
        missing = missing_module_error(exc)
        if missing is None:
            raise
        raise missing from exc
    finally:
        if device.type != "cpu":
            model.to(device)
