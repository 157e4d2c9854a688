"""Where a unit fires, and what is there: the pixels at which a unit's map, upsampled bilinearly
(``align_corners=False``) to the mask's size, exceeds the unit's threshold, counted against the
mask's classes.

Upsampling every channel to the input's size is most of what a dissection would cost beside its
forwards (DeepLabV3's layer3 and layer4 at 224 px: 154 million values per image), yet a unit
exceeds its top-0.5 % threshold on about 1 % of the pixels. An upsampled pixel is a weighted mean
of the four map values around it (a *block*: rows j, j + 1 and columns k, k + 1 of the map, the
last row and column repeated at the border), so it can exceed the threshold only in a block whose
largest value does. Only those blocks' pixels are computed, in float64 from the float32 map
values: the bilinear value itself up to 1e-16, so which pixels fire is the mathematical answer,
not an artefact of a kernel's float32 rounding (a plateau exactly at the threshold never fires;
``F.interpolate`` of the same maps in float64 gives the same pixels)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .sketch import SketchPart

__all__ = ["unit_hits", "count_hits", "class_areas", "bilinear_table", "Tally", "Pending"]

_CHUNK = 1 << 22  # block pixels computed at once


def bilinear_table(n_in: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For an axis upsampled from ``n_in`` to ``n_out`` (``align_corners=False``): output ``y``
    lies at input ``(y + 0.5) n_in / n_out - 0.5`` (clamped at 0), between cell ``floor`` of it
    and the next (the last repeated), with the next cell's weight the fraction. Returns the
    output positions in runs of at most ``ceil(n_out / n_in)`` sharing a cell (runs, S) padded
    with -1, each cell's runs (n_in, A) padded with -1, and the weights (n_out,) float64."""
    y = torch.arange(n_out, dtype=torch.float64)
    src = (((2 * y + 1) * n_in - n_out) / (2 * n_out)).clamp(min=0)
    cell = src.floor().long().clamp(max=n_in - 1)  # non-decreasing in y
    weight = (src - cell.double()).clamp(0, 1)
    size = max(1, -(-n_out // n_in))
    place = torch.arange(n_out) - torch.searchsorted(cell, torch.arange(n_in))[cell]
    starts = place % size == 0  # a run starts every `size` outputs of a cell
    run = starts.long().cumsum(0) - 1
    runs = torch.full((max(1, int(starts.sum())), size), -1, dtype=torch.long)
    runs[run, place % size] = torch.arange(n_out)
    run_cell = cell[starts]  # the cell of each run, non-decreasing
    ids = torch.arange(len(run_cell))
    index = ids - torch.searchsorted(run_cell, torch.arange(n_in))[run_cell]
    most = int(index.max()) + 1 if len(ids) else 1
    cell_runs = torch.full((n_in, most), -1, dtype=torch.long)
    cell_runs[run_cell, index] = ids
    return runs, cell_runs, weight


def unit_hits(
    acts: torch.Tensor, thresholds: torch.Tensor, size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The pixels where the upsampled maps of ``acts`` (B, C, h, w) exceed ``thresholds`` (C,):
    (pair, pixel) int64 index tensors, pair = b * C + c, pixel = y * W + x at ``size`` (H, W),
    and the upsampled values there (float64)."""
    b, c, h, w = acts.shape
    height, width = size
    dev = acts.device
    maps = acts.detach().float().reshape(b * c, h, w)
    t = thresholds.to(dev, torch.float32).repeat(b)
    # The largest of each block's four values (the last row and column repeated).
    pad = F.pad(maps, (0, 1, 0, 1), mode="replicate")
    peak = torch.maximum(
        torch.maximum(pad[:, :-1, :-1], pad[:, :-1, 1:]),
        torch.maximum(pad[:, 1:, :-1], pad[:, 1:, 1:]),
    )
    p, j, k = (peak > t[:, None, None]).nonzero().unbind(1)
    row_runs, row_of_cell, wy = (v.to(dev) for v in bilinear_table(h, height))
    col_runs, col_of_cell, wx = (v.to(dev) for v in bilinear_table(w, width))
    nan = torch.full((1,), torch.nan, dtype=torch.float64, device=dev)
    wy, wx = torch.cat([wy, nan]), torch.cat([wx, nan])  # a pad (-1) weighs NaN: never fires
    # Each hot block, once per run of rows and run of columns of its band (1 but at borders).
    ry, rx = row_of_cell[j], col_of_cell[k]  # (n, Ay), (n, Ax): -1 pads
    valid = (ry >= 0)[:, :, None] & (rx >= 0)[:, None, :]
    n, iy, ix = valid.nonzero().unbind(1)
    p, j, k, ry, rx = p[n], j[n], k[n], ry[n, iy], rx[n, ix]
    found_pairs, found_pixels, found_values = [], [], []
    per_chunk = max(1, _CHUNK // (row_runs.shape[1] * col_runs.shape[1]))
    for part in torch.arange(len(p), device=dev).split(per_chunk):
        pp, jj, kk = p[part], j[part], k[part]
        j1, k1 = (jj + 1).clamp(max=h - 1), (kk + 1).clamp(max=w - 1)
        a, bb = maps[pp, jj, kk].double(), maps[pp, jj, k1].double()
        cc, d = maps[pp, j1, kk].double(), maps[pp, j1, k1].double()
        ys, xs = row_runs[ry[part]], col_runs[rx[part]]  # (m, S), (m, T): -1 pads
        lx, ly = wx[xs], wy[ys]
        upper = a[:, None] + (bb - a)[:, None] * lx  # along row j, at each column
        lower = cc[:, None] + (d - cc)[:, None] * lx  # along row j + 1
        value = upper[:, None, :] + (lower - upper)[:, None, :] * ly[:, :, None]
        fires = value > t[pp].double()[:, None, None]
        m, r, q = fires.nonzero().unbind(1)
        found_pairs.append(pp[m])
        found_pixels.append(ys[m, r] * width + xs[m, q])
        found_values.append(value[m, r, q])
    if not found_pairs:
        empty = torch.zeros(0, dtype=torch.int64, device=dev)
        return empty, empty, torch.zeros(0, dtype=torch.float64, device=dev)
    return torch.cat(found_pairs), torch.cat(found_pixels), torch.cat(found_values)


def count_hits(
    pairs: torch.Tensor, pixels: torch.Tensor, masks: torch.Tensor, channels: int, classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per channel: the hits on each class (C, K) and on any labelled pixel (C,), from
    :func:`unit_hits` and the masks (B, H * W), -1 where ignored."""
    image, channel = pairs // channels, pairs % channels
    label = masks[image, pixels]
    label = torch.where(label < 0, classes, label)
    index = channel * (classes + 1) + label
    counts = torch.bincount(index, minlength=channels * (classes + 1))
    counts = counts.view(channels, classes + 1)[:, :classes].cpu()
    return counts, counts.sum(1)


def class_areas(masks: torch.Tensor, classes: int) -> torch.Tensor:
    """Labelled pixels of each class (K,) in masks (B, H * W), -1 where ignored."""
    labelled = masks[masks >= 0]
    return torch.bincount(labelled, minlength=classes)[:classes].cpu()


def _widen(t: torch.Tensor, k: int) -> torch.Tensor:
    """Counts of K classes (the last dimension) as counts of k >= K (the masks held higher
    values elsewhere: classes named ``class i`` grow with them)."""
    return t if t.shape[-1] == k else F.pad(t, (0, k - t.shape[-1]))


@dataclass
class Pending:
    """The open channels of a module in an IoU pass: their values at a finer level (``part``)
    and their labelled pixels by bucket between candidate thresholds (n, EDGES + 1, K)."""

    part: SketchPart
    buckets: torch.Tensor

    def merge(self, other: Pending) -> None:
        self.part.merge(other.part)
        k = max(self.buckets.shape[-1], other.buckets.shape[-1])
        self.buckets = _widen(self.buckets, k) + _widen(other.buckets, k)


@dataclass
class Tally:
    """One module's counts: ``hits`` (C, K) pixels where the unit fires on each class, and
    ``fired`` (C,) where it fires on any labelled pixel (summed over images); ``pending``: the
    channels whose threshold is still open."""

    hits: torch.Tensor
    fired: torch.Tensor
    pending: Pending | None = None

    def merge(self, other: Tally) -> None:
        k = max(self.hits.shape[1], other.hits.shape[1])
        self.hits = _widen(self.hits, k) + _widen(other.hits, k)
        self.fired = self.fired + other.fired
        if self.pending is None:
            self.pending = other.pending
        elif other.pending is not None:
            self.pending.merge(other.pending)

    def cpu(self) -> Tally:
        pending = self.pending
        if pending is not None:
            pending = Pending(pending.part.cpu(), pending.buckets.cpu())
        return Tally(self.hits.cpu(), self.fired.cpu(), pending)
