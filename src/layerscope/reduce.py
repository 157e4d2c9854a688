"""Reductions from a captured tensor to what a view needs. They run on the tensor's own device
(a GPU stays a GPU); only the small results are copied to the CPU as numpy arrays.

Statistics and histograms are taken over the finite values and say how many NaN, +inf and -inf
there were; maps keep NaN where a value was not finite, so a view can mark those cells."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, TypedDict

import numpy as np
import torch
import torch.nn.functional as F

from .errors import ArgumentError, OutOfRangeError

__all__ = [
    "Aggregate",
    "Stats",
    "channel_map",
    "aggregate",
    "topk_channels",
    "histogram",
    "stats",
    "value_at",
    "pool_factor",
    "pool_mean",
    "pool_max",
]

Aggregate = Literal["mean", "max", "l2"]


class StatsJson(TypedDict):
    """:meth:`Stats.to_json` (the widget's ``StatsPayload``): over the finite values; ``nan``,
    ``posinf`` and ``neginf`` count the others."""

    mean: float
    std: float
    min: float
    max: float
    zero_fraction: float
    count: int
    nan: int
    posinf: int
    neginf: int


@dataclass(frozen=True)
class Stats:
    """Mean, std, min, max and fraction of exact zeros over the ``count`` finite values; how
    many values were NaN, +inf and -inf."""

    mean: float
    std: float
    min: float
    max: float
    zero_fraction: float
    count: int
    nan: int = 0
    posinf: int = 0
    neginf: int = 0

    def to_json(self) -> StatsJson:
        return {"mean": self.mean, "std": self.std, "min": self.min, "max": self.max,
                "zero_fraction": self.zero_fraction, "count": self.count, "nan": self.nan,
                "posinf": self.posinf, "neginf": self.neginf}  # fmt: skip


def _f32(t: torch.Tensor) -> torch.Tensor:
    return t if t.dtype == torch.float32 else t.float()


def channel_map(maps: torch.Tensor, channel: int) -> np.ndarray:
    """One channel of (C, H, W) maps as a float32 (H, W) array."""
    if not 0 <= channel < maps.shape[0]:
        raise OutOfRangeError(
            f"channel {channel} out of range: this layer has {maps.shape[0]} channels"
        )
    return _f32(maps[channel]).cpu().numpy()


def aggregate(maps: torch.Tensor, how: Aggregate = "mean") -> np.ndarray:
    """Mean, max or L2 norm over the channels of (C, H, W) maps, as an (H, W) array."""
    m = _f32(maps)
    if how == "mean":
        out = m.mean(dim=0)
    elif how == "max":
        out = m.amax(dim=0)
    elif how == "l2":
        out = torch.linalg.vector_norm(m, dim=0)
    else:
        raise ArgumentError(f"aggregate must be 'mean', 'max' or 'l2', got {how!r}")
    return out.cpu().numpy()


def topk_channels(
    maps: torch.Tensor, k: int = 16, by: Literal["mean", "max"] = "mean"
) -> np.ndarray:
    """Indices of the ``k`` channels with the highest mean (or max) activation over their
    finite values, best first."""
    m = _f32(maps).flatten(1)
    finite = None if bool(torch.isfinite(m.sum())) else torch.isfinite(m)
    if finite is None or bool(finite.all()):
        score = m.mean(dim=1) if by == "mean" else m.amax(dim=1)
    else:
        zeroed = torch.where(finite, m, torch.zeros((), device=m.device))
        if by == "mean":
            score = zeroed.sum(1) / finite.sum(1).clamp_min(1)
        else:
            score = torch.where(finite, m, torch.full((), -math.inf, device=m.device)).amax(1)
    k = min(k, maps.shape[0])
    return torch.topk(score, k).indices.cpu().numpy()


def _finite(v: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """The finite values of a flat tensor and (NaN, +inf, -inf) counts; no copy when all are
    finite (the common case)."""
    if bool(torch.isfinite(v.sum())):  # one cheap pass: NaN or inf anywhere makes the sum so
        return v, (0, 0, 0)
    ok = torch.isfinite(v)
    if bool(ok.all()):  # only huge values overflowed the sum
        return v, (0, 0, 0)
    counts = torch.stack([torch.isnan(v).sum(), (v == math.inf).sum(), (v == -math.inf).sum()])
    nan, posinf, neginf = (int(c) for c in counts.cpu().tolist())
    return v[ok], (nan, posinf, neginf)


def histogram(
    t: torch.Tensor, bins: int = 64, value_range: tuple[float, float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(counts, edges) of the finite values of ``t``; ``len(edges) == bins + 1``."""
    v, _ = _finite(_f32(t).flatten())
    if v.numel() == 0:
        return np.zeros(bins, np.int64), np.linspace(0.0, 1.0, bins + 1)
    low, high = (float(x) for x in torch.aminmax(v))
    lo, hi = value_range if value_range else (low, high)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = low, high
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    counts = torch.histc(v, bins=bins, min=lo, max=hi)
    return counts.cpu().numpy().astype(np.int64), np.linspace(lo, hi, bins + 1)


def stats(t: torch.Tensor) -> Stats:
    """Mean, std, min, max and the fraction of exact zeros (what a ReLU switched off), over
    the finite values, with the counts of the others."""
    v, (nan, posinf, neginf) = _finite(_f32(t).flatten())
    if v.numel() == 0:
        return Stats(0.0, 0.0, 0.0, 0.0, 0.0, 0, nan, posinf, neginf)
    std = v.std(unbiased=False) if v.numel() > 1 else torch.zeros((), device=v.device)
    low, high = torch.aminmax(v)
    zeros = (v == 0).sum() / v.numel()
    # One transfer for all five numbers.
    mean, sd, lo, hi, zf = torch.stack([v.mean(), std, low, high, zeros]).cpu().tolist()
    return Stats(mean, sd, lo, hi, zf, count=v.numel(), nan=nan, posinf=posinf, neginf=neginf)


def value_at(maps: torch.Tensor, row: int, col: int) -> np.ndarray:
    """Every channel's value at one cell, as a (C,) array."""
    return _f32(maps[:, row, col]).cpu().numpy()


def pool_factor(h: int, w: int, side: int) -> int:
    """The smallest integer pooling that brings an (h, w) map to at most ``side`` a side."""
    return max(1, math.ceil(max(h, w) / side))


def pool_mean(maps: torch.Tensor, f: int) -> torch.Tensor:
    """(C, H, W) maps averaged over f x f cells (the last row and column may be partial)."""
    if f == 1:
        return _f32(maps)
    return F.avg_pool2d(_f32(maps).unsqueeze(0), f, ceil_mode=True).squeeze(0)


def pool_max(maps: torch.Tensor, f: int) -> torch.Tensor:
    """(C, H, W) maps reduced to the maximum of each f x f cell."""
    if f == 1:
        return _f32(maps)
    return F.max_pool2d(_f32(maps).unsqueeze(0), f, ceil_mode=True).squeeze(0)
