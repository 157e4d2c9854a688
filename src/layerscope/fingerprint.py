"""Keys that say when two captures would see the same thing: same input values, same weights,
same module structure. Used by the cache and by the learned execution orders.

What invalidates the cache (docs/capture.md repeats this list): any change of an input's values,
shape, dtype or device, however it was made (in place, through ``.data`` or through a numpy
array sharing its memory: the values are hashed on every capture); any change of a parameter's
or buffer's values, however it was made (``optimizer.step()``, ``load_state_dict``,
``p.data.mul_()``, a numpy view): a content fingerprint of the weights is compared before a
cached output is served; a parameter or buffer replaced, added or removed; a module replaced.

The fingerprint of a module's output covers the weights it can depend on: those of the modules
that ran before its last call finished (its ancestors included) and of the modules that never
run as modules (whose weights may be read directly, like a tied embedding's). The one pattern it
does not see: a module whose forward reads the weights of a module that runs only after it."""

from __future__ import annotations

import os
from collections.abc import Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
import xxhash
from torch import nn

from .nested import Dropped, map_tensors

__all__ = [
    "input_signature",
    "input_digest",
    "weights_version",
    "weights_fingerprint",
    "tensor_digests",
    "module_weights",
    "structure_id",
]

_INT_VIEW = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
_THREADS = ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1)))


def input_signature(inputs: tuple[Any, ...]) -> Hashable:
    """Shapes, dtypes and devices of the inputs: what an execution order depends on."""

    def sig(t: torch.Tensor) -> tuple[Any, ...]:
        return (tuple(t.shape), str(t.dtype), str(t.device))

    return _freeze(map_tensors(inputs, sig))


def _cpu_bytes(t: torch.Tensor) -> memoryview:
    data = t.detach()
    if data.device.type != "cpu":
        data = data.cpu()
    data = data.contiguous()
    if data.is_complex():
        data = torch.view_as_real(data)
    data = data.view(_INT_VIEW[data.element_size()]) if data.element_size() in _INT_VIEW else data
    return data.numpy().data.cast("B")


def tensor_digest(t: torch.Tensor) -> bytes:
    """XXH3-128 of a tensor's values (about 10 GB/s). Taken on every call: a tensor's version
    counter does not move when its memory is written through ``.data`` or a numpy array, so
    nothing is memoised."""
    return xxhash.xxh3_128_digest(_cpu_bytes(t))


def input_digest(inputs: tuple[Any, ...]) -> Hashable | None:
    """A digest of the inputs' values, or None when they hold something that cannot be hashed
    safely (then nothing is cached)."""
    h = xxhash.xxh3_128()

    def feed(t: torch.Tensor) -> str:
        h.update(tensor_digest(t))
        return f"{tuple(t.shape)}{t.dtype}{t.device}"

    frozen = _freeze(map_tensors(inputs, feed))
    if _has_dropped(frozen):
        return None
    return (frozen, h.hexdigest())


def _weights(named: dict[str, nn.Module]) -> list[torch.Tensor]:
    # The modules' own dictionaries: ``model.parameters()`` costs milliseconds on a large model.
    return [
        t
        for m in named.values()
        for d in (m._parameters, m._buffers)
        for t in d.values()
        if t is not None
    ]


def weights_version(named: dict[str, nn.Module]) -> Hashable:
    """Cheap: changes when a parameter or buffer is replaced or changed in place through
    autograd-visible ops. Blind to writes through ``.data`` or numpy views; for those,
    :func:`weights_fingerprint` looks at the values."""
    return tuple((t.data_ptr(), t._version) for t in _weights(named))


def _device_fingerprint(t: torch.Tensor) -> tuple[int, int]:
    """Position-sensitive sums of a tensor's bits, computed on its own device (a GPU stays a
    GPU): any change of any element changes them, but for a 2**-64 chance."""
    flat = t.detach().contiguous().reshape(-1)
    if flat.is_complex():
        flat = torch.view_as_real(flat).reshape(-1)
    bits = flat.view(_INT_VIEW[flat.element_size()]).to(torch.int64)
    index = torch.arange(bits.numel(), device=bits.device, dtype=torch.int64)
    mixed = bits * (index * 2654435761 % 2147483629 + 1)
    return int(bits.sum()), int(mixed.sum())


def tensor_digests(tensors: list[torch.Tensor]) -> dict[int, Hashable]:
    """A digest of each tensor's values, by ``id``: XXH3-128 on the CPU (in a few threads of
    about equal bytes: the hashing releases the GIL), device-side sums on a GPU."""
    cpu = [t for t in tensors if t.device.type == "cpu" and t.element_size() in _INT_VIEW]
    workers = _THREADS._max_workers
    chunks: list[list[torch.Tensor]] = [[] for _ in range(workers)]
    loads = [0] * workers
    for t in sorted(cpu, key=lambda t: -t.numel() * t.element_size()):
        i = loads.index(min(loads))
        chunks[i].append(t)
        loads[i] += t.numel() * t.element_size()

    def digest(chunk: list[torch.Tensor]) -> list[tuple[int, Hashable]]:
        return [(id(t), xxhash.xxh3_128_intdigest(_cpu_bytes(t))) for t in chunk]

    out: dict[int, Hashable] = dict(p for part in _THREADS.map(digest, chunks) for p in part)
    for t in tensors:
        if id(t) not in out:
            out[id(t)] = _device_fingerprint(t)
    return out


def module_weights(named: dict[str, nn.Module], modules: set[str] | None) -> list[torch.Tensor]:
    """The parameters and buffers that ``modules`` own themselves (all when None)."""
    chosen = named if modules is None else {n: named[n] for n in modules if n in named}
    return _weights(chosen)


def weights_fingerprint(named: dict[str, nn.Module], modules: set[str] | None = None) -> Hashable:
    """A digest of the values of the parameters and buffers of ``modules`` (all when None):
    about 10 ms for all of DeepLabV3-ResNet50's 160 MB on two CPU cores. Compared before a
    cached output is served, so writes through ``.data`` are seen."""
    tensors = module_weights(named, modules)
    digests = tensor_digests(tensors)
    return tuple(digests[id(t)] for t in tensors)


def structure_id(names_to_modules: dict[str, nn.Module]) -> Hashable:
    return tuple((name, id(m)) for name, m in names_to_modules.items())


def architecture_id(names_to_modules: dict[str, nn.Module]) -> Hashable:
    """The modules and their settings (``extra_repr``: a convolution's stride, padding and
    dilation, a pooling's kernel...): what receptive fields and the path to a unit depend on,
    also after a setting is changed in place (``conv.stride = (1, 1)``)."""
    return tuple(
        (name, id(m), type(m).__qualname__, m.extra_repr()) for name, m in names_to_modules.items()
    )


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
