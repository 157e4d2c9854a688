"""What a sweep records to recognise its preprocessing function and its images on resume:
a canonical text for a function (its code, constants, defaults, closure values and the globals
it reads, recursively) and a digest of each image's contents. Anything that cannot be told
apart reliably is reported as such, never guessed."""

from __future__ import annotations

import functools
import sys
import sysconfig
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xxhash

__all__ = ["UNIDENTIFIED", "identify", "content_digest"]

UNIDENTIFIED = "unidentified:"
_PLAIN = (int, float, complex, str, bytes, bool, type(None))
_DEPTH = 12  # nested functions and containers followed this deep
_LIBRARIES = {"torch", "torchvision", "numpy", "PIL", "layerscope", "builtins"}
_STDLIB = sysconfig.get_paths()["stdlib"]


def identify(obj: Any) -> str | None:
    """A canonical text for ``obj`` equal for equal behaviour as far as it can be read, or None
    when some part of it has no stable identity (an object known only by its address)."""
    try:
        return _identify(obj, _DEPTH, set())
    except RecursionError:
        return None


def _identify(obj: Any, depth: int, seen: set[int]) -> str | None:
    if isinstance(obj, _PLAIN):
        return repr(obj)
    if depth <= 0:
        return None
    if id(obj) in seen:  # a function reading itself (recursion): already described above
        return "<cycle>"
    seen = seen | {id(obj)}
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = sorted(obj, key=repr) if isinstance(obj, (set, frozenset)) else obj
        parts = _known([_identify(v, depth - 1, seen) for v in items])
        return None if parts is None else f"{type(obj).__name__}({', '.join(parts)})"
    if isinstance(obj, dict):
        pairs = [
            (_identify(k, depth - 1, seen), _identify(v, depth - 1, seen)) for k, v in obj.items()
        ]
        if any(k is None or v is None for k, v in pairs):
            return None
        return "dict(" + ", ".join(f"{k}: {v}" for k, v in sorted(pairs)) + ")"
    if isinstance(obj, torch.Tensor):
        return f"tensor{tuple(obj.shape)}{obj.dtype}#{_tensor_digest(obj)}"
    if isinstance(obj, np.ndarray):
        return f"array{obj.shape}{obj.dtype}#{xxhash.xxh3_64_hexdigest(obj.tobytes())}"
    if isinstance(obj, types.ModuleType):
        return f"module {obj.__name__}"
    if isinstance(obj, type):
        return f"class {obj.__module__}.{obj.__qualname__}"
    if isinstance(obj, types.FunctionType):
        return _function(obj, depth, seen)
    if isinstance(obj, types.MethodType):
        inner = _identify(obj.__func__, depth - 1, seen)
        owner = _identify(obj.__self__, depth - 1, seen)
        return None if inner is None or owner is None else f"method {inner} of {owner}"
    if isinstance(obj, types.BuiltinFunctionType):
        return f"builtin {getattr(obj, '__module__', '')}.{obj.__qualname__}"
    if isinstance(obj, functools.partial):
        parts = _known([_identify(v, depth - 1, seen) for v in (obj.func, obj.args, obj.keywords)])
        return None if parts is None else f"partial({', '.join(parts)})"
    return _instance(obj, depth, seen)


def _known(parts: list[str | None]) -> list[str] | None:
    """``parts``, or None when one of them has no stable identity."""
    known = [p for p in parts if p is not None]
    return known if len(known) == len(parts) else None


def _function(fn: types.FunctionType, depth: int, seen: set[int]) -> str | None:
    if _installed(fn.__module__):  # a library's function: fixed for an install
        return f"function {fn.__module__}.{fn.__qualname__}"
    code = fn.__code__
    reads = {n: fn.__globals__[n] for n in _names(code) if n in fn.__globals__}
    closure = [c.cell_contents for c in fn.__closure__ or () if _filled(c)]
    parts = _known(
        [
            _identify(v, depth - 1, seen)
            for v in (fn.__defaults__, fn.__kwdefaults__, closure, reads)
        ]
    )
    if parts is None:
        return None
    return f"function {fn.__module__}.{fn.__qualname__} {_code(code)} {' '.join(parts)}"


def _installed(module: str | None) -> bool:
    """Whether ``module`` comes from an installed package or the standard library (not code
    of one's own, which may change between runs under the same name)."""
    top = (module or "").partition(".")[0]
    if top in _LIBRARIES:
        return True
    found = sys.modules.get(module or "")
    where = str(getattr(found, "__file__", "") or "")
    return (
        "site-packages" in where
        or "dist-packages" in where
        or (bool(where) and where.startswith(_STDLIB))
    )


def _code(code: types.CodeType) -> str:
    consts = [_code(c) if isinstance(c, types.CodeType) else repr(c) for c in code.co_consts]
    return f"code#{xxhash.xxh3_64_hexdigest(code.co_code)}[{', '.join(consts)}]{code.co_names}"


def _names(code: types.CodeType) -> set[str]:
    """Global names read by ``code`` and by the functions defined inside it."""
    names = set(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            names |= _names(c)
    return names


def _filled(cell: Any) -> bool:
    try:
        cell.cell_contents  # noqa: B018 (reading an empty cell raises)
    except ValueError:  # a cell not yet assigned
        return False
    return True


def _instance(obj: Any, depth: int, seen: set[int]) -> str | None:
    """A callable object (a torchvision transform, a class of one's own): its class, its
    ``__call__``'s code and its attributes."""
    kind = type(obj)
    call = vars(kind).get("__call__") or getattr(kind, "__call__", None)  # noqa: B004
    if isinstance(obj, torch.nn.Module):  # its weights and its configuration (the repr)
        values = {"state": dict(obj.state_dict()), "repr": repr(obj)}
        call = getattr(kind, "forward", None)
    elif hasattr(obj, "__dict__"):
        values = dict(vars(obj))
    else:
        return None
    parts = _known([_identify(v, depth - 1, seen) for v in (values, call)])
    if parts is None:
        return None
    return f"object {kind.__module__}.{kind.__qualname__} {' '.join(parts)}"


def _tensor_digest(t: torch.Tensor) -> str:
    data = t.detach().cpu().contiguous()
    if data.dtype == torch.bfloat16:
        data = data.float()
    return xxhash.xxh3_64_hexdigest(data.numpy().tobytes())


def content_digest(item: Any) -> str | None:
    """A digest of an image's contents: a file's bytes, a tensor's values; None for what has no
    contents of its own to read (a Dataset's items, identified by their index)."""
    if isinstance(item, Path):
        h = xxhash.xxh3_64()
        try:
            with open(item, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
        except OSError as exc:  # gone or unreadable since: differs from any digest
            return f"unreadable: {type(exc).__name__}"
        return h.hexdigest()
    if isinstance(item, torch.Tensor):
        return f"{tuple(item.shape)}{item.dtype}#{_tensor_digest(item)}"
    return None
