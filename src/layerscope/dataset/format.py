"""The on-disk format of a sweep: one safetensors file (Hugging Face's format: a JSON header and
raw little-endian tensors; no pickle, safe to open) holding, per module,
``{module}/scores|ids|rows|cols`` (C, k) and ``{module}/total|count|peak|zeros`` (C,), plus
``processed`` (the image indices counted or skipped). The header's metadata entry ``layerscope``
is a JSON document:

    {"format": "layerscope-sweep", "version": 1, "model": {"class": ..., "fingerprint": ...},
     "modules": [...], "k": 16, "preprocess": "...", "preprocess_args": {resize, crop, mean,
     std} or null, "sources": [labels], "images": n,
     "skipped": [[label, reason], ...], "fields": {module: {"HxW": {size, stride, padding}}}}

The fingerprint is a digest of every parameter's and buffer's values: a sweep refuses to be
resumed, loaded for or merged with a model whose weights differ. A file is written to a temporary
name and renamed, so a killed process leaves the previous checkpoint whole."""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import xxhash
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import LayerScopeError
from ..fingerprint import weights_fingerprint
from ..preprocess import Preprocess
from ..receptive import ReceptiveField
from .result import Sweep
from .sources import open_sources
from .topk import STATE_FIELDS, ChannelTopK

__all__ = ["save_sweep", "load_sweep", "model_fingerprint", "FORMAT"]

FORMAT = "layerscope-sweep"
VERSION = 1


def describe_preprocess(preprocess: Any) -> str:
    """A stable description (no memory addresses), recorded with the sweep and compared when
    a sweep is resumed or its images are re-attached."""
    return re.sub(r" at 0x[0-9a-f]+", "", repr(preprocess))


def preprocess_args(preprocess: Any) -> dict[str, Any] | None:
    """A :class:`Preprocess`'s fields as JSON values (None for a function of one's own)."""
    if not isinstance(preprocess, Preprocess):
        return None
    return {
        k: list(v) if isinstance(v, (tuple, list)) else v for k, v in asdict(preprocess).items()
    }


def _restore_preprocess(args: dict[str, Any]) -> Preprocess:
    return Preprocess(**{k: tuple(v) if isinstance(v, list) else v for k, v in args.items()})


def model_fingerprint(model: nn.Module) -> str:
    """A short hex digest of every parameter's and buffer's values (and the module tree)."""
    named = dict(model.named_modules())
    h = xxhash.xxh3_128()
    h.update(repr([(n, type(m).__name__) for n, m in named.items()]).encode())
    h.update(repr(weights_fingerprint(named)).encode())
    return h.hexdigest()


def save_sweep(sweep: Sweep, path: Path) -> Path:
    tensors: dict[str, torch.Tensor] = {}
    for module, st in sweep.states.items():
        for name in STATE_FIELDS:
            value = getattr(st, name)
            if value is not None:
                tensors[f"{module}/{name}"] = value.detach().cpu().contiguous()
    tensors["processed"] = torch.tensor(sorted(sweep.processed), dtype=torch.int64)
    header = {
        "format": FORMAT,
        "version": VERSION,
        "model": {"fingerprint": sweep.fingerprint},
        "modules": sweep.modules,
        "k": sweep.k,
        "preprocess": sweep.preprocess,
        "preprocess_args": sweep.preprocess_args,
        "sources": sweep.labels,
        "images": sweep.images,
        "skipped": [list(s) for s in sweep.skipped],
        "fields": {
            m: {shape: rf.to_json() for shape, rf in by.items()} for m, by in sweep.fields.items()
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"layerscope": json.dumps(header)})
    os.replace(tmp, path)  # atomic: a killed process leaves the previous file whole
    return path


def read_header(path: Path) -> dict[str, Any]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if "layerscope" not in meta:
        raise LayerScopeError(f"{str(path)!r} is not a LayerScope sweep file")
    header = json.loads(meta["layerscope"])
    if header.get("format") != FORMAT or header.get("version") != VERSION:
        raise LayerScopeError(f"{str(path)!r}: unknown sweep format {header.get('format')!r}")
    return header


def load_sweep(
    path: Path, images: Any = None, model: nn.Module | None = None, preprocess: Any = None
) -> Sweep:
    if not path.is_file():
        raise LayerScopeError(f"no sweep file at {str(path)!r}")
    header = read_header(path)
    if model is not None and model_fingerprint(model) != header["model"]["fingerprint"]:
        raise LayerScopeError(
            f"{str(path)!r} was made with other weights than this model's: a sweep describes "
            "one model; run a new one for this model"
        )
    tensors = load_file(str(path))
    states = {}
    for module in header["modules"]:
        values = {n: tensors.get(f"{module}/{n}") for n in STATE_FIELDS}
        states[module] = ChannelTopK(header["k"], **values)
    fields = {
        m: {
            shape: ReceptiveField(**{k: tuple(v) for k, v in rf.items()})
            for shape, rf in by.items()
        }
        for m, by in header["fields"].items()
    }
    sweep = Sweep(
        header["modules"],
        header["k"],
        states,
        header["sources"],
        header["model"]["fingerprint"],
        header["preprocess"],
        header["images"],
        [tuple(s) for s in header["skipped"]],
        fields,
        set(tensors["processed"].tolist()),
        header.get("preprocess_args"),
    )  # type: ignore[arg-type]
    if images is not None:
        sources = open_sources(images)
        if sources.labels != sweep.labels:
            raise LayerScopeError(
                f"these images are not the ones swept ({len(sources)} against "
                f"{len(sweep.labels)}, or in another order)"
            )
        sweep.sources = sources
        pre = preprocess
        if pre is None and sweep.preprocess_args is not None:
            pre = _restore_preprocess(sweep.preprocess_args)
        elif pre is not None and describe_preprocess(pre) != sweep.preprocess:
            raise LayerScopeError(
                f"this preprocessing is not the sweep's ({sweep.preprocess}): crops would "
                "not show what the units saw"
            )
        if pre is not None:
            sweep.prepare = lambda i: sources.prepare(i, pre)
    return sweep
