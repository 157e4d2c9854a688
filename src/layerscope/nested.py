"""Walking nested module outputs (tensor, tuple, list, dict, namedtuple, nested) in one place."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["Dropped", "map_tensors", "iter_tensors", "describe", "first_tensor"]

# Leaves that are safe to keep as they are: immutable, cheap, and meaningful to a reader.
_PLAIN = (int, float, complex, bool, str, bytes, type(None), torch.Size, torch.dtype, torch.device)


@dataclass(frozen=True)
class Dropped:
    """Stands where a module output held something that is not a tensor nor a plain value
    (an object LayerScope cannot safely copy). Its type is kept so the reader sees what it was."""

    type_name: str

    def __repr__(self) -> str:
        return f"<dropped {self.type_name}>"


def map_tensors(obj: Any, fn: Callable[[torch.Tensor], Any]) -> Any:
    """Rebuild ``obj`` with ``fn`` applied to every tensor; containers keep their type."""
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, _PLAIN) or isinstance(obj, Dropped):
        return obj
    if isinstance(obj, dict):
        items = [(k, map_tensors(v, fn)) for k, v in obj.items()]
        try:
            return type(obj)(items)
        except TypeError:  # a dict subclass with another constructor
            return dict(items)
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # namedtuple
        return type(obj)(*(map_tensors(v, fn) for v in obj))
    if isinstance(obj, (tuple, list)):
        values = [map_tensors(v, fn) for v in obj]
        try:
            return type(obj)(values)
        except TypeError:
            return list(values) if isinstance(obj, list) else tuple(values)
    return Dropped(type(obj).__name__)


def iter_tensors(obj: Any) -> Iterator[torch.Tensor]:
    """Every tensor in ``obj``, depth first, in container order."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from iter_tensors(v)
    elif isinstance(obj, (tuple, list)):
        for v in obj:
            yield from iter_tensors(v)


def first_tensor(obj: Any) -> torch.Tensor | None:
    """The first tensor of ``obj`` (the ``out`` of a dict output), or None."""
    return next(iter_tensors(obj), None)


def describe(obj: Any) -> Any:
    """A JSON-ready summary of the structure: shapes for tensors, the same nesting around them."""
    if isinstance(obj, torch.Tensor):
        return list(obj.shape)
    if isinstance(obj, dict):
        return {str(k): describe(v) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return [describe(v) for v in obj]
    if isinstance(obj, Dropped):
        return repr(obj)
    return type(obj).__name__
