"""Edits of a module's output, for :func:`layerscope.intervene`: set channels to a value, scale
them, patch in the module's output on other inputs, or any function of the output.

Channels are dimension 1 of a 4-D (N, C, H, W) or 2-D (N, C) output. An edit never writes into
the tensor the module returned (other code may still hold it: a residual's identity); it returns
a new one."""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .errors import LayerScopeError

__all__ = ["Ablate", "Scale", "Patch", "Edit", "apply_edit", "edit_call", "check_call",
           "check_channels"]  # fmt: skip


def _integer(v: Any) -> int | None:
    """``v`` as an int when it is an integer (a Python int, an integer numpy scalar or 0-d
    integer tensor; never a bool, a float or a string), else None."""
    if isinstance(v, (bool, np.bool_)):
        return None
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, torch.Tensor) and v.dim() == 0 and not v.is_floating_point():
        if v.dtype not in (torch.bool, torch.complex64, torch.complex128):
            return int(v)
    return None


def check_channels(kind: str, channels: Any) -> tuple[int, ...]:
    """Channels as a tuple of ints; one integer is one channel. Anything else (a string, a
    float, a bool) raises a LayerScopeError naming ``kind``, here rather than deep in the
    model's forward (a string would be read digit by digit, 1.7 as 1, True as 1). The one rule
    for channels, of :class:`Ablate` and :class:`Scale` and of the Explorer's ``ablations``."""
    one = _integer(channels)
    if one is not None:
        return (one,)
    items = None if isinstance(channels, (str, bytes, dict, set)) else channels
    if isinstance(items, (np.ndarray, torch.Tensor)) and items.ndim != 1:
        items = None
    try:
        values = list(items) if items is not None else None
    except TypeError:
        values = None
    chosen = None if values is None else [_integer(c) for c in values]
    if chosen is None or any(c is None for c in chosen):
        raise LayerScopeError(
            f"{kind} channels must be integers (a list such as [3, 7], or one int), got "
            f"{channels!r}"
        )
    return tuple(c for c in chosen if c is not None)


def _as_call(kind: str, call: Any) -> int | None:
    if call is None:
        return None
    index = _integer(call)
    if index is None or index < 0:
        raise LayerScopeError(
            f"{kind} call={call!r}: pass None (every call) or the index of one call, an int "
            "from 0 (the module's first call)"
        )
    return index


def _as_number(kind: str, what: str, value: Any) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise LayerScopeError(f"{kind} {what} must be a number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Ablate:
    """Set ``channels`` to ``value`` (0: the channel switched off). ``channels``: integers (a
    list, or one int for one channel). ``call``: which call of a reused module to edit, from 0
    (every call when None)."""

    channels: Sequence[int]
    value: float = 0.0
    call: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", check_channels("Ablate", self.channels))
        object.__setattr__(self, "value", _as_number("Ablate", "value", self.value))
        object.__setattr__(self, "call", _as_call("Ablate", self.call))


@dataclass(frozen=True)
class Scale:
    """Multiply ``channels`` (integers, or one int) by ``factor``."""

    channels: Sequence[int]
    factor: float
    call: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", check_channels("Scale", self.channels))
        object.__setattr__(self, "factor", _as_number("Scale", "factor", self.factor))
        object.__setattr__(self, "call", _as_call("Scale", self.call))


@dataclass(frozen=True)
class Patch:
    """Replace the module's output with its output on ``other_inputs`` (same shape)."""

    other_inputs: Any
    call: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "call", _as_call("Patch", self.call))


Edit = Ablate | Scale | Patch | Callable[[torch.Tensor], torch.Tensor]


def check_call(kind: str, call: Any) -> int | None:
    """``call`` checked: None or an int from 0 (a LayerScopeError otherwise)."""
    return _as_call(kind, call)


def edit_call(edit: Edit) -> int | None:
    """The call an edit is for (None: every call)."""
    return getattr(edit, "call", None) if isinstance(edit, (Ablate, Scale, Patch)) else None


def _channels(module: str, out: Any, channels: Sequence[int]) -> list[int]:
    if not isinstance(out, torch.Tensor):
        raise LayerScopeError(
            f"{module} returns a {type(out).__name__}, not a tensor: edit one of its submodules, "
            "or pass a function of the output"
        )
    if out.dim() not in (2, 4):
        raise LayerScopeError(
            f"{module}'s output {tuple(out.shape)} has no channel dimension LayerScope edits "
            "(dimension 1 of an (N, C, H, W) or (N, C) output): pass a function of the output"
        )
    chosen = [int(c) for c in channels]
    bad = [c for c in chosen if not 0 <= c < out.shape[1]]
    if bad:
        raise LayerScopeError(
            f"channel(s) {bad} out of range: {module} has {out.shape[1]} channels "
            f"(0-{out.shape[1] - 1})"
        )
    return chosen


def apply_edit(module: str, edit: Edit, out: Any, patch: Any = None) -> Any:
    """The edited output. ``patch``: for a :class:`Patch`, the module's output on the other
    inputs (for this call)."""
    if isinstance(edit, Ablate):
        chosen = _channels(module, out, edit.channels)
        edited = out.clone()
        edited[:, chosen] = edit.value
        return edited
    if isinstance(edit, Scale):
        chosen = _channels(module, out, edit.channels)
        edited = out.clone()
        edited[:, chosen] = edited[:, chosen] * edit.factor
        return edited
    if isinstance(edit, Patch):
        if not isinstance(out, torch.Tensor) or not isinstance(patch, torch.Tensor):
            raise LayerScopeError(f"{module}: a Patch replaces a tensor output with a tensor")
        if patch.shape != out.shape:
            raise LayerScopeError(
                f"{module} gives {tuple(out.shape)} here and {tuple(patch.shape)} on the other "
                "inputs: a Patch needs the same shape (the same input size)"
            )
        # A copy: the patch is a capture in LayerScope's store, and the model may write into
        # what a module returns (ResNet's `out += identity`, an in-place ReLU).
        return patch.to(device=out.device, dtype=out.dtype, copy=True)
    if callable(edit):
        edited = edit(out.clone() if isinstance(out, torch.Tensor) else out)
        if isinstance(out, torch.Tensor) and (
            not isinstance(edited, torch.Tensor) or edited.shape != out.shape
        ):
            raise LayerScopeError(
                f"the function editing {module} must return a tensor of shape "
                f"{tuple(out.shape)}, got {getattr(edited, 'shape', type(edited).__name__)}"
            )
        return edited
    raise LayerScopeError(
        f"an edit of {module} must be Ablate, Scale, Patch or a function of the output, got "
        f"{type(edit).__name__}"
    )
