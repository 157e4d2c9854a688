"""A byte-budgeted store of captured outputs that doubles as the cache between captures.

The budget bounds everything the store holds: its entries and the idle buffers kept for reuse.
It is checked before each copy is made, so the store never exceeds it: first idle buffers are
freed, then older entries are evicted (least recently used first), then outputs are kept in
bfloat16 (half the bytes, float32's range), and as a last resort the oldest outputs of the
running capture are dropped. Every such step is written into the capture's MemoryReport.

When an earlier forward showed the sizes, ``plan`` takes these decisions before the forward,
so nothing is copied only to be converted or dropped later; ``add_call`` still enforces the
budget call by call, for first runs and for outputs whose size differs from the plan.

Byte counts follow every change and are recounted from what the entries hold when a capture
finishes (``finish`` runs also after an interrupt), so an interrupted capture cannot leave the
accounting wrong."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

import torch

from .activations import MemoryReport
from .errors import ArgumentError
from .nested import iter_tensors, map_tensors
from .pool import BufferPool

__all__ = ["ActivationStore", "DEFAULT_MEMORY_BUDGET", "output_bytes"]

DEFAULT_MEMORY_BUDGET = 2**30  # 1 GiB
REDUCED_DTYPE = torch.bfloat16

EntryKey = tuple[Hashable, Hashable]
CallKey = tuple[Hashable, str]  # a module's calls: (the capture's group, the module's name)


@dataclass
class _Entry:
    calls: list[Any] = field(default_factory=list)
    buffers: list[torch.Tensor] = field(default_factory=list)  # pooled memory behind the calls
    nbytes: int = 0
    complete: bool = False
    reduced: bool = False
    evicted: bool = False
    check: Hashable = None  # what must still hold for the entry to be served (weights' digest)


def output_bytes(obj: Any, reduce: bool) -> int:
    """Bytes a copy of ``obj`` takes, with floats in bfloat16 when ``reduce``."""
    total = 0
    for t in iter_tensors(obj):
        size = t.element_size()
        if reduce and t.is_floating_point() and size > 2:
            size = 2
        total += t.numel() * size
    return total


class ActivationStore:
    """Captured outputs keyed by (input key, module name), in least-recently-used order."""

    def __init__(self, budget_bytes: int = DEFAULT_MEMORY_BUDGET) -> None:
        if budget_bytes <= 0:
            raise ArgumentError(
                f"memory_budget must be a positive number of bytes, got {budget_bytes}"
            )
        self.budget_bytes = int(budget_bytes)
        self.budget_set = False  # set explicitly by a user (a later different value warns)
        self.pool = BufferPool()
        self._entries: OrderedDict[EntryKey, _Entry] = OrderedDict()
        self._used = 0

    @property
    def used_bytes(self) -> int:
        """Bytes held by the entries."""
        return self._used

    def recount(self, keys: list[EntryKey] | None = None) -> None:
        """The bytes of ``keys``' entries (all when None), from what they hold, and the total."""
        for key in self._entries if keys is None else keys:
            entry = self._entries.get(key)
            if entry is not None:
                entry.nbytes = sum(output_bytes(c, False) for c in entry.calls)
        self._used = sum(e.nbytes for e in self._entries.values())

    @property
    def held_bytes(self) -> int:
        """Bytes held in all: the entries and the idle buffers kept for reuse."""
        return self.used_bytes + self.pool.idle_bytes

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, key: EntryKey) -> list[Any] | None:
        """The complete list of calls stored for ``key``, or None; marks it recently used."""
        entry = self._entries.get(key)
        if entry is None or not entry.complete:
            return None
        self._entries.move_to_end(key)
        return entry.calls

    def check_of(self, key: EntryKey) -> Hashable:
        entry = self._entries.get(key)
        return entry.check if entry is not None else None

    def set_check(self, key: EntryKey, check: Hashable) -> None:
        entry = self._entries.get(key)
        if entry is not None:
            entry.check = check

    def start(self, key: EntryKey, check: Hashable = None) -> None:
        """Open an empty entry for a module about to be captured (drops any stale one)."""
        self._drop(key)
        self._entries[key] = _Entry(check=check)

    def plan(
        self,
        items: list[tuple[CallKey, int, int]],
        *,
        protected: set[CallKey],
        report: MemoryReport,
    ) -> None:
        """Decide precision and evictions for entries about to be filled, oldest first.
        ``items``: (key, bytes at full precision, bytes reduced) in execution order."""
        need = sum(full for _, full, _ in items)
        # Idle buffers are taken as reused (sizes repeat from one capture to the next);
        # add_call checks each copy exactly, when memory is really taken.
        fresh = max(0, need - self.pool.idle_bytes)
        report.evicted_cached += self._make_room(fresh, keep=protected)
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
        key: CallKey,
        output: Any,
        *,
        storage: torch.device | None,
        protected: set[CallKey],
        report: MemoryReport,
    ) -> None:
        """Copy one call's output into the entry ``key``, within the budget."""
        entry = self._entries[key]
        if entry.evicted:
            return
        pooled = storage is None or storage.type == "cpu"
        need, sizes = self._needs(output, entry.reduced, pooled, storage)
        report.evicted_cached += self._make_room(need, keep=protected, spare=sizes)
        if not self._fits(need, sizes) and not entry.reduced:
            # Earlier calls of this module were stored at full precision; bring them down too.
            entry.reduced = True
            entry.calls = [self._copy(c, None, True, None) for c in entry.calls]
            self._release_buffers(entry)
            self.settle(key)
            need, sizes = self._needs(output, True, pooled, storage)
            report.reduced.append(key[1])
        if not self._fits(need, sizes):
            report.evicted.extend(self._evict_running(need, among=protected - {key}, spare=sizes))
        if not self._fits(need, sizes):
            self._drop(key)
            self._entries[key] = _Entry(evicted=True)
            report.evicted.append(key[1])
            return
        entry.calls.append(self._copy(output, storage, entry.reduced, entry.buffers))
        entry.nbytes += need
        self._used += need
        report.peak_bytes = max(report.peak_bytes, self.held_bytes)
        self._entries.move_to_end(key)

    def _needs(
        self, output: Any, reduce: bool, pooled: bool, storage: torch.device | None
    ) -> tuple[int, list[int]]:
        """(bytes the copy takes, the sizes of the pooled buffers it takes them in)."""
        need = output_bytes(output, reduce=reduce)
        sizes = []
        if pooled:
            for t in iter_tensors(output):
                if (storage or t.device).type != "cpu":
                    continue
                size = t.element_size()
                if reduce and t.is_floating_point() and size > 2:
                    size = 2
                sizes.append(t.numel() * size)
        return need, sizes

    def _fits(self, need: int, spare: list[int] | None = None) -> bool:
        """Whether a copy of ``need`` bytes fits; what idle buffers of its ``spare`` sizes
        take is no new memory."""
        fresh = need - (self.pool.reusable(spare) if spare else 0)
        return self.held_bytes + fresh <= self.budget_bytes

    def put(self, key: EntryKey, value: Any, check: Hashable = None) -> bool:
        """Keep a derived result (Grad-CAM's gradients) under the same budget; False when it
        does not fit even after evicting every other entry (then nothing is kept)."""
        need = output_bytes(value, reduce=False)
        self._drop(key)
        self._make_room(need, keep=set())
        if not self._fits(need):
            return False
        self._entries[key] = _Entry(calls=[value], nbytes=need, complete=True, check=check)
        self._used += need
        return True

    def shrink(self) -> None:
        """Fit within the budget now: idle buffers first, then the least recently used."""
        self._make_room(0, keep=set())

    def settle(self, key: EntryKey) -> None:
        """Recompute an entry's bytes from what it holds."""
        entry = self._entries.get(key)
        if entry is not None:
            before = entry.nbytes
            entry.nbytes = sum(output_bytes(c, False) for c in entry.calls)
            self._used += entry.nbytes - before

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
        self.recount(keys)

    def take(self, key: EntryKey) -> list[Any]:
        entry = self._entries.get(key)
        return [] if entry is None or entry.evicted else entry.calls

    def discard(self, keys: list[EntryKey]) -> None:
        for key in keys:
            self._drop(key)

    def clear(self) -> None:
        """Drop every entry and the idle buffers."""
        for key in list(self._entries):
            self._drop(key)
        self.pool.clear()

    def _copy(
        self,
        obj: Any,
        storage: torch.device | None,
        reduce: bool,
        buffers: list[torch.Tensor] | None,
    ) -> Any:
        def one(t: torch.Tensor) -> torch.Tensor:
            small = reduce and t.is_floating_point() and t.element_size() > 2
            dtype = REDUCED_DTYPE if small else t.dtype
            device = storage or t.device
            # One copy, straight to the storage device and dtype: the clone that makes in-place
            # ops after the module harmless.
            if buffers is not None and device.type == "cpu":
                out, buf = self.pool.empty(t.shape, dtype)
                buffers.append(buf)
                return out.copy_(t.detach())
            return t.detach().to(device=device, dtype=dtype, copy=True)

        return map_tensors(obj, one)

    def _release_buffers(self, entry: _Entry) -> None:
        """Give an entry's pooled buffers back once its calls no longer hold them."""
        buffers, entry.buffers = entry.buffers, []
        room = self.budget_bytes - self.used_bytes
        self.pool.give_back(buffers, room=max(0, room))

    def _drop(self, key: EntryKey) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._used -= entry.nbytes
            entry.calls = []
            entry.nbytes = 0
            self._release_buffers(entry)

    def _make_room(
        self, need: int, keep: AbstractSet[EntryKey], spare: list[int] | None = None
    ) -> int:
        """Free idle buffers (but those of the ``spare`` sizes the copy reuses), then evict older
        entries, until ``need`` more bytes fit."""
        if self._fits(need, spare):
            return 0
        self.pool.release(self._over(need, spare), spare)
        evicted = 0
        for key in list(self._entries):
            if self._fits(need, spare):
                break
            if key not in keep:
                self._drop(key)
                self.pool.release(self._over(need, spare), spare)
                evicted += 1
        return evicted

    def _over(self, need: int, spare: list[int] | None) -> int:
        fresh = need - (self.pool.reusable(spare) if spare else 0)
        return self.held_bytes + fresh - self.budget_bytes

    def _evict_running(self, need: int, among: set[CallKey], spare: list[int]) -> list[str]:
        names = []
        for key in [k for k in self._entries if k in among]:  # oldest first
            if self._fits(need, spare):
                break
            entry = self._entries[key]
            if not entry.evicted and entry.calls:
                self._drop(key)
                self.pool.release(self._over(need, spare), spare)
                self._entries[key] = _Entry(evicted=True)
                names.append(key[1])
        return names
