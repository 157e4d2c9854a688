"""Thresholds the first pass could not place, settled in the IoU pass itself, so that a
dissection takes two passes even then.

A channel left open after the sketch pass has a key interval (the fine bin holding its quantile,
or the octave the coarse histogram points to) cut into at most 256 *sub-bins*. In the IoU pass
its values are histogrammed at that finer level (:class:`~.sketch.SketchPart`), and every pixel
where its upsampled map exceeds the interval's lower edge is counted by class in the *bucket*
between two consecutive candidate thresholds (each sub-bin's last value). Afterwards the sub-bin
holding the quantile is known; the threshold is its upper or its lower edge, whichever is nearer
the quantile's rank (within the 0.1 % of rank, or exact when the sub-bin is one value), and the
unit's pixels over it are the buckets above that edge. Only a sub-bin still too full (values
packed within 1/32768 of an octave) takes another sketch pass and another IoU pass."""

from __future__ import annotations

import torch

from .sketch import RANK_ERROR, Level, SketchPart, key_values, sortable_keys

__all__ = ["EDGES", "edge_values", "bucket_of", "settle", "Cut", "Reopen"]

EDGES = 257  # candidate thresholds per open channel: under the interval, then 256 sub-bins
_FINITE = (
    int(sortable_keys(torch.tensor([-float("inf")]))[0]),
    int(sortable_keys(torch.tensor([float("inf")]))[0]),
)


def edge_values(level: Level) -> torch.Tensor:
    """(n, EDGES) float64 candidate thresholds of the level's open channels: the value just
    under the interval, then the last value of each sub-bin of ``2**shift`` keys (past the
    interval's end, its last value again)."""
    idx = level.channels()
    lo, hi, s = level.lo[idx], level.hi[idx], level.shift[idx]
    i = torch.arange(1, EDGES)
    last = torch.minimum(lo[:, None] + (i[None, :] << s[:, None]) - 1, hi[:, None])
    keys = torch.cat([lo[:, None] - 1, last], 1).clamp(*_FINITE)
    return key_values(keys).double()


def bucket_of(values: torch.Tensor, channel: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """For each value (float64) of an open channel (index into ``edges``' rows): how many of
    the channel's candidate thresholds it exceeds. A threshold at edge e takes buckets > e."""
    order = torch.argsort(channel, stable=True)
    sizes = torch.bincount(channel, minlength=edges.shape[0]).tolist()
    found = [
        torch.searchsorted(edges[c], part.contiguous())
        for c, part in enumerate(values[order].split(sizes))
    ]
    bucket = torch.empty_like(channel)
    bucket[order] = torch.cat(found) if found else channel[:0]
    return bucket


class Cut:
    """A settled threshold: candidate ``edge`` (an index into the channel's edges)."""

    def __init__(self, edge: int, exact: bool) -> None:
        self.edge, self.exact = edge, exact


class Reopen:
    """A sub-bin still too full: its interval for another sketch pass."""

    def __init__(self, lo: int, hi: int, shift: int, target: int) -> None:
        self.interval = (lo, hi, shift, target)


def settle(part: SketchPart, level: Level, values: torch.Tensor) -> list[Cut | Reopen]:
    """For each open channel of ``level`` (``values``: its values in the first pass): the
    candidate threshold nearest its quantile's rank, or the sub-bin to open further."""
    out: list[Cut | Reopen] = []
    for i, c in enumerate(level.channels().tolist()):
        lo, hi, s = (int(level.lo[c]), int(level.hi[c]), int(level.shift[c]))
        count = int(part.count[i])
        m = min(max(int(level.target[c]), 1), max(count, 1))
        cum = part.fine[i].cumsum(0)
        j = int((cum < m).sum()) if count else 0
        j = min(j, cum.shape[0] - 1)
        n = int(part.fine[i, j]) if count else 0
        above = int(cum[j]) - n
        sub = int(part.top[i]) - j - (lo >> s) if count else 0  # the sub-bin of the quantile
        r = m - above
        one_value = s == 0 or (count > 0 and float(part.vmin[i]) == float(part.vmax[i]))
        if one_value or n == 0:
            out.append(Cut(sub + 1, count > 0))  # every value of the sub-bin is the quantile
            continue
        upper, lower = r - 1, n - r + 1  # values on the wrong side of each edge
        if min(upper, lower) <= int(values[c] * RANK_ERROR):
            out.append(Cut(sub + 1 if upper <= lower else sub, False))
            continue
        kl = max(lo, lo + (sub << s))
        kh = min(hi, kl + (1 << s) - 1)
        out.append(Reopen(kl, kh, max(0, s - 8), r))
    return out
