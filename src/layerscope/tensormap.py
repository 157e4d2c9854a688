"""Values kept by tensor identity while a forward runs: each entry goes when its tensor is
freed (a weak reference), so a new tensor that reuses a freed one's ``id`` is never mistaken
for it. The flow recorder (producers) and the tracer (grids) both keep one."""

from __future__ import annotations

import weakref
from typing import Any, Generic, TypeVar

import torch

__all__ = ["TensorMap"]

V = TypeVar("V")


class TensorMap(Generic[V]):
    def __init__(self) -> None:
        self._of: dict[int, tuple[weakref.ref[torch.Tensor], V]] = {}

    def set(self, t: torch.Tensor, value: V) -> None:
        key = id(t)

        def forget(_r: weakref.ref[torch.Tensor]) -> None:
            self._of.pop(key, None)

        self._of[key] = (weakref.ref(t, forget), value)

    def get(self, t: Any) -> V | None:
        """``t``'s value; None for anything else (not a tensor, or not kept)."""
        if not isinstance(t, torch.Tensor):
            return None
        hit = self._of.get(id(t))
        return hit[1] if hit is not None and hit[0]() is t else None

    def discard(self, t: torch.Tensor) -> None:
        self._of.pop(id(t), None)
