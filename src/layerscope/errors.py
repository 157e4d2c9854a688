"""Errors LayerScope raises. Each message says what went wrong and what to do next."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "LayerScopeError",
    "ArgumentError",
    "ArgumentTypeError",
    "OutOfRangeError",
    "NotCapturedError",
    "NotReadyError",
    "UnknownModuleError",
    "CaptureError",
    "ImageError",
    "close_matches",
    "did_you_mean",
]


class LayerScopeError(Exception):
    """Base class of every error LayerScope raises on purpose."""


class ArgumentError(LayerScopeError, ValueError):
    """A bad argument: a value LayerScope cannot use. The message says what it accepts.

    Also a ``ValueError``, so ``except ValueError`` written before it existed still works."""


class ArgumentTypeError(ArgumentError, TypeError):
    """An argument of the wrong type (a module name that is not a string, an input with no
    tensor). Also a ``TypeError``."""


class OutOfRangeError(ArgumentError, IndexError):
    """An index out of range: a channel, frame or call that does not exist. Also an
    ``IndexError``."""


class NotReadyError(LayerScopeError):
    """Asked for something that needs a step not taken yet: hook a module first, compute
    Grad-CAM first, run a sweep first. The message names the step."""


class _PlainKeyError(KeyError):
    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class NotCapturedError(LayerScopeError, _PlainKeyError):
    """``acts[name]`` for a module this capture does not hold (not requested, never called,
    or evicted by the memory budget). Also a ``KeyError``, so ``Mapping.get`` and ``in`` work."""


class UnknownModuleError(LayerScopeError, _PlainKeyError):
    """A module name that the model does not have. ``suggestions`` holds close matches."""

    def __init__(self, name: str, suggestions: list[str]) -> None:
        self.name = name
        self.suggestions = suggestions
        hint = (
            "did you mean " + ", ".join(repr(s) for s in suggestions) + "?"
            if suggestions
            else "list the names with [n for n, _ in model.named_modules()]"
        )
        super().__init__(f"the model has no module named {name!r}: {hint}")


class CaptureError(LayerScopeError, RuntimeError):
    """The model's forward failed during a capture. The model is left as it was found."""


class ImageError(LayerScopeError, ValueError):
    """Something that cannot be read or used as an image."""


def close_matches(name: str, candidates: Iterable[str], limit: int = 5) -> list[str]:
    """Names a user probably meant: suffix matches first (``layer4`` -> ``backbone.layer4``),
    then spelling neighbours."""
    pool = [c for c in candidates if c]
    suffix = [c for c in pool if c.endswith("." + name)]
    suffix.sort(key=lambda c: (c.count("."), c))
    spelled = difflib.get_close_matches(name, pool, n=limit, cutoff=0.6)
    # Also compare against the last components, so a typo in a deep name is still found.
    tails = {c: c.split(".")[-1] for c in pool}
    tail_hits = difflib.get_close_matches(name.split(".")[-1], set(tails.values()), n=3, cutoff=0.8)
    by_tail = [c for c in pool if tails[c] in tail_hits and "." not in name]
    by_tail.sort(key=lambda c: (c.count("."), c))
    out: list[str] = []
    for c in suffix + spelled + by_tail:
        if c not in out:
            out.append(c)
    return out[:limit]


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """ "did you mean 'a', 'b'?" for the close matches of ``name`` ("" when there are none)."""
    near = close_matches(name, candidates)
    return f"did you mean {', '.join(repr(n) for n in near)}?" if near else ""
