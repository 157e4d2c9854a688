"""Every value read from a sweep file is checked before use: a file is data from anywhere, and a
header that lies (a size of a million pixels, ``k`` that disagrees with the stored tensors, an
image id out of range) must fail with the file's name and what is wrong, never allocate without
bound, index from the end or crash deep inside."""

from __future__ import annotations

import math
from typing import Any

import torch

from ..errors import LayerScopeError
from .topk import STATE_FIELDS

__all__ = ["MAX_SIDE", "check_header", "check_tensors"]

MAX_SIDE = 16384  # pixels: a resize, crop or receptive field larger than this is refused
MAX_K = 1_000_000
_PREPROCESS_KEYS = {"resize", "crop", "mean", "std"}


class _Bad(Exception):
    """What is wrong, turned into a LayerScopeError naming the file."""


def _int(v: Any, what: str, low: int, high: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
        raise _Bad(f"{what} must be an integer in {low}..{high}, got {v!r}")
    return v


def _number(v: Any, what: str, low: float, high: float) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise _Bad(f"{what} must be a finite number, got {v!r}")
    if not low <= v <= high:
        raise _Bad(f"{what} must lie in {low}..{high}, got {v!r}")
    return float(v)


def _strings(v: Any, what: str) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
        raise _Bad(f"{what} must be a list of strings")
    return v


def _side(v: Any, what: str) -> None:
    """A size: one integer or two, each 1..MAX_SIDE."""
    sides = v if isinstance(v, list) and len(v) == 2 else [v]
    for s in sides:
        _int(s, what, 1, MAX_SIDE)


def _preprocess_args(args: Any) -> None:
    if args is None:
        return
    if not isinstance(args, dict) or set(args) != _PREPROCESS_KEYS:
        raise _Bad(f"preprocess_args must have the fields {sorted(_PREPROCESS_KEYS)}")
    if args["resize"] is not None:
        _side(args["resize"], "preprocess_args.resize")
    if args["crop"] is not None:
        if not isinstance(args["crop"], list) or len(args["crop"]) != 2:
            raise _Bad("preprocess_args.crop must be [height, width]")
        _side(args["crop"], "preprocess_args.crop")
    for name, low in (("mean", -1e6), ("std", 1e-12)):
        v = args[name]
        if not isinstance(v, list) or len(v) != 3:
            raise _Bad(f"preprocess_args.{name} must be three numbers")
        for x in v:
            _number(x, f"preprocess_args.{name}", low, 1e6)


def _fields(fields: Any, modules: list[str]) -> None:
    if not isinstance(fields, dict) or not set(fields) <= set(modules):
        raise _Bad("fields must map swept modules to receptive fields")
    for module, by in fields.items():
        if not isinstance(by, dict):
            raise _Bad(f"fields of {module} must be a mapping")
        for key, rf in by.items():
            h, _, w = str(key).partition("x")
            if not (h.isdigit() and w.isdigit()):
                raise _Bad(f"fields of {module}: {key!r} is not an input size HxW")
            _side([int(h), int(w)], f"fields of {module}: input size")
            if not isinstance(rf, dict) or set(rf) != {"size", "stride", "padding"}:
                raise _Bad(f"fields of {module} at {key}: needs size, stride, padding")
            for part, low in (("size", 0.0), ("stride", 1e-6), ("padding", -MAX_SIDE)):
                pair = rf[part]
                if not isinstance(pair, list) or len(pair) != 2:
                    raise _Bad(f"fields of {module} at {key}: {part} must be two numbers")
                for x in pair:
                    _number(x, f"fields of {module} at {key}: {part}", low, MAX_SIDE)


def check_header(header: Any, where: str) -> dict[str, Any]:
    """``header`` (the file's JSON document) when every field has its type and bounds."""
    try:
        if not isinstance(header, dict):
            raise _Bad("the header is not a JSON object")
        model = header.get("model")
        if not isinstance(model, dict) or not isinstance(model.get("fingerprint"), str):
            raise _Bad("model.fingerprint is missing")
        modules = _strings(header.get("modules"), "modules")
        if not modules or len(set(modules)) != len(modules):
            raise _Bad("modules must be distinct names, at least one")
        _int(header.get("k"), "k", 1, MAX_K)
        if not isinstance(header.get("preprocess"), str):
            raise _Bad("preprocess must be a string")
        _preprocess_args(header.get("preprocess_args"))
        sources = _strings(header.get("sources"), "sources")
        _int(header.get("images"), "images", 0, len(sources))
        skipped = header.get("skipped")
        if not isinstance(skipped, list) or not all(
            isinstance(s, list) and len(s) == 2 and all(isinstance(x, str) for x in s)
            for s in skipped
        ):
            raise _Bad("skipped must be a list of [source, reason]")
        _fields(header.get("fields"), modules)
        digests = header.get("digests", {})
        if not isinstance(digests, dict) or not all(
            isinstance(d, str) and str(i).isdigit() and int(i) < len(sources)
            for i, d in digests.items()
        ):
            raise _Bad("digests must map image indices to strings")
    except _Bad as exc:
        raise LayerScopeError(f"{where} is not a valid sweep file: {exc}") from None
    return header


def check_tensors(header: dict[str, Any], tensors: dict[str, torch.Tensor], where: str) -> None:
    """The stored tensors agree with the header and with each other."""
    try:
        _check_tensors(header, tensors)
    except _Bad as exc:
        raise LayerScopeError(f"{where} is not a valid sweep file: {exc}") from None


def _check_tensors(header: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    n, k = len(header["sources"]), header["k"]
    expected = {"processed"} | {f"{m}/{f}" for m in header["modules"] for f in STATE_FIELDS}
    if not set(tensors) <= expected or "processed" not in tensors:
        raise _Bad(f"unexpected or missing tensors ({sorted(set(tensors) ^ expected)[:3]})")
    processed = tensors["processed"]
    if processed.dtype != torch.int64 or processed.dim() != 1:
        raise _Bad("processed must be a 1-D int64 tensor")
    if processed.numel() and (processed.min() < 0 or processed.max() >= n):
        raise _Bad(f"processed holds image ids outside 0..{n - 1}")
    if processed.unique().numel() != processed.numel():
        raise _Bad("processed lists an image twice")
    if header["images"] + len(header["skipped"]) != processed.numel():
        raise _Bad(
            f"images ({header['images']}) and skipped ({len(header['skipped'])}) do not add up "
            f"to the {processed.numel()} images processed"
        )
    done = set(processed.tolist())
    for module in header["modules"]:
        present = [f for f in STATE_FIELDS if f"{module}/{f}" in tensors]
        if not present:
            continue
        if len(present) != len(STATE_FIELDS):
            raise _Bad(f"{module} lacks some of {', '.join(STATE_FIELDS)}")
        _check_state(module, {f: tensors[f"{module}/{f}"] for f in STATE_FIELDS}, k, done)


def _check_state(module: str, t: dict[str, torch.Tensor], k: int, done: set[int]) -> None:
    scores, ids = t["scores"], t["ids"]
    # Fewer than k columns while fewer than k images were seen.
    if scores.dim() != 2 or not 1 <= scores.shape[1] <= k or not scores.dtype.is_floating_point:
        raise _Bad(f"{module}/scores has shape {tuple(scores.shape)}, not (channels, k<={k})")
    c = scores.shape[0]
    for name in ("ids", "rows", "cols"):
        if t[name].shape != scores.shape or t[name].dtype.is_floating_point:
            raise _Bad(f"{module}/{name} must be integers shaped like scores {tuple(scores.shape)}")
    for name in ("total", "count", "peak", "zeros"):
        if t[name].shape != (c,):
            raise _Bad(f"{module}/{name} must have shape ({c},)")
    kept = scores > float("-inf")
    if torch.isnan(scores).any():
        raise _Bad(f"{module}/scores holds NaN")
    if ids.dtype != torch.int64:
        raise _Bad(f"{module}/ids must be int64")
    named = ids[kept | (ids != -1)].tolist()
    if not set(named) <= done:
        raise _Bad(f"{module}/ids names images that were not processed")
    for row in ids.tolist():
        listed = [i for i in row if i != -1]
        if len(listed) != len(set(listed)):
            raise _Bad(f"{module}/ids lists one image twice for a channel")
    if ((t["rows"][kept] < 0) | (t["rows"][kept] >= MAX_SIDE)).any() or (
        (t["cols"][kept] < 0) | (t["cols"][kept] >= MAX_SIDE)
    ).any():
        raise _Bad(f"{module}/rows and cols must lie in 0..{MAX_SIDE - 1}")
