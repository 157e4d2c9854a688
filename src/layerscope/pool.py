"""Reusable CPU buffers for captured outputs.

Fresh memory is slow here: the first write to each page faults (about 0.8 ms per MB on the
2-core CI machine, against 0.1 ms per MB for memory already mapped), which made capturing every
module of DeepLabV3 cost more than the forward itself. Outputs have the same sizes from one
capture to the next, so the store gives a buffer back when it drops an entry, and the pool keeps
it for the next capture only if nothing else refers to it any more (no tensor, no view, no numpy
array: the caller may still hold the capture). Buffers still in use are forgotten: their memory
then belongs to whoever holds them.

Whether anything else refers to a buffer is read from the storage's use count, which torch
exposes only privately (``torch._C._storage_Use_Count``). A self-check at start-up verifies that
it still counts what the pool expects; when torch changes it, buffer reuse is switched off with a
warning (captures stay correct, only slower), never trusted blindly."""

from __future__ import annotations

import warnings

import torch

__all__ = ["BufferPool", "REUSE_AVAILABLE"]


def _calibrate() -> int | None:
    """Use count of a buffer nobody else holds, or None when the count cannot be trusted."""
    use_count = getattr(torch._C, "_storage_Use_Count", None)
    if use_count is None:
        return None
    try:

        def count(t: torch.Tensor) -> int:
            return int(use_count(t.untyped_storage()._cdata))

        buf = torch.empty(64, dtype=torch.uint8)
        alone = count(buf)
        view = buf.view(torch.float32).view(4, 4)
        held = count(buf)
        array = view[1:].numpy()
        held_twice = count(buf)
        del view, array
        after = count(buf)
    except Exception:
        return None
    if held > alone and held_twice > held and after == alone:
        return alone
    return None


_IDLE_COUNT = _calibrate()
REUSE_AVAILABLE = _IDLE_COUNT is not None
if not REUSE_AVAILABLE:
    warnings.warn(
        f"LayerScope: torch {torch.__version__} changed torch._C._storage_Use_Count, which "
        "LayerScope uses to tell when a capture buffer may be reused; buffer reuse is off "
        "(captures stay correct, capturing many modules is slower). Please report this.",
        RuntimeWarning,
        stacklevel=2,
    )


def _idle(buf: torch.Tensor) -> bool:
    use_count = torch._C._storage_Use_Count
    return _IDLE_COUNT is not None and use_count(buf.untyped_storage()._cdata) <= _IDLE_COUNT


class BufferPool:
    """Idle byte buffers keyed by size. ``idle_bytes`` is what it holds; the store counts it
    against its memory budget and asks for it back (``release``) before evicting anything."""

    def __init__(self) -> None:
        self.idle_bytes = 0
        self._idle: dict[int, list[torch.Tensor]] = {}

    def empty(self, shape: torch.Size, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """(an uninitialised CPU tensor, the byte buffer behind it): an idle buffer of the
        size when there is one, else fresh memory."""
        numel = 1
        for s in shape:
            numel *= s
        size = numel * dtype.itemsize
        same = self._idle.get(size)
        if same:
            buf = same.pop()
            self.idle_bytes -= size
        else:
            buf = torch.empty(size, dtype=torch.uint8)
        return buf.view(dtype).view(shape), buf

    def give_back(self, buffers: list[torch.Tensor], room: int) -> None:
        """Keep the buffers nobody else refers to, while they fit in ``room`` bytes."""
        for buf in buffers:
            size = buf.numel()
            if REUSE_AVAILABLE and size and _idle(buf) and self.idle_bytes + size <= room:
                self._idle.setdefault(size, []).append(buf)
                self.idle_bytes += size

    def reusable(self, sizes: list[int]) -> int:
        """Bytes of ``sizes`` (one copy's buffers) that idle buffers of the same size can take:
        memory that copy will not need anew."""
        wanted: dict[int, int] = {}
        for size in sizes:
            wanted[size] = wanted.get(size, 0) + 1
        return sum(size * min(n, len(self._idle.get(size, ()))) for size, n in wanted.items())

    def release(self, nbytes: int, spare: list[int] | None = None) -> None:
        """Free idle buffers, largest first, until ``nbytes`` are freed or none is left; keep
        one idle buffer per entry of ``spare`` (the sizes the next copy will reuse)."""
        keep: dict[int, int] = {}
        for size in spare or ():
            keep[size] = keep.get(size, 0) + 1
        for size in sorted(self._idle, reverse=True):
            bufs = self._idle[size]
            while len(bufs) > keep.get(size, 0) and nbytes > 0:
                bufs.pop()
                self.idle_bytes -= size
                nbytes -= size
        self._idle = {s: b for s, b in self._idle.items() if b}

    def clear(self) -> None:
        self._idle.clear()
        self.idle_bytes = 0
