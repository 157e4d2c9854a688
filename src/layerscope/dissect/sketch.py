"""Each channel's threshold, the (1 - quantile) quantile of its values over every position of
every image, from a sketch whose memory does not grow with the number of images and whose
partial results merge exactly (batches, Ray workers, a resumed run: any split gives the same
counts, so the same thresholds).

A float32 value is ordered like its *key* (its bits read as an integer, the magnitude bits of a
negative number flipped). One pass fills, per channel:

- a fine histogram of keys with 16 bits kept (bins 1/128 of an octave wide: 0.78 % in value),
  :data:`WINDOW` bins down from the channel's largest value (4 octaves), re-anchored as a larger
  value comes, so its counts are a function of the values alone, not of their order;
- a coarse histogram (one bin per octave and sign) over every value, and the count of zeros;
- the :data:`TOP_EXACT` largest values, while the quantile's rank can still be among them;
- the minimum and the maximum.

The threshold is read off when it lies within :data:`RANK_ERROR` (0.1 %) of its rank: the
``m``-th largest value is exact when ``m`` is within the kept largest values, and otherwise any
value of the fine bin holding rank ``m`` is within the bin's count of it. When that bin holds more
than 0.1 % of the values, or the rank lies below the window, the channel stays open at a
narrower :class:`Level`: that bin (8 more bits: exact after two) or that octave, which the IoU
pass settles (:mod:`.refine`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import torch

__all__ = ["Level", "SketchPart", "ChannelThresholds", "rank_from_top", "keeps_exact",
           "sortable_keys", "key_values", "RANK_ERROR", "TOP_EXACT", "WINDOW"]  # fmt: skip

RANK_ERROR = 0.001  # a threshold's rank is within this fraction of the values of the exact one
TOP_EXACT = 128  # the largest values kept exactly per channel
WINDOW = 512  # fine bins below a channel's largest value: 4 octaves
FINE_SHIFT = 16  # key bits dropped by the first pass's fine bins
COARSE = 512  # one bin per octave and sign (key >> 23), plus one for left-out values
_EMPTY = -(2**40)  # the anchor of a histogram that has seen nothing
_LOW, _HIGH = -(2**31), 2**31 - 1  # every key


def sortable_keys(x: torch.Tensor) -> torch.Tensor:
    """int32 keys ordered as the float32 values are (-0.0 just below +0.0: no value lies
    between them, so a threshold at either splits the values alike)."""
    bits = x.float().contiguous().view(torch.int32)
    return bits ^ ((bits >> 31) & 0x7FFFFFFF)


def key_values(keys: torch.Tensor) -> torch.Tensor:
    """The float32 values of keys (the inverse of :func:`sortable_keys`)."""
    k = keys.to(torch.int32)
    return (k ^ ((k >> 31) & 0x7FFFFFFF)).view(torch.float32)


def keeps_exact(values: int, quantile: float) -> bool:
    """Whether a first pass over ``values`` values per channel keeps the largest exactly: when
    the 0.1 % of rank the histograms allow is under 8 values and the quantile's rank is within
    :data:`TOP_EXACT` (small datasets, tests). Beyond, the histograms are within the bound and
    the ``topk`` would cost more than the rest of the sketch."""
    return values * RANK_ERROR < 8 and rank_from_top(values, quantile) <= TOP_EXACT


def rank_from_top(n: int, quantile: float) -> int:
    """Which largest value (1 = the largest) of ``n`` is their ``1 - quantile`` quantile, as
    ``numpy.quantile(values, 1 - quantile, method="inverted_cdf")`` picks it."""
    index = n * (1.0 - quantile) - 1  # numpy's arithmetic, 0-based
    low = math.floor(index)
    return n - max(0, low if index == low else low + 1)


@dataclass
class Level:
    """What one sketch pass histograms, per channel (C,): keys in ``lo..hi``, fine bins of
    ``2**shift`` keys, ``target`` the rank from the top sought there (0: not known yet, the first
    pass); ``todo`` the channels this pass is for."""

    number: int
    lo: torch.Tensor
    hi: torch.Tensor
    shift: torch.Tensor
    target: torch.Tensor
    todo: torch.Tensor

    @classmethod
    def first(cls, channels: int) -> Level:
        full = torch.ones(channels, dtype=torch.int64)
        return cls(1, full * _LOW, full * _HIGH, full * FINE_SHIFT, full * 0, full.bool())

    def channels(self) -> torch.Tensor:
        return self.todo.nonzero().flatten()


@dataclass
class SketchPart:
    """The counts of one pass over some images, for the level's ``todo`` channels (n of them)."""

    count: torch.Tensor  # (n,) values in the interval
    top: torch.Tensor  # (n,) the fine bin of the largest of them (the window's anchor)
    fine: torch.Tensor  # (n, WINDOW) counts, bin top - j in column j
    vmin: torch.Tensor  # (n,) float32
    vmax: torch.Tensor  # (n,) float32
    coarse: torch.Tensor | None = None  # (n, COARSE + 1), first pass only
    zeros: torch.Tensor | None = None  # (n,), first pass only
    best: torch.Tensor | None = None  # (n, <= TOP_EXACT) largest values, descending

    @classmethod
    def empty(cls, level: Level, exact: bool = True) -> SketchPart:
        """No counts yet. ``exact``: keep the largest values (see :func:`keeps_exact`)."""
        n = int(level.todo.sum())
        zero = torch.zeros(n, dtype=torch.int64)
        first = level.number == 1
        return cls(
            zero.clone(),
            zero + _EMPTY,
            torch.zeros(n, WINDOW, dtype=torch.int64),
            torch.full((n,), math.inf),
            torch.full((n,), -math.inf),
            torch.zeros(n, COARSE + 1, dtype=torch.int64) if first else None,
            zero.clone() if first else None,
            torch.full((n, 0), -math.inf) if exact or level.number > 1 else None,
        )

    def update(self, x: torch.Tensor, level: Level, quantile: float) -> None:
        """Count ``x``: (B, n, P) values of the level's channels. About fifteen elementwise
        passes over ``x`` on its device; what is kept moves to the CPU."""
        dev, n = x.device, x.shape[1]
        x = x.detach().float()
        first = level.number == 1
        vmax, vmin = x.amax((0, 2)), x.amin((0, 2))
        clean = first and not (torch.isnan(vmax).any() or torch.isnan(vmin).any())
        if clean and bool((vmin >= 0).all()):  # a ReLU's: the key is the bits, sign cleared
            keys = x.contiguous().view(torch.int32) & 0x7FFFFFFF  # (-0.0 is 0.0)
        else:
            keys = sortable_keys(x)
        if clean:
            inside, kept = None, x  # the usual case: every value counts
            has = torch.ones(n, dtype=torch.bool)
        else:
            todo = level.todo
            lo, hi = (t[todo].to(dev)[None, :, None] for t in (level.lo, level.hi))
            inside = ~torch.isnan(x) if first else (keys >= lo) & (keys <= hi) & ~torch.isnan(x)
            kept = x.masked_fill(~inside, math.nan)
            vmax = kept.nan_to_num(nan=-math.inf, posinf=math.inf).amax((0, 2))
            vmin = kept.nan_to_num(nan=math.inf, neginf=-math.inf).amin((0, 2))
            has = inside.any(2).any(0).cpu()
        self.vmin = torch.minimum(self.vmin, vmin.cpu())
        self.vmax = torch.maximum(self.vmax, vmax.cpu())
        shift = level.shift[level.todo]
        if bool((shift == FINE_SHIFT).all()):
            bins, bshift = keys >> FINE_SHIFT, FINE_SHIFT
        else:
            bins, bshift = keys.long() >> shift.to(dev)[None, :, None], -1
        # The largest value's bin (keys are ordered as values): the window's new anchor.
        top_key = sortable_keys(vmax.cpu()).long()
        batch_top = top_key >> FINE_SHIFT if bshift == FINE_SHIFT else top_key >> shift
        new_top = torch.where(has, torch.maximum(self.top, batch_top), self.top)
        self.fine = _reanchor(self.fine, self.top, new_top)
        self.top = new_top
        step = torch.arange(n, dtype=torch.int64) * (WINDOW + 2)
        low = torch.iinfo(bins.dtype).min + WINDOW * n
        shifted = (new_top.clamp(min=low) + step).to(dev, bins.dtype)[None, :, None]
        floor, ceil = (v.to(dev, bins.dtype)[None, :, None] for v in (step, step + WINDOW))
        rel = torch.clamp(shifted - bins, min=floor, max=ceil)  # bin top - j at j; j > W: below
        if inside is not None:
            rel = torch.where(inside, rel, ceil + 1)
        counts = torch.bincount(rel.flatten(), minlength=n * (WINDOW + 2)).view(n, WINDOW + 2)
        counts = counts.cpu()
        self.fine += counts[:, :WINDOW]
        self.count += counts[:, : WINDOW + 1].sum(1)
        if self.coarse is not None and self.zeros is not None:
            base = torch.arange(n, dtype=torch.int32) * (COARSE + 1) + COARSE // 2
            octave = (keys >> 23) + base.to(dev)[None, :, None]
            if inside is not None:
                octave = torch.where(inside, octave, (base + COARSE // 2).to(dev)[None, :, None])
            found = torch.bincount(octave.flatten(), minlength=n * (COARSE + 1))
            self.coarse += found.view(n, COARSE + 1).cpu()
            small = torch.int16 if kept.shape[2] < 2**15 else torch.int32
            zero = (kept == 0).view(torch.uint8).sum(2, dtype=small).sum(0, dtype=torch.int64)
            self.zeros += zero.cpu()
        # NaN ranks last; +inf stays +inf (nan_to_num's default would make it the largest float)
        best = kept if inside is None else kept.nan_to_num(nan=-math.inf, posinf=math.inf)
        self._keep_best(best, level, quantile)

    def _keep_best(self, kept: torch.Tensor, level: Level, quantile: float) -> None:
        if self.best is None:
            return
        most = int(self.count.max()) if self.count.numel() else 0
        if level.number == 1 and most * quantile >= TOP_EXACT + 1:
            self.best = None  # the quantile's rank is past the kept values, for good
            return
        k = min(TOP_EXACT, kept.shape[2])
        per_image = kept.topk(k, dim=2).values  # (B, n, k): then across the images
        flat = per_image.transpose(0, 1).reshape(kept.shape[1], -1).cpu()
        self.best = _top(torch.cat([self.best, flat], 1))

    def merge(self, other: SketchPart) -> None:
        """Add the counts of other images (exact: any split gives the same result)."""
        top = torch.maximum(self.top, other.top)
        self.fine = _reanchor(self.fine, self.top, top) + _reanchor(other.fine, other.top, top)
        self.top = top
        self.count = self.count + other.count
        self.vmin = torch.minimum(self.vmin, other.vmin)
        self.vmax = torch.maximum(self.vmax, other.vmax)
        if self.coarse is not None and other.coarse is not None:
            self.coarse = self.coarse + other.coarse
        if self.zeros is not None and other.zeros is not None:
            self.zeros = self.zeros + other.zeros
        if self.best is None or other.best is None:
            self.best = None
        else:
            self.best = _top(torch.cat([self.best, other.best], 1))

    def tensors(self) -> dict[str, torch.Tensor]:
        """The fields that are set, by name (for files and for Ray)."""
        named = {f.name: getattr(self, f.name) for f in fields(self)}
        return {k: v for k, v in named.items() if v is not None}

    def cpu(self) -> SketchPart:
        moved = {k: v.cpu() for k, v in self.tensors().items()}
        return replace(self, **moved)


def _top(values: torch.Tensor) -> torch.Tensor:
    """The TOP_EXACT largest of each row (finite or infinite; -inf pads), descending."""
    k = min(TOP_EXACT, values.shape[1])
    return values.topk(k, dim=1).values


def _reanchor(fine: torch.Tensor, old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """Fine counts anchored at bin ``old`` moved to anchor ``new`` (>= old): bins that fall
    below the window leave it (they are still in ``count``)."""
    if torch.equal(old, new):
        return fine
    d = (new - old).clamp(max=WINDOW)[:, None]
    index = torch.arange(WINDOW)[None, :] - d
    moved = fine.gather(1, index.clamp(min=0))
    return torch.where(index >= 0, moved, torch.zeros((), dtype=fine.dtype))


class ChannelThresholds:
    """One module's thresholds as the passes find them: ``threshold`` (C,) float32 (NaN until
    found), ``exact`` (C,) whether it is the exact quantile, ``values`` (C,) how many values each
    channel had (the first pass), ``level`` the channels still open and what the next pass
    histograms of them, ``tallied`` (C,) whether an IoU pass has counted the channel."""

    def __init__(self, channels: int) -> None:
        self.threshold = torch.full((channels,), math.nan)
        self.exact = torch.zeros(channels, dtype=torch.bool)
        self.values = torch.zeros(channels, dtype=torch.int64)
        self.level = Level.first(channels)
        self.tallied = torch.zeros(channels, dtype=torch.bool)

    @property
    def done(self) -> bool:
        return not bool(self.level.todo.any())

    def resolve(self, part: SketchPart, quantile: float) -> None:
        """Read the thresholds the pass's counts give; the channels still open go to the next
        level (a narrower interval)."""
        lv = self.level
        todo = lv.channels()
        if lv.number == 1:
            self.values[todo] = part.count
            target = torch.tensor([rank_from_top(int(n), quantile) for n in part.count])
        else:
            target = lv.target[todo]
        tol = torch.floor(self.values[todo].double() * RANK_ERROR).long()
        nxt = Level(lv.number + 1, lv.lo.clone(), lv.hi.clone(), lv.shift.clone(),
                    lv.target.clone(), torch.zeros_like(lv.todo))  # fmt: skip
        for i, c in enumerate(todo.tolist()):
            found = _read(part, i, int(target[i]), int(tol[i]), lv, c)
            if isinstance(found, tuple):
                self.threshold[c], self.exact[c] = found
            else:
                nxt.lo[c], nxt.hi[c], nxt.shift[c], nxt.target[c] = found.interval
                nxt.todo[c] = True
        self.level = nxt


@dataclass
class _Next:
    interval: tuple[int, int, int, int]  # lo, hi, shift, target


def _read(
    part: SketchPart, i: int, m: int, tol: int, lv: Level, c: int
) -> tuple[float, bool] | _Next:
    """Channel ``i`` of the part: its threshold (value, exact) or the next interval."""
    count = int(part.count[i])
    lo, hi, shift = int(lv.lo[c]), int(lv.hi[c]), int(lv.shift[c])
    if count == 0:  # no value (every one NaN), or the forward changed between passes
        return (math.inf if lv.number == 1 else float(key_values(torch.tensor(lo))), False)
    m = min(max(m, 1), count)
    best = part.best
    if best is not None and m <= int(torch.isfinite(best[i]).sum() + (best[i] == math.inf).sum()):
        return (float(best[i, m - 1]), True)
    if float(part.vmin[i]) == float(part.vmax[i]):  # one value repeated
        return (float(part.vmax[i]), True)
    cum = part.fine[i].cumsum(0)
    if m <= int(cum[-1]):
        j = int((cum < m).sum())
        n = int(part.fine[i, j])
        above = int(cum[j]) - n
        b = int(part.top[i]) - j
        kl, kh = max(lo, b << shift), min(hi, ((b + 1) << shift) - 1)
        if n <= tol or shift == 0:
            return (_within(kl, kh, m - above, n, part, i), shift == 0)
        return _Next((kl, kh, max(0, shift - 8), m - above))
    assert part.coarse is not None and part.zeros is not None  # only the first pass runs out
    from_top = part.coarse[i, :COARSE].flip(0).cumsum(0)
    o = COARSE - 1 - int((from_top < m).sum())
    above = int(from_top[COARSE - 1 - o]) - int(part.coarse[i, o])
    if o == COARSE // 2 and int(part.zeros[i]) == int(part.coarse[i, o]):
        return (0.0, True)  # the bin of +0.0 and tiny values holds zeros only
    first = (o - COARSE // 2) << 23
    return _Next((first, first + (1 << 23) - 1, FINE_SHIFT, m - above))


def _within(kl: int, kh: int, r: int, n: int, part: SketchPart, i: int) -> float:
    """A value of keys kl..kh at the place of the r-th largest of its n values, clamped to the
    channel's range."""
    kmin = int(sortable_keys(part.vmin[i : i + 1])[0])
    kmax = int(sortable_keys(part.vmax[i : i + 1])[0])
    kl, kh = max(kl, kmin), min(kh, kmax)
    key = kh - math.floor((r - 0.5) / n * (kh - kl + 1))
    return float(key_values(torch.tensor(min(max(key, kl), kh))))
