"""A byte-budgeted store of captured outputs that doubles as the cache between captures.

The budget is checked before each copy is made, so what LayerScope holds never exceeds it:
first older captures are evicted (least recently used), then outputs are kept in bfloat16
(half the bytes, float32's range), and as a last resort the oldest outputs of the running
capture are dropped. Every such step is written into the capture's MemoryReport.

When an earlier forward showed the sizes, ``plan`` takes these decisions before the forward,
so nothing is copied only to be converted or dropped later; ``add_call`` still enforces the
budget call by call, for first runs and for outputs whose size differs from the plan."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import torch

from .activations import MemoryReport
from .nested import iter_tensors, map_tensors
from .pool import BufferPool

__all__ = ["ActivationStore", "DEFAULT_MEMORY_BUDGET", "output_bytes"]

DEFAULT_MEMORY_BUDGET = 2**30  # 1 GiB
REDUCED_DTYPE = torch.bfloat16

EntryKey = tuple[Hashable, str]


@dataclass
class _Entry:
    calls: list[Any] = field(default_factory=list)
    nbytes: int = 0
    complete: bool = False
    reduced: bool = False
    evicted: bool = False


def output_bytes(obj: Any, reduce: bool) -> int:
    """Bytes a copy of ``obj`` takes, with floats in bfloat16 when ``reduce``."""
    total = 0
    for t in iter_tensors(obj):
        size = t.element_size()
        if reduce and t.is_floating_point() and size > 2:
            size = 2
        total += t.numel() * size
    return total


def _copy(obj: Any, storage: torch.device | None, reduce: bool, pool: BufferPool | None) -> Any:
    def one(t: torch.Tensor) -> torch.Tensor:
        dtype = REDUCED_DTYPE if reduce and t.is_floating_point() and t.element_size() > 2 else None
        device = storage or t.device
        # One copy, straight to the storage device and dtype: the clone that makes in-place ops
        # after the module harmless.
        if pool is not None and device.type == "cpu":
            return pool.empty(t.shape, dtype or t.dtype).copy_(t.detach())
        return t.detach().to(device=device, dtype=dtype or t.dtype, copy=True)

    return map_tensors(obj, one)


class ActivationStore:
    """Captured outputs keyed by (input key, module name), in least-recently-used order."""

    def __init__(self, budget_bytes: int = DEFAULT_MEMORY_BUDGET) -> None:
        if budget_bytes <= 0:
            raise ValueError(
                f"memory_budget must be a positive number of bytes, got {budget_bytes}"
            )
        self.used_bytes = 0
        self.pool = BufferPool(int(budget_bytes))
        self.budget_bytes = int(budget_bytes)
        self._entries: OrderedDict[EntryKey, _Entry] = OrderedDict()

    @property
    def budget_bytes(self) -> int:
        return self._budget

    @budget_bytes.setter
    def budget_bytes(self, value: int) -> None:
        self._budget = int(value)
        self.pool.limit_bytes = self._budget  # pooled buffers count against the same budget

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, key: EntryKey) -> list[Any] | None:
        """The complete list of calls stored for ``key``, or None; marks it recently used."""
        entry = self._entries.get(key)
        if entry is None or not entry.complete:
            return None
        self._entries.move_to_end(key)
        return entry.calls

    def is_reduced(self, key: EntryKey) -> bool:
        entry = self._entries.get(key)
        return bool(entry and entry.reduced)

    def start(self, key: EntryKey) -> None:
        """Open an empty entry for a module about to be captured (drops any stale one)."""
        self._drop(key)
        self._entries[key] = _Entry()

    def plan(
        self,
        items: list[tuple[EntryKey, int, int]],
        *,
        protected: set[EntryKey],
        report: MemoryReport,
    ) -> None:
        """Decide precision and evictions for entries about to be filled, oldest first.
        ``items``: (key, bytes at full precision, bytes reduced) in execution order."""
        need = sum(full for _, full, _ in items)
        if self.used_bytes + need > self.budget_bytes:
            report.evicted_cached += self._evict(need, keep=protected)
        room = self.budget_bytes - self.used_bytes
        all_reduced = sum(reduced for _, _, reduced in items)
        for key, full, reduced in items:  # while even bfloat16 won't fit, the oldest are dropped
            if all_reduced <= room:
                break
            all_reduced -= reduced
            need -= full
            self._entries[key].evicted = True
            report.evicted.append(key[1])
        for key, full, reduced in items:  # then the oldest of the rest are kept in bfloat16
            if need <= room:
                break
            entry = self._entries[key]
            if entry.evicted or full == reduced:
                continue
            entry.reduced = True
            need -= full - reduced
            report.reduced.append(key[1])

    def add_call(
        self,
        key: EntryKey,
        output: Any,
        *,
        storage: torch.device | None,
        protected: set[EntryKey],
        report: MemoryReport,
    ) -> None:
        """Copy one call's output into the entry ``key``, within the budget."""
        entry = self._entries[key]
        if entry.evicted:
            return
        need = output_bytes(output, reduce=entry.reduced)
        if self.used_bytes + need > self.budget_bytes:
            report.evicted_cached += self._evict(need, keep=protected)
        if self.used_bytes + need > self.budget_bytes and not entry.reduced:
            entry.reduced = True
            need = output_bytes(output, reduce=True)
            # Earlier calls of this module were stored at full precision; bring them down too.
            entry.calls = [_copy(c, None, True, None) for c in entry.calls]
            self.used_bytes -= entry.nbytes
            entry.nbytes = sum(output_bytes(c, False) for c in entry.calls)
            self.used_bytes += entry.nbytes
            report.reduced.append(key[1])
        if self.used_bytes + need > self.budget_bytes:
            report.evicted.extend(self._evict_oldest(need, among=protected - {key}))
        if self.used_bytes + need > self.budget_bytes:
            self._drop(key)
            self._entries[key] = _Entry(evicted=True)
            report.evicted.append(key[1])
            return
        entry.calls.append(_copy(output, storage, entry.reduced, self.pool))
        entry.nbytes += need
        self.used_bytes += need
        report.peak_bytes = max(report.peak_bytes, self.used_bytes)
        self._entries.move_to_end(key)

    def finish(self, keys: list[EntryKey], complete: bool) -> None:
        """Close the entries of a capture: finished ones become cache hits; evicted, half-written
        (the forward raised) and placeholder entries go. Earlier complete entries stay."""
        for key in keys:
            entry = self._entries.get(key)
            if entry is None or (entry.complete and not entry.evicted):
                continue
            if complete and not entry.evicted:
                entry.complete = True
            else:
                self._drop(key)

    def take(self, key: EntryKey) -> list[Any]:
        entry = self._entries.get(key)
        return [] if entry is None or entry.evicted else entry.calls

    def discard(self, keys: list[EntryKey]) -> None:
        for key in keys:
            self._drop(key)

    def clear(self) -> None:
        """Drop every entry and the pooled buffers."""
        self._entries.clear()
        self.used_bytes = 0
        self.pool.clear()

    def _drop(self, key: EntryKey) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.used_bytes -= entry.nbytes

    def _evict(self, need: int, keep: set[EntryKey]) -> int:
        evicted = 0
        for key in list(self._entries):
            if self.used_bytes + need <= self.budget_bytes:
                break
            if key not in keep:
                self._drop(key)
                evicted += 1
        return evicted

    def _evict_oldest(self, need: int, among: set[EntryKey]) -> list[str]:
        names = []
        for key in list(self._entries):
            if self.used_bytes + need <= self.budget_bytes:
                break
            entry = self._entries[key]
            if key in among and not entry.evicted and entry.calls:
                self._drop(key)
                self._entries[key] = _Entry(evicted=True)
                names.append(key[1])
        return names
