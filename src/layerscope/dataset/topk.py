"""The running top-k images per channel and the channel statistics of one module, merged batch by
batch on the model's device: memory is bounded by channels x k, not by the number of images.

The score of an image for a channel is the channel's maximum over positions (for an (N, C)
output, the value); ties go to the image counted first (the lower index), so the result does not
depend on how the images were split into batches or between workers. Partial results merge
(:meth:`ChannelTopK.merge`): the same selection on the union, the statistics added."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import ArgumentError

__all__ = ["ChannelTopK", "STATE_FIELDS"]


@dataclass
class ChannelTopK:
    """``scores``, ``ids`` (image indices), ``rows`` and ``cols`` (where the maximum is): (C, k),
    best first, -inf / -1 where fewer than k images were seen. ``total``, ``count``, ``peak`` and
    ``zeros``: (C,) sum, number of values, maximum and number of exact zeros over all images and
    positions (finite values only)."""

    k: int
    scores: torch.Tensor | None = None
    ids: torch.Tensor | None = None
    rows: torch.Tensor | None = None
    cols: torch.Tensor | None = None
    total: torch.Tensor | None = None
    count: torch.Tensor | None = None
    peak: torch.Tensor | None = None
    zeros: torch.Tensor | None = None

    @property
    def channels(self) -> int:
        return 0 if self.scores is None else int(self.scores.shape[0])

    def update(self, out: torch.Tensor, ids: torch.Tensor) -> None:
        """Count one batch: ``out`` (B, C, H, W) or (B, C) for the images ``ids`` (B,)."""
        if out.dim() not in (2, 4):
            raise ArgumentError(
                f"an output of shape {tuple(out.shape)} has no (N, C[, H, W]) layout: sweep "
                "modules whose output is (N, C, H, W) or (N, C)"
            )
        x = out.detach().float()
        b, c = x.shape[:2]
        flat = x.reshape(b, c, -1)
        ids = ids.to(x.device, torch.int64)
        # Three passes over the output (maximum with its place, sum, non-zeros), each reading
        # it once: the sweep's cost beside the forward. Sums are exact only when every value is
        # finite, which a finite sum shows; otherwise the masked path below.
        best, where = flat.max(2)  # (B, C)
        sums = flat.sum(2)
        if torch.isfinite(sums).all():
            total = sums.sum(0, dtype=torch.float64)
            count = torch.full((c,), b * flat.shape[2], dtype=torch.int64, device=x.device)
            # A byte count of zeros per (image, channel), then per channel: faster than
            # count_nonzero or a bool sum on CPU; int16 where it cannot overflow.
            small = torch.int16 if flat.shape[2] < 2**15 else torch.int32
            zeros = (flat == 0).view(torch.uint8).sum(2, dtype=small).sum(0, dtype=torch.int64)
            peak = best.amax(0)
        else:
            best, where, total, count, peak, zeros = _masked(flat)
        width = x.shape[-1] if x.dim() == 4 else 1
        new = _Candidates(
            best.T,
            ids[None].expand(c, b),
            (where // width).T.to(torch.int32),
            (where % width).T.to(torch.int32),
        )
        self._add_stats(total, count, peak, zeros)
        self._keep(new)

    def merge(self, other: ChannelTopK) -> None:
        """Add another partial result (other images) to this one."""
        if other.scores is None:
            return
        if self.scores is not None and other.channels != self.channels:
            raise ValueError(f"{other.channels} channels do not merge with {self.channels}")
        assert other.total is not None and other.count is not None
        assert other.peak is not None and other.zeros is not None
        assert other.ids is not None and other.rows is not None and other.cols is not None
        self._add_stats(other.total, other.count, other.peak, other.zeros)
        self._keep(_Candidates(other.scores, other.ids, other.rows, other.cols))

    def to(self, device: str | torch.device) -> ChannelTopK:
        moved = {f: getattr(self, f) for f in STATE_FIELDS}
        return ChannelTopK(
            self.k, **{f: v.to(device) if v is not None else None for f, v in moved.items()}
        )

    def _add_stats(
        self, total: torch.Tensor, count: torch.Tensor, peak: torch.Tensor, zeros: torch.Tensor
    ) -> None:
        if self.total is None:
            self.total, self.count, self.peak, self.zeros = total, count, peak, zeros
            return
        assert self.count is not None and self.peak is not None and self.zeros is not None
        self.total = self.total + total.to(self.total.device)
        self.count = self.count + count.to(self.count.device)
        self.peak = torch.maximum(self.peak, peak.to(self.peak.device))
        self.zeros = self.zeros + zeros.to(self.zeros.device)

    def _keep(self, new: _Candidates) -> None:
        if self.scores is not None:
            assert self.ids is not None and self.rows is not None and self.cols is not None
            device = self.scores.device
            new = _Candidates(
                *(
                    torch.cat([old, n.to(device)], 1)
                    for old, n in zip((self.scores, self.ids, self.rows, self.cols), new)
                )
            )
        # Best score first, the lower image index first among equal scores: two stable sorts.
        by_id = torch.argsort(new.ids, dim=1, stable=True)
        scores = new.scores.gather(1, by_id)
        by_score = torch.argsort(scores, dim=1, descending=True, stable=True)[:, : self.k]
        order = by_id.gather(1, by_score)
        self.scores, self.ids, self.rows, self.cols = (t.gather(1, order) for t in new)


def _masked(flat: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Top scores and statistics of a (B, C, N) output holding infinities or NaNs: those values
    are left out (a NaN or an infinity is no image's score)."""
    finite = torch.isfinite(flat)
    ranked = torch.where(finite, flat, torch.full((), -math.inf, device=flat.device))
    best, where = ranked.max(2)
    values = torch.where(finite, flat, torch.zeros((), device=flat.device))
    return (
        best,
        where,
        values.sum((0, 2), dtype=torch.float64),
        finite.sum((0, 2)).to(torch.int64),
        ranked.amax((0, 2)),
        ((flat == 0) & finite).sum((0, 2)).to(torch.int64),
    )


STATE_FIELDS = ("scores", "ids", "rows", "cols", "total", "count", "peak", "zeros")


class _Candidates(tuple):
    def __new__(
        cls, scores: torch.Tensor, ids: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor
    ) -> _Candidates:
        return super().__new__(cls, (scores, ids, rows, cols))

    @property
    def scores(self) -> torch.Tensor:
        return self[0]

    @property
    def ids(self) -> torch.Tensor:
        return self[1]
