"""Reusable CPU buffers for captured outputs.

Fresh memory is slow here: the first write to each page faults (about 0.8 ms per MB on the
2-core CI machine, against 0.1 ms per MB for memory already mapped), which made capturing every
module of DeepLabV3 cost more than the forward itself. Outputs have the same sizes from one
capture to the next, so buffers are lent out and taken back once nothing refers to them any
more: no tensor, no view, no numpy array (the storage's use count says so)."""

from __future__ import annotations

import torch

__all__ = ["BufferPool"]

_use_count = getattr(torch._C, "_storage_Use_Count", None)


def _unused(buf: torch.Tensor) -> bool:
    # The pool's tensor holds one reference and the temporary storage wrapper another.
    return _use_count is not None and _use_count(buf.untyped_storage()._cdata) <= 2


class BufferPool:
    """Byte buffers keyed by size; ``limit_bytes`` caps what the pool may hold in all."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self.held_bytes = 0
        self._buffers: dict[int, list[torch.Tensor]] = {}

    def empty(self, shape: torch.Size, dtype: torch.dtype) -> torch.Tensor:
        """An uninitialised CPU tensor, from a free buffer when one of the size is free."""
        numel = 1
        for s in shape:
            numel *= s
        size = numel * dtype.itemsize
        if _use_count is None or size == 0:
            return torch.empty(shape, dtype=dtype)
        same = self._buffers.setdefault(size, [])
        for buf in same:
            if _unused(buf):
                return buf.view(dtype).view(shape)
        if self.held_bytes + size > self.limit_bytes:
            self._release_unused()
            if self.held_bytes + size > self.limit_bytes:
                return torch.empty(shape, dtype=dtype)
        buf = torch.empty(size, dtype=torch.uint8)
        same.append(buf)
        self.held_bytes += size
        return buf.view(dtype).view(shape)

    def _release_unused(self) -> None:
        for size, bufs in self._buffers.items():
            keep = [b for b in bufs if not _unused(b)]
            self.held_bytes -= size * (len(bufs) - len(keep))
            bufs[:] = keep

    def clear(self) -> None:
        """Forget every buffer; ones still in use stay alive through their users only."""
        self._buffers.clear()
        self.held_bytes = 0
