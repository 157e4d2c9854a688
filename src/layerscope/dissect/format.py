"""The on-disk format of a dissection, finished or a checkpoint: one safetensors file, like a
sweep's (a JSON header, raw little-endian tensors, no pickle), written to a temporary name and
renamed. Tensors: ``counted`` and ``processed`` (image indices), ``area`` (K,) and per module
``{m}/threshold`` (C,) float32, ``{m}/exact`` (C,) bool, ``{m}/values`` (C,), ``{m}/hits``
(C, K), ``{m}/fired`` (C,); a checkpoint in a sketch pass adds ``{m}/level/*`` and
``{m}/part/*``. The header's metadata entry ``layerscope`` is:

    {"format": "layerscope-dissection", "version": 1, "model": {"fingerprint": ...},
     "modules": [...], "quantile": 0.005, "min_iou": 0.04, "preprocess": "...",
     "preprocess_args": {...} or null, "sources": [labels], "masks": "...",
     "classes": [names] or null, "stage": "sketch" | "tally" | "done", "passes": n,
     "levels": {module: level}, "images": n, "skipped": [[index, reason], ...],
     "digests": {index: digest}, "mask_digests": {index: digest}}

Everything read is checked (:mod:`.checks`) before use: a file is data from anywhere."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..dataset.format import model_fingerprint
from ..errors import LayerScopeError
from .checks import check_header, check_tensors
from .result import Dissection
from .sketch import ChannelThresholds, Level, SketchPart
from .state import RunState
from .tally import Pending, Tally

__all__ = ["save_state", "read_state", "save_dissection", "load_dissection", "FORMAT"]

FORMAT = "layerscope-dissection"
VERSION = 1
_LEVEL = ("lo", "hi", "shift", "target", "todo")


def save_state(state: RunState, path: Path, min_iou: float = 0.04) -> Path:
    tensors: dict[str, torch.Tensor] = {
        "counted": torch.tensor(sorted(state.counted), dtype=torch.int64),
        "processed": torch.tensor(sorted(state.processed), dtype=torch.int64),
    }
    levels = {}
    for m in state.modules:
        th = state.thresholds.get(m)
        if th is not None:
            tensors.update({f"{m}/threshold": th.threshold, f"{m}/exact": th.exact,
                            f"{m}/values": th.values, f"{m}/tallied": th.tallied})  # fmt: skip
            if state.stage != "done":
                levels[m] = th.level.number
                tensors.update({f"{m}/level/{f}": getattr(th.level, f) for f in _LEVEL})
        tally = state.tallies.get(m)
        part = state.parts.get(m) or (tally.pending.part if tally and tally.pending else None)
        if part is not None:
            tensors.update({f"{m}/part/{k}": v for k, v in part.tensors().items()})
        if tally is not None:
            tensors.update({f"{m}/hits": tally.hits, f"{m}/fired": tally.fired})
            if tally.pending is not None:
                tensors[f"{m}/buckets"] = tally.pending.buckets
    if state.area is not None:
        tensors["area"] = state.area
    header = {
        "format": FORMAT,
        "version": VERSION,
        "model": {"fingerprint": state.fingerprint},
        "modules": state.modules,
        "quantile": state.quantile,
        "min_iou": min_iou,
        "preprocess": state.preprocess,
        "preprocess_args": state.preprocess_args,
        "sources": state.labels,
        "masks": state.masks,
        "classes": state.classes,
        "stage": state.stage,
        "passes": state.passes,
        "levels": levels,
        "images": len(state.counted),
        "skipped": [[i, why] for i, why in state.skipped],
        "digests": {str(i): d for i, d in sorted(state.digests.items())},
        "mask_digests": {str(i): d for i, d in sorted(state.mask_digests.items())},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    plain = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    save_file(plain, str(tmp), metadata={"layerscope": json.dumps(header)})
    os.replace(tmp, path)  # a killed process leaves the previous file whole
    return path


def read_state(path: Path) -> tuple[RunState, dict[str, Any]]:
    """The state in ``path`` and its header, both checked; a LayerScopeError naming the file
    for anything that is not a whole dissection file of this format."""
    from safetensors import safe_open

    where = repr(str(path))
    if not path.is_file():
        raise LayerScopeError(f"no dissection file at {where}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path))
    except Exception as exc:  # truncated, empty, not safetensors
        raise LayerScopeError(
            f"{where} is not a readable dissection file (truncated, empty or another format: {exc})"
        ) from None
    try:
        header = json.loads(meta["layerscope"])
    except (KeyError, ValueError):
        raise LayerScopeError(f"{where} is not a LayerScope dissection file") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise LayerScopeError(f"{where} is not a LayerScope dissection file")
    if header.get("version") != VERSION:
        raise LayerScopeError(
            f"{where}: unknown dissection format version {header.get('version')!r}"
        )
    try:
        check_header(header, where)
        check_tensors(header, tensors, where)
        return _state(header, tensors), header
    except LayerScopeError:
        raise
    except Exception as exc:  # a field the checks let through, yet unusable: still crafted
        raise LayerScopeError(
            f"{where} is not a valid dissection file ({type(exc).__name__}: {exc})"
        ) from None


def _state(header: dict[str, Any], t: dict[str, torch.Tensor]) -> RunState:
    state = RunState(
        header["modules"], header["quantile"], header["sources"], header["model"]["fingerprint"],
        header["preprocess"], header["masks"], header["classes"], header["preprocess_args"],
        header["stage"], header["passes"], set(t["counted"].tolist()),
        [(int(i), str(why)) for i, why in header["skipped"]], set(t["processed"].tolist()),
        {int(i): d for i, d in header["digests"].items()},
        {int(i): d for i, d in header["mask_digests"].items()},
    )  # fmt: skip
    for m in state.modules:
        if f"{m}/threshold" in t:
            th = ChannelThresholds(int(t[f"{m}/threshold"].shape[0]))
            th.threshold, th.exact = t[f"{m}/threshold"], t[f"{m}/exact"]
            th.values, th.tallied = t[f"{m}/values"], t[f"{m}/tallied"]
            if m in header["levels"]:
                parts = {f: t[f"{m}/level/{f}"] for f in _LEVEL}
                th.level = Level(header["levels"][m], **parts)
            else:
                th.level.todo = torch.zeros_like(th.level.todo)
            state.thresholds[m] = th
        part = None
        if f"{m}/part/count" in t:
            part = SketchPart(
                *(t[f"{m}/part/{f}"] for f in ("count", "top", "fine", "vmin", "vmax"))
            )
            part.coarse, part.zeros = t.get(f"{m}/part/coarse"), t.get(f"{m}/part/zeros")
            part.best = t.get(f"{m}/part/best")
        if f"{m}/hits" in t:
            state.tallies[m] = Tally(t[f"{m}/hits"], t[f"{m}/fired"])
            if part is not None and f"{m}/buckets" in t:
                state.tallies[m].pending = Pending(part, t[f"{m}/buckets"])
        elif part is not None:
            state.parts[m] = part
    state.area = t.get("area")
    return state


def save_dissection(d: Dissection, path: Path) -> Path:
    r = d.record
    names = d.classes if not r.get("dynamic_classes") else None
    state = RunState(
        d.modules, d.quantile, r.get("sources", []), r.get("fingerprint", ""),
        r.get("preprocess", ""), r.get("masks", ""), names, r.get("preprocess_args"),
        "done", int(r.get("passes", 2)), set(r.get("counted", [])),
        list(zip(r.get("skipped_ids", []), (why for _, why in d.skipped))),
        digests=dict(r.get("digests", {})), mask_digests=dict(r.get("mask_digests", {})),
    )  # fmt: skip
    for m in d.modules:
        th = ChannelThresholds(int(d.thresholds[m].shape[0]))
        th.threshold, th.exact = d.thresholds[m], d.exact[m]
        th.level.todo = torch.zeros_like(th.level.todo)
        th.tallied = torch.ones_like(th.tallied)
        state.thresholds[m] = th
        state.tallies[m] = Tally(d.hits[m], d.fired[m])
    state.area = d.area
    return save_state(state, path, d.min_iou)


def load_dissection(path: Path, model: nn.Module | None = None) -> Dissection:
    state, header = read_state(path)
    where = repr(str(path))
    if state.stage != "done":
        raise LayerScopeError(
            f"{where} holds a dissection not finished yet (in pass {state.passes + 1}): run "
            "layerscope.dissect(...) again with path= to finish it"
        )
    if model is not None and model_fingerprint(model) != state.fingerprint:
        raise LayerScopeError(
            f"{where} was made with other weights than this model's: a dissection describes "
            "one model; dissect this one"
        )
    return state.result(header["min_iou"])
