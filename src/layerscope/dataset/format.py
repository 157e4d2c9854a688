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
from .checks import check_header, check_tensors
from .identify import UNIDENTIFIED, identify
from .result import Sweep
from .sources import open_sources
from .topk import STATE_FIELDS, ChannelTopK

__all__ = ["save_sweep", "load_sweep", "model_fingerprint", "FORMAT", "describe_preprocess"]

FORMAT = "layerscope-sweep"
VERSION = 1


def describe_preprocess(preprocess: Any) -> str:
    """A stable description (no memory addresses), recorded with the sweep and compared when a
    sweep is resumed or its images are re-attached. A :class:`Preprocess` is its fields; a
    function is its qualified name with a digest of its code, constants, defaults, closure
    values and the globals it reads, so two functions of one name, or two lambdas, differ. A
    preprocessing that cannot be identified this way is marked :data:`UNIDENTIFIED`."""
    if isinstance(preprocess, Preprocess):
        return repr(preprocess)
    name = getattr(preprocess, "__qualname__", type(preprocess).__qualname__)
    found = identify(preprocess)
    if found is None:
        return f"{UNIDENTIFIED} {re.sub(r' at 0x[0-9a-f]+', '', repr(preprocess))}"
    return f"{name} #{xxhash.xxh3_64_hexdigest(found.encode())}"


def preprocess_is_identified(description: str) -> bool:
    return not description.startswith(UNIDENTIFIED)


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
        "digests": {str(i): d for i, d in sorted(sweep.digests.items())},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"layerscope": json.dumps(header)})
    os.replace(tmp, path)  # atomic: a killed process leaves the previous file whole
    return path


def read_header(path: Path) -> dict[str, Any]:
    """The file's header, checked (:mod:`.checks`); a LayerScopeError naming the file for
    anything that is not a whole sweep file of this format."""
    from safetensors import safe_open

    where = repr(str(path))
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:  # truncated, empty, not safetensors: safetensors' own errors
        raise LayerScopeError(
            f"{where} is not a readable sweep file (truncated, empty or another format: "
            f"{exc}); run the sweep again with another path, or delete it"
        ) from None
    if "layerscope" not in meta:
        raise LayerScopeError(f"{where} is not a LayerScope sweep file")
    try:
        header = json.loads(meta["layerscope"])
    except ValueError:
        raise LayerScopeError(f"{where}: its sweep header is not valid JSON") from None
    if not isinstance(header, dict):
        raise LayerScopeError(f"{where}: its sweep header is not a JSON object")
    if header.get("format") != FORMAT or header.get("version") != VERSION:
        raise LayerScopeError(f"{where}: unknown sweep format {header.get('format')!r}")
    return check_header(header, where)


def first_difference(ours: list[str], theirs: list[str]) -> str:
    """Where two lists of image labels part, in words."""
    for i, (a, b) in enumerate(zip(ours, theirs)):
        if a != b:
            return f"image {i} is {a!r} here but {b!r} in the sweep"
    return f"{len(ours)} images here against {len(theirs)} in the sweep"


def load_sweep(
    path: Path, images: Any = None, model: nn.Module | None = None, preprocess: Any = None
) -> Sweep:
    if not path.is_file():
        raise LayerScopeError(f"no sweep file at {str(path)!r}")
    where = repr(str(path))
    header = read_header(path)
    if model is not None and model_fingerprint(model) != header["model"]["fingerprint"]:
        raise LayerScopeError(
            f"{where} was made with other weights than this model's: a sweep describes "
            "one model; run a new one for this model"
        )
    try:
        tensors = load_file(str(path))
    except Exception as exc:
        raise LayerScopeError(f"{where}: its tensors cannot be read ({exc})") from None
    check_tensors(header, tensors, where)
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
    )
    sweep.digests = {int(i): d for i, d in header.get("digests", {}).items()}
    if images is not None:
        sources = open_sources(images)
        if sources.labels != sweep.labels:
            raise LayerScopeError(
                f"these images are not the ones swept in {where}: "
                f"{first_difference(sources.labels, sweep.labels)}"
            )
        sweep.sources = sources
        pre = preprocess
        if pre is None and sweep.preprocess_args is not None:
            pre = _restore_preprocess(sweep.preprocess_args)
        elif pre is not None:
            check_same_preprocess(pre, sweep.preprocess, where)
        if pre is not None:
            sweep.prepare = lambda i: sources.prepare(i, pre)
    return sweep


def check_same_preprocess(pre: Any, recorded: str, where: str) -> None:
    """Refuse a preprocessing other than the one recorded, or one that cannot be told apart."""
    ours = describe_preprocess(pre)
    if not preprocess_is_identified(ours) or not preprocess_is_identified(recorded):
        raise LayerScopeError(
            f"cannot tell whether this preprocessing ({ours}) is the one {where} used "
            f"({recorded}): an object known only by its address cannot be compared; use a "
            "Preprocess, a function, or a callable object whose attributes say what it does"
        )
    if ours != recorded:
        raise LayerScopeError(
            f"this preprocessing ({ours}) is not the one {where} used ({recorded}): its "
            "records would mix inputs of two preprocessings; give that one, or another path"
        )
