"""The last few payloads, kept by the tensors they were computed from.

A click back to a module whose output the capture served again from its store (the very same
tensors, not written since through autograd-visible ops) reuses that module's layer payload
instead of computing its statistics, histogram and maps again (about 35 ms for
``backbone.layer4`` at 520 px on two cores); likewise its Grad-CAM payload while the store
keeps the same CAM and gradient. Only payloads are kept, never tensors: the entries hold weak
references, so an output the store evicts (or replaces with a new capture) makes its entry
useless, and the memory budget keeps bounding what LayerScope holds."""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import torch

from ..nested import iter_tensors

_Stamp = list[tuple["weakref.ref[torch.Tensor]", int]]
_P = TypeVar("_P")


def _stamp(output: Any) -> _Stamp | None:
    tensors = list(iter_tensors(output))
    if not tensors or any(t.is_inference() for t in tensors):  # no version counter to read
        return None
    return [(weakref.ref(t), t._version) for t in tensors]


def _same(stamp: _Stamp, output: Any) -> bool:
    tensors = list(iter_tensors(output))
    return len(tensors) == len(stamp) and all(
        ref() is t and t._version == version for (ref, version), t in zip(stamp, tensors)
    )


class PayloadMemo:
    """A small LRU of payloads; ``key`` is everything else a payload depends on."""

    def __init__(self, size: int = 8) -> None:
        self._size = size
        self._items: OrderedDict[Hashable, tuple[_Stamp, Any]] = OrderedDict()

    def get(self, key: Hashable, output: Any) -> Any | None:
        item = self._items.get(key)
        if item is None or not _same(item[0], output):
            return None
        self._items.move_to_end(key)
        return item[1]

    def get_or_make(self, key: Hashable, output: Any, make: Callable[[], _P]) -> _P:
        """The payload kept for ``key`` and these very tensors, else ``make()`` (kept)."""
        payload: _P | None = self.get(key, output)
        if payload is None:
            payload = make()
            self.put(key, output, payload)
        return payload

    def put(self, key: Hashable, output: Any, payload: Any) -> None:
        stamp = _stamp(output)
        if stamp is None:  # nothing to recognise the output by
            return
        self._items[key] = (stamp, payload)
        self._items.move_to_end(key)
        while len(self._items) > self._size:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()
