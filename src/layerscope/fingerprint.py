"""Keys that say when two captures would see the same thing: same input, same weights, same
module structure. Used by the cache and by the learned execution orders."""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Hashable
from typing import Any

import torch
from torch import nn

from .nested import Dropped, map_tensors

__all__ = ["input_signature", "input_digest", "weights_version", "structure_id"]


def input_signature(inputs: tuple[Any, ...]) -> Hashable:
    """Shapes, dtypes and devices of the inputs: what an execution order depends on."""

    def sig(t: torch.Tensor) -> tuple[Any, ...]:
        return (tuple(t.shape), str(t.dtype), str(t.device))

    return _freeze(map_tensors(inputs, sig))


# id(tensor) -> (weak reference, version, data pointer, digest): hashing a 520 px image costs
# milliseconds, so the same unchanged tensor object is hashed once.
_DIGESTS: dict[int, tuple[weakref.ref[torch.Tensor], int, int, bytes]] = {}


def tensor_digest(t: torch.Tensor) -> bytes:
    """SHA-1 of a tensor's values, remembered while the tensor object lives unchanged."""
    memo = _DIGESTS.get(id(t))
    if memo is not None and memo[0]() is t and memo[1:3] == (t._version, t.data_ptr()):
        return memo[3]
    data = t.detach()
    if data.device.type != "cpu":
        data = data.cpu()
    data = data.contiguous()
    if data.dtype == torch.bfloat16:
        data = data.view(torch.int16)
    digest = hashlib.sha1(memoryview(data.numpy()).cast("B")).digest()
    key = id(t)
    _DIGESTS[key] = (weakref.ref(t, lambda _ref: _DIGESTS.pop(key, None)), t._version,
                     t.data_ptr(), digest)  # fmt: skip
    return digest


def input_digest(inputs: tuple[Any, ...]) -> Hashable | None:
    """A digest of the inputs' values, or None when they hold something that cannot be hashed
    safely (then nothing is cached)."""
    h = hashlib.sha1()

    def feed(t: torch.Tensor) -> str:
        h.update(tensor_digest(t))
        return f"{tuple(t.shape)}{t.dtype}{t.device}"

    frozen = _freeze(map_tensors(inputs, feed))
    if _has_dropped(frozen):
        return None
    return (frozen, h.hexdigest())


def weights_version(named: dict[str, nn.Module]) -> Hashable:
    """Changes whenever a parameter or buffer is replaced or modified in place
    (``optimizer.step()``, ``load_state_dict``, ``model.to(...)``). Reads the modules' own
    dictionaries: ``model.parameters()`` costs milliseconds on a large model."""
    return tuple(
        (t.data_ptr(), t._version)
        for m in named.values()
        for d in (m._parameters, m._buffers)
        for t in d.values()
        if t is not None
    )


def structure_id(names_to_modules: dict[str, nn.Module]) -> Hashable:
    return tuple((name, id(m)) for name, m in names_to_modules.items())


def _freeze(obj: Any) -> Any:
    if isinstance(obj, dict):
        return ("dict", tuple((k, _freeze(v)) for k, v in obj.items()))
    if isinstance(obj, (tuple, list)):
        return (type(obj).__name__, tuple(_freeze(v) for v in obj))
    return obj


def _has_dropped(obj: Any) -> bool:
    if isinstance(obj, Dropped):
        return True
    if isinstance(obj, tuple):
        return any(_has_dropped(v) for v in obj)
    return False
