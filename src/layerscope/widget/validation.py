"""What values the Explorer's traits may take, given what is shown. Each check returns the
value or raises :class:`InvalidTraitError` (a ``TraitError`` and a ``LayerScopeError``) with a
message that says what is allowed: a Python assignment raises it, a value from the browser is
refused and the message shown."""

from __future__ import annotations

from typing import Any

from traitlets import TraitError

from ..edits import check_channels
from ..errors import LayerScopeError
from .schema import LayerPayload

__all__ = ["InvalidTraitError", "check_call", "check_frame", "check_channel", "check_class",
           "check_opacity", "check_region", "check_ablations"]  # fmt: skip


class InvalidTraitError(LayerScopeError, TraitError):
    """A value an Explorer trait may not take. ``except LayerScopeError`` and
    ``except traitlets.TraitError`` both catch it."""


def check_call(call: int, module: str, runs: int) -> int:
    if not 0 <= call < max(runs, 1):
        raise InvalidTraitError(
            f"{module} runs {runs} time(s): call {call} does not exist (calls count from 0)"
        )
    return call


def check_frame(frame: int, layer: LayerPayload | None, module: str) -> int:
    """``layer``: the layer shown (None: none)."""
    frames = layer.get("frames") if layer and layer["module"] == module else None
    if frame < 0 or (frames is not None and frame >= frames):
        last = (frames or 1) - 1
        raise InvalidTraitError(f"frame {frame} is out of range: frames count from 0 to {last}")
    return frame


def check_channel(channel: int, layer: LayerPayload | None, module: str) -> int:
    """``layer``: the layer shown (None: none)."""
    if layer and layer["kind"] == "maps" and layer["module"] == module:
        n = layer["channels"]
        if not 0 <= channel < n:
            raise InvalidTraitError(
                f"channel {channel} is out of range: {module} has {n} channels (0-{n - 1})"
            )
    elif channel < 0:
        raise InvalidTraitError(f"channel {channel} is out of range: channels count from 0")
    return channel


def check_class(cls: int, classes: int) -> int:
    if cls == -1 or 0 <= cls < classes:
        return cls
    if not classes:
        raise InvalidTraitError(f"class {cls}: this model's output has no class scores (only -1)")
    raise InvalidTraitError(
        f"class {cls} is out of range: this model has {classes} classes "
        f"(0-{classes - 1}; -1 picks the largest predicted)"
    )


def check_opacity(value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise InvalidTraitError(f"overlay_opacity must lie between 0 and 1, got {value}")
    return value


def check_region(region: list[float]) -> list[float]:
    if region and (len(region) != 4 or not region[0] < region[2] or not region[1] < region[3]):
        raise InvalidTraitError(
            f"gradcam_region is (y0, x0, y1, x1) with y0 < y1 and x0 < x1, or empty; got {region}"
        )
    return region


def check_ablations(value: dict[str, list[int]], shapes: dict[str, Any]) -> dict[str, list[int]]:
    """Modules known, with a channel dimension (dimension 1 of an (N, C, H, W) or (N, C)
    output, as the first forward showed), channels integers (the rule of
    :func:`~layerscope.edits.check_channels`: no string, float or bool) and in range."""
    out = {}
    for module, given in value.items():
        try:
            channels = check_channels(f"ablations[{module!r}]", given)
        except LayerScopeError as e:
            raise InvalidTraitError(str(e)) from None
        shape = shapes.get(module)
        dims = shape if isinstance(shape, list) else []
        if len(dims) not in (2, 4) or not all(isinstance(d, int) for d in dims):
            raise InvalidTraitError(
                f"{module}'s output {shape} has no channel dimension to ablate (dimension 1 of "
                "an (N, C, H, W) or (N, C) tensor)"
            )
        bad = [c for c in channels if not 0 <= c < dims[1]]
        if bad:
            raise InvalidTraitError(
                f"channel(s) {bad} out of range: {module} has {dims[1]} channels (0-{dims[1] - 1})"
            )
        out[module] = sorted(set(channels))
    return out
