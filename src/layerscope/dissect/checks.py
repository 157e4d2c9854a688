"""Every value read from a dissection file is checked before use, as a sweep file's are
(:mod:`layerscope.dataset.checks`, whose checks of numbers and preprocessing this reuses): a
header that lies (a count that disagrees with the stored tensors, a tensor of another shape or
type, an image index out of range, a missing entry) fails with the file's name and what is
wrong, never later and deeper."""

from __future__ import annotations

from typing import Any

import torch

from ..dataset.checks import _Bad, _int, _number, _preprocess_args, _strings
from ..errors import LayerScopeError
from .refine import EDGES
from .sketch import COARSE, TOP_EXACT, WINDOW

__all__ = ["check_header", "check_tensors"]

_STAGES = ("sketch", "tally", "done")
_PART = {"count": (torch.int64, 1), "top": (torch.int64, 1), "fine": (torch.int64, WINDOW),
         "vmin": (torch.float32, 1), "vmax": (torch.float32, 1),
         "coarse": (torch.int64, COARSE + 1), "zeros": (torch.int64, 1),
         "best": (torch.float32, -1)}  # fmt: skip
_LEVEL = ("lo", "hi", "shift", "target")


def check_header(header: dict[str, Any], where: str) -> None:
    try:
        _header(header)
    except _Bad as exc:
        raise LayerScopeError(f"{where} is not a valid dissection file: {exc}") from None


def _digests(v: Any, what: str, n: int) -> None:
    if not isinstance(v, dict) or not all(
        isinstance(d, str) and str(i).isdigit() and int(i) < n for i, d in v.items()
    ):
        raise _Bad(f"{what} must map image indices to strings")


def _header(h: dict[str, Any]) -> None:
    model = h.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("fingerprint"), str):
        raise _Bad("model.fingerprint is missing")
    modules = _strings(h.get("modules"), "modules")
    if not modules or len(set(modules)) != len(modules):
        raise _Bad("modules must be distinct names, at least one")
    _number(h.get("quantile"), "quantile", 1e-9, 0.5)
    _number(h.get("min_iou"), "min_iou", 0.0, 1.0)
    for key in ("preprocess", "masks"):
        if not isinstance(h.get(key), str):
            raise _Bad(f"{key} must be a string")
    _preprocess_args(h.get("preprocess_args"))
    n = len(_strings(h.get("sources"), "sources"))
    classes = h.get("classes")
    if classes is not None:
        names = _strings(classes, "classes")
        if not names or len(set(names)) != len(names):
            raise _Bad("classes must be distinct names, at least one")
    if h.get("stage") not in _STAGES:
        raise _Bad(f"stage must be one of {', '.join(_STAGES)}, got {h.get('stage')!r}")
    _int(h.get("passes"), "passes", 0, 64)
    _int(h.get("images"), "images", 0, n)
    levels = h.get("levels")
    if not isinstance(levels, dict) or not set(levels) <= set(modules):
        raise _Bad("levels must map dissected modules to levels")
    for m, v in levels.items():
        _int(v, f"levels of {m}", 1, 64)
    skipped = h.get("skipped")
    if not isinstance(skipped, list) or not all(
        isinstance(s, list) and len(s) == 2 and isinstance(s[1], str) for s in skipped
    ):
        raise _Bad("skipped must be a list of [image index, reason]")
    ids = [_int(s[0], "a skipped image's index", 0, max(0, n - 1)) for s in skipped]
    if len(set(ids)) != len(ids):
        raise _Bad("skipped lists an image twice")
    _digests(h.get("digests"), "digests", n)
    _digests(h.get("mask_digests"), "mask_digests", n)


def check_tensors(header: dict[str, Any], tensors: dict[str, torch.Tensor], where: str) -> None:
    try:
        _tensors(header, tensors)
    except _Bad as exc:
        raise LayerScopeError(f"{where} is not a valid dissection file: {exc}") from None


def _want(
    t: dict[str, torch.Tensor], name: str, dtype: torch.dtype, shape: tuple[int, ...]
) -> torch.Tensor:
    """Tensor ``name`` of ``dtype`` and ``shape`` (-1: any size there)."""
    if name not in t:
        raise _Bad(f"the tensor {name!r} is missing")
    v = t[name]
    if (
        v.dtype != dtype
        or v.dim() != len(shape)
        or any(s != -1 and s != d for s, d in zip(shape, v.shape))
    ):
        raise _Bad(f"{name} is {tuple(v.shape)} {v.dtype}, not {shape} {dtype}")
    return v


def _ids(v: torch.Tensor, name: str, n: int) -> set[int]:
    if v.numel() and (int(v.min()) < 0 or int(v.max()) >= n):
        raise _Bad(f"{name} holds image indices outside 0..{n - 1}")
    found = set(v.tolist())
    if len(found) != v.numel():
        raise _Bad(f"{name} lists an image twice")
    return found


