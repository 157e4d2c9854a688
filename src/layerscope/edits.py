"""Edits of a module's output, for :func:`layerscope.intervene`: set channels to a value, scale
them, patch in the module's output on other inputs, or any function of the output.

Channels are dimension 1 of a 4-D (N, C, H, W) or 2-D (N, C) output. An edit never writes into
the tensor the module returned (other code may still hold it: a residual's identity); it returns
a new one."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .errors import LayerScopeError

__all__ = ["Ablate", "Scale", "Patch", "Edit", "apply_edit", "edit_call"]


@dataclass(frozen=True)
class Ablate:
    """Set ``channels`` to ``value`` (0: the channel switched off). ``call``: which call of a
    reused module to edit (every call when None)."""

    channels: Sequence[int]
    value: float = 0.0
    call: int | None = None


@dataclass(frozen=True)
class Scale:
    """Multiply ``channels`` by ``factor``."""

    channels: Sequence[int]
    factor: float
    call: int | None = None


@dataclass(frozen=True)
class Patch:
    """Replace the module's output with its output on ``other_inputs`` (same shape)."""

    other_inputs: Any
    call: int | None = None


Edit = Ablate | Scale | Patch | Callable[[torch.Tensor], torch.Tensor]


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
        return patch.to(device=out.device, dtype=out.dtype)
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
