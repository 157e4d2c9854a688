"""The gate of an edited forward: when a cached output may stand in for a module, and when the
module must run.

:func:`layerscope.intervene` (and channel importance) let modules stand in with their cached
outputs while nothing they read can differ from the cached run. This module is that judgement,
apart from the running of the edits: :class:`Taint` follows the memory that holds values derived
from an edit (and notices when such a value leaves torch's ops: ``.item()``, ``.numpy()``...);
:class:`Gated` replaces a module's forward and stands in only while the taint says it may."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from .nested import iter_tensors, map_tensors

__all__ = ["Taint", "Gated"]

# Functions of a tensor that return facts about its layout, not its values: their results
# cannot carry an edit. Any other non-tensor result read from an edited value is an escape.
_METADATA = frozenset(
    {"size", "dim", "ndimension", "numel", "nelement", "stride", "storage_offset", "__len__",
     "is_contiguous", "is_floating_point", "is_complex", "is_signed", "element_size",
     "get_device", "shape", "ndim", "dtype", "device", "layout", "requires_grad", "is_leaf",
     "is_cuda", "is_sparse", "is_quantized", "is_meta", "is_nested", "grad_fn", "names",
     "__iter__"}  # __iter__ yields views, which share the storage (still marked)
)  # fmt: skip
_PLAIN_META = (torch.Size, torch.dtype, torch.device, torch.layout, torch.memory_format)


def _func_name(func: Any) -> str:
    owner = getattr(func, "__self__", None)  # a property's __get__: the property's name
    if getattr(func, "__name__", "") == "__get__" and owner is not None:
        return str(getattr(owner, "__name__", ""))
    return str(getattr(func, "__name__", ""))


def _values_leave(out: Any) -> bool:
    """Whether ``out`` holds something other than tensors (a float, a list, an array...)."""
    if out is None or isinstance(out, (torch.Tensor, *_PLAIN_META)):
        return False
    if isinstance(out, dict):
        return any(_values_leave(v) for v in out.values())
    if isinstance(out, (tuple, list)):
        return any(_values_leave(v) for v in out)
    return True


class Taint(TorchFunctionMode):
    """Which memory holds values derived from an edit, by storage: an op that reads any of it
    marks what it returns (in place too; an op that returns no tensor, such as ``__setitem__``,
    marks its tensor arguments). Too many marks cost only speed: a module whose inputs are
    marked runs instead of standing in. ``escaped``: a value derived from an edit left torch's
    ops (``.item()``, ``.tolist()``, ``.numpy()``, ``bool()``...): what follows may depend on
    it in ways no storage shows, so nothing stands in after that."""

    def __init__(self) -> None:
        super().__init__()
        self.storages: set[int] = set()
        self.escaped = False

    def mark(self, obj: Any) -> None:
        with torch._C.DisableTorchFunction():  # our own look at storages is no escape
            for t in iter_tensors(obj):
                self.storages.add(t.untyped_storage().data_ptr())

    def touches(self, obj: Any) -> bool:
        with torch._C.DisableTorchFunction():
            return any(t.untyped_storage().data_ptr() in self.storages for t in iter_tensors(obj))

    def __torch_function__(
        self, func: Callable[..., Any], types: Any, args: Any = (), kwargs: Any = None
    ) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.storages and self.touches((list(args), kwargs)):
            if _values_leave(out) and _func_name(func) not in _METADATA:
                self.escaped = True
            self.mark(out)
            if not any(True for _ in iter_tensors(out)):
                self.mark((list(args), kwargs))  # no tensor back: it wrote into an argument
        return out


def _opaque(obj: Any) -> bool:
    """Whether ``obj`` holds something the gate cannot look into (an object that may hold
    tensors): a module called with it runs instead of standing in once an edit happened."""
    if obj is None or isinstance(obj, (torch.Tensor, int, float, complex, bool, str, bytes)):
        return False
    if isinstance(obj, dict):
        return any(_opaque(v) for v in obj.values())
    if isinstance(obj, (tuple, list)):
        return any(_opaque(v) for v in obj)
    return not isinstance(obj, (torch.Size, torch.dtype, torch.device))


def _state(modules: list[nn.Module]) -> Iterator[Any]:
    """What the model's modules hold between calls: parameters, buffers, tensor attributes
    (a tensor an earlier module stored for a later one to read)."""
    for m in modules:
        yield from m._parameters.values()
        yield from m._buffers.values()
        yield from (v for k, v in m.__dict__.items() if k not in _MODULE_INTERNALS)


_MODULE_INTERNALS = frozenset({"_parameters", "_buffers", "_modules"})


class Gated:
    """Stands in for a module's forward with its cached outputs, call after call, on the
    model's device, ``batch`` rows (a view of one row, so an in-place write fails instead of
    spoiling the cache; a copy for one row), as long as they are valid: it runs the module's
    own forward instead when an argument holds values derived from an edit, when the model's
    state (parameters, buffers, attributes) does, when a value derived from an edit escaped
    torch's ops, or beyond the calls cached. Each module that ran its own forward is added to
    ``ran`` (as ``name``)."""

    def __init__(
        self,
        calls: list[Any],
        device: torch.device | None,
        batch: int,
        forward: Callable[..., Any],
        taint: Taint,
        ran: set[str],
        name: str,
        modules: list[nn.Module],
    ) -> None:
        self.calls, self.device, self.batch, self.index = calls, device, batch, 0
        self.forward, self.taint, self.ran, self.name = forward, taint, ran, name
        self.modules = modules

    def valid(self, args: Any, kwargs: Any) -> bool:
        if self.index >= len(self.calls):
            return False
        if not self.taint.storages:
            return True  # no edit yet: nothing can differ from the cached run
        inputs = (list(args), kwargs)
        if self.taint.escaped or _opaque(inputs) or self.taint.touches(inputs):
            return False
        return not self.taint.touches(list(_state(self.modules)))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not self.valid(args, kwargs):
            self.index += 1
            self.ran.add(self.name)
            return self.forward(*args, **kwargs)
        out = self.calls[self.index]
        self.index += 1

        def one(t: torch.Tensor) -> torch.Tensor:
            t = t.to(self.device) if self.device is not None else t
            if self.batch > 1 and t.dim() and t.shape[0] == 1:
                return t.expand(self.batch, *t.shape[1:])
            return t.clone()

        return map_tensors(out, one)