def _tensors(h: dict[str, Any], t: dict[str, torch.Tensor]) -> None:
    n, stage, passes = len(h["sources"]), h["stage"], h["passes"]
    counted = _ids(_want(t, "counted", torch.int64, (-1,)), "counted", n)
    processed = _ids(_want(t, "processed", torch.int64, (-1,)), "processed", n)
    skipped = {s[0] for s in h["skipped"]}
    if len(counted) != h["images"] or counted & skipped:
        raise _Bad("counted disagrees with images and skipped")
    if passes == 0 and processed != counted | skipped:
        raise _Bad("the first pass's processed images are not those counted and skipped")
    if passes > 0 and not processed <= counted:
        raise _Bad("processed holds images the first pass did not count")
    known: set[str] = {"counted", "processed", "area"}
    k = None if h["classes"] is None else len(h["classes"])
    if "area" in t:
        area = _want(t, "area", torch.int64, (k if k is not None else -1,))
        if (area < 0).any():
            raise _Bad("area holds negative counts")
        k = int(area.shape[0])
    elif stage == "done":
        raise _Bad("the tensor 'area' is missing")
    for m in h["modules"]:
        known |= _module(h, t, m, k)
    extra = sorted(set(t) - known)
    if extra:
        raise _Bad(f"unexpected tensors {extra[:3]}")


def _module(h: dict[str, Any], t: dict[str, torch.Tensor], m: str, k: int | None) -> set[str]:
    stage, names = h["stage"], set()
    rows = c = -1
    if stage != "sketch" or h["passes"] > 0:
        threshold = _want(t, f"{m}/threshold", torch.float32, (-1,))
        c = rows = int(threshold.shape[0])
        _want(t, f"{m}/exact", torch.bool, (c,))
        _want(t, f"{m}/values", torch.int64, (c,))
        tallied = _want(t, f"{m}/tallied", torch.bool, (c,))
        names |= {f"{m}/threshold", f"{m}/exact", f"{m}/values", f"{m}/tallied"}
        open_ = torch.zeros(c, dtype=torch.bool)
        if stage != "done":
            open_, rows = _level(h, t, m, c)
            names |= {f"{m}/level/{f}" for f in (*_LEVEL, "todo")}
        elif m in h["levels"] or not bool(tallied.all()):
            raise _Bad(f"{m} is finished yet has open or uncounted channels")
        if (torch.isnan(threshold) & ~open_).any():
            raise _Bad(f"{m}/threshold has no value for some channels")
    width = k if k is not None and (h["classes"] is not None or stage == "done") else -1
    if any(f"{m}/part/{f}" in t for f in _PART):
        buckets = f"{m}/buckets" in t
        if stage == "done" or (stage == "tally") != buckets:
            raise _Bad(f"{m} has sketch counts where none belong")
        names |= _part(t, m, rows if h["passes"] or stage != "sketch" else -1, h["passes"] == 0)
        if buckets:
            b = _want(t, f"{m}/buckets", torch.int64, (rows, EDGES + 1, width))
            if (b < 0).any():
                raise _Bad(f"{m}/buckets holds negative counts")
            names.add(f"{m}/buckets")
    if f"{m}/hits" in t or stage == "done":
        hits = _want(t, f"{m}/hits", torch.int64, (c, width))
        fired = _want(t, f"{m}/fired", torch.int64, (int(hits.shape[0]),))
        if (hits < 0).any() or not torch.equal(hits.sum(1), fired):
            raise _Bad(f"{m}/hits and {m}/fired disagree")
        if "area" in t and hits.shape[1] > t["area"].shape[0]:
            raise _Bad(f"{m}/hits has more classes than area")
        if "area" in t and (hits > t["area"][None, : hits.shape[1]]).any():
            raise _Bad(f"{m}/hits counts more pixels of a class than it has")
        names |= {f"{m}/hits", f"{m}/fired"}
    return names


def _level(
    h: dict[str, Any], t: dict[str, torch.Tensor], m: str, c: int
) -> tuple[torch.Tensor, int]:
    """The open channels of a checkpoint's module, and how many there are."""
    if m not in h["levels"]:
        raise _Bad(f"levels lacks {m}")
    for f in _LEVEL:
        _want(t, f"{m}/level/{f}", torch.int64, (c,))
    todo = _want(t, f"{m}/level/todo", torch.bool, (c,))
    lo, hi, shift = (t[f"{m}/level/{f}"] for f in ("lo", "hi", "shift"))
    if (lo > hi).any() or (lo < -(2**31)).any() or (hi >= 2**31).any():
        raise _Bad(f"{m}/level has an empty or impossible interval")
    if (shift < 0).any() or (shift > 16).any() or (t[f"{m}/level/target"] < 0).any():
        raise _Bad(f"{m}/level has an impossible shift or target")
    return todo, int(todo.sum())


def _part(t: dict[str, torch.Tensor], m: str, rows: int, first: bool) -> set[str]:
    """A sketch's counts for ``rows`` channels (-1: any number, the first pass)."""
    needed = [f for f in _PART if f not in ("best",) and (first or f not in ("coarse", "zeros"))]
    if not first and any(f"{m}/part/{f}" in t for f in ("coarse", "zeros")):
        raise _Bad(f"{m}/part has first-pass counts in a later pass")
    for f in needed:
        dtype, width = _PART[f]
        got = _want(t, f"{m}/part/{f}", dtype, (rows,) if width == 1 else (rows, width))
        rows = int(got.shape[0])  # the first pass's count of channels: every part agrees
    if f"{m}/part/best" in t:
        best = _want(t, f"{m}/part/best", torch.float32, (rows, -1))
        if best.shape[1] > TOP_EXACT:
            raise _Bad(f"{m}/part/best keeps more than {TOP_EXACT} values")
    count, fine = t[f"{m}/part/count"], t[f"{m}/part/fine"]
    if (count < 0).any() or (fine < 0).any() or (fine.sum(1) > count).any():
        raise _Bad(f"{m}/part counts are negative or disagree")
    return {f"{m}/part/{f}" for f in _PART if f"{m}/part/{f}" in t}
