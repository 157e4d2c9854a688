"""Receptive fields computed analytically while the model runs (Araujo, Norris and Sim,
"Computing Receptive Fields of Convolutional Neural Networks", Distill 2019).

Every tensor on the image's grid carries, per axis, the input-pixel span of its first unit and
the jump (effective stride) between units. Convolutions and poolings grow the span
(``r_out = r_in + (k - 1) * d * j_in``) and multiply the jump; element-wise ops, additions and
channel concatenations take the union of their inputs' spans (residual blocks, ASPP branches);
adaptive pooling and resizing are followed as well. The ops are seen as they execute
(:mod:`layerscope.tracer`), so multi-path graphs and functional calls inside ``forward`` are
covered without a hand-written table. This module holds the arithmetic."""

from __future__ import annotations

import math
import weakref
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, TypedDict

import torch
from torch import nn

__all__ = ["Axis", "ReceptiveField", "receptive_fields", "window", "adaptive", "resize"]


@dataclass(frozen=True)
class Axis:
    lo: float  # first input pixel the unit 0 sees (negative: it reaches into the padding)
    hi: float  # last input pixel unit 0 sees
    jump: float  # input pixels between neighbouring units (the effective stride)

    def union(self, other: Axis) -> Axis:
        return Axis(min(self.lo, other.lo), max(self.hi, other.hi), max(self.jump, other.jump))


class FieldJson(TypedDict):
    """:meth:`ReceptiveField.to_json`, the widget's ``FieldPayload``."""

    size: list[float]
    stride: list[float]
    padding: list[float]


@dataclass(frozen=True)
class ReceptiveField:
    """Receptive field of a module's output units in input pixels, per axis (y, x):
    ``size`` (r), ``stride`` (effective stride S) and ``padding`` (effective padding P: unit
    ``i`` sees input pixels ``i * S - P`` to ``i * S - P + r - 1``)."""

    size: tuple[float, float]
    stride: tuple[float, float]
    padding: tuple[float, float]

    def box(self, row: int, col: int) -> tuple[float, float, float, float]:
        """Input-pixel box ``(y0, x0, y1, x1)`` (end exclusive) of unit (row, col), unclipped."""
        y0 = row * self.stride[0] - self.padding[0]
        x0 = col * self.stride[1] - self.padding[1]
        return (y0, x0, y0 + self.size[0], x0 + self.size[1])

    def to_json(self) -> FieldJson:
        return {"size": list(self.size), "stride": list(self.stride), "padding": list(self.padding)}

    @classmethod
    def from_axes(cls, ay: Axis, ax: Axis) -> ReceptiveField:
        return cls(
            size=(ay.hi - ay.lo + 1, ax.hi - ax.lo + 1),
            stride=(ay.jump, ax.jump),
            padding=(-ay.lo, -ax.lo),
        )


Field = tuple[Axis, Axis]


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return (int(v[0]), int(v[-1]))
    return (int(v), int(v))


def window(f: Field, kernel: Any, stride: Any, padding: Any, dilation: Any = 1) -> Field:
    k, s, p, d = _pair(kernel), _pair(stride), _pair(padding), _pair(dilation)

    def one(a: Axis, i: int) -> Axis:
        return Axis(
            a.lo - p[i] * a.jump, a.hi + (-p[i] + (k[i] - 1) * d[i]) * a.jump, a.jump * s[i]
        )

    return (one(f[0], 0), one(f[1], 1))


def adaptive(f: Field, n_in: tuple[int, int], n_out: tuple[int, int]) -> Field:
    out = []
    for a, ni, no in zip(f, n_in, n_out):
        span = math.ceil(ni / no)  # unit 0 pools input units [0, ceil(n_in / n_out))
        out.append(Axis(a.lo, a.hi + (span - 1) * a.jump, a.jump * ni / no))
    return (out[0], out[1])


def resize(f: Field, n_in: tuple[int, int], n_out: tuple[int, int], align: bool) -> Field:
    out = []
    for a, ni, no in zip(f, n_in, n_out):
        ratio = (ni - 1) / max(no - 1, 1) if align else ni / no
        c = 0.0 if align else max(0.0, 0.5 * ratio - 0.5)  # source coordinate of unit 0
        first = math.floor(c)
        last = min(ni - 1, math.ceil(c)) if ni > 1 else 0
        out.append(Axis(a.lo + first * a.jump, a.hi + last * a.jump, a.jump * ratio))
    return (out[0], out[1])


def receptive_fields(model: nn.Module, inputs: torch.Tensor) -> dict[str, ReceptiveField]:
    """Receptive field of every module whose output is a 4-D map, from one forward pass on
    ``inputs`` (a (N, C, H, W) batch) in eval mode without gradients. The model is left as it
    was found. Fields depend on the architecture and the input's shape, not on values: they
    are kept per model for its module structure and that shape (the Explorer's trace fills the
    same place), so asking again runs no forward."""
    from .safety import model_kept_as_found
    from .tracer import ForwardTracer

    key = _fields_key(model, inputs)
    known = _FIELDS.get(model, {}).get(key)
    if known is not None:
        return dict(known)
    with model_kept_as_found(model, train=False), ForwardTracer(model, inputs) as tracer:
        model(inputs)
    remember_fields(model, inputs, tracer.fields)
    return tracer.fields


# model -> (module structure, input shape) -> fields. Weakly keyed: kept no longer than the model.
_FIELDS: weakref.WeakKeyDictionary[nn.Module, dict[Hashable, dict[str, ReceptiveField]]] = (
    weakref.WeakKeyDictionary()
)


def _fields_key(model: nn.Module, inputs: torch.Tensor) -> Hashable:
    from .fingerprint import architecture_id, input_signature

    return (architecture_id(dict(model.named_modules())), input_signature((inputs,)))


def remember_fields(
    model: nn.Module, inputs: torch.Tensor, fields: dict[str, ReceptiveField]
) -> None:
    """Keep fields traced on ``inputs`` for :func:`receptive_fields` to return (a few shapes
    per model)."""
    if not fields:
        return
    kept = _FIELDS.setdefault(model, {})
    if len(kept) >= 8:
        kept.pop(next(iter(kept)))
    kept[_fields_key(model, inputs)] = dict(fields)
